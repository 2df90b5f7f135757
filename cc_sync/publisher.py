"""Publishing to the broker with a bound on how long the caller waits.

A Celery publish can hang for seconds, or forever, when the broker is down (celery#4556, #6046), and the
retry policy of redis-py or the project's Celery settings may add more. A visitor must never wait on that.
So publishes from web requests run on one background thread per process and the caller waits at most
``CC_SYNC["PUBLISH_TIMEOUT"]`` seconds; what does not finish in time is left to the sweeper (the row is
already saved, so nothing is lost, and a late publish only causes a harmless duplicate delivery).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from .conf import app_settings
from .models import Signup

logger = logging.getLogger("cc_sync.publisher")

T = TypeVar("T")
# A broker that hangs for long must not make the queue of waiting publishes grow without end.
MAX_WAITING = 10_000


class BoundedRunner:
    """Runs callables on one daemon thread (started lazily, again after a fork) with a bounded wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._jobs: queue.Queue[tuple[Callable[[], Any], dict[str, Any], threading.Event]] | None = None

    def run(self, job: Callable[[], T], timeout: float) -> tuple[bool, T | None]:
        """``(True, result)`` if ``job`` finished within ``timeout`` seconds, else ``(False, None)``."""
        jobs = self._ensure_thread()
        outcome: dict[str, Any] = {}
        done = threading.Event()
        try:
            jobs.put_nowait((job, outcome, done))
        except queue.Full:
            return False, None
        if not done.wait(timeout):
            return False, None
        return "result" in outcome, outcome.get("result")

    def _ensure_thread(self) -> queue.Queue:
        with self._lock:
            if self._pid != os.getpid() or self._jobs is None:
                self._jobs = queue.Queue(maxsize=MAX_WAITING)
                self._pid = os.getpid()
                threading.Thread(
                    target=self._work, args=(self._jobs,), name="cc_sync-publisher", daemon=True
                ).start()
            return self._jobs

    @staticmethod
    def _work(jobs: queue.Queue) -> None:
        while True:
            job, outcome, done = jobs.get()
            try:
                outcome["result"] = job()
            except Exception:
                logger.exception("Publishing failed.")
            finally:
                done.set()


runner = BoundedRunner()


# -- publishing sync tasks -----------------------------------------------------------------------


def publish(
    signup_ids: list[int], marked_at: datetime | None, countdown: float | None = None, bounded: bool = True
) -> list[int]:
    """Send one sync task per id and return the ids the broker took.

    Callers mark the rows as queued first (``enqueued_at = marked_at``, in the statement that makes them
    due), so a publish that works costs no query; the rows the broker did not take are unmarked here and
    the next sweep queues them (``marked_at=None``: an extra message, for rows the sweeper watches anyway).
    A broker failure is logged, never raised. With ``bounded`` (the visitor's request, admin actions) the
    caller waits at most ``CC_SYNC["PUBLISH_TIMEOUT"]`` seconds for the broker (see
    :mod:`cc_sync.publisher`); workers publish in their own thread.
    """
    if bounded:
        finished, published = runner.run(lambda: _send(signup_ids, countdown), app_settings.PUBLISH_TIMEOUT)
        if not finished:
            logger.warning(
                "The broker did not take %s signups in time; the sweeper will queue them.", len(signup_ids)
            )
        published = published or []
    else:
        published = _send(signup_ids, countdown)
    missed = set(signup_ids) - set(published)
    if missed and marked_at is not None:
        # Only rows still carrying this mark: one taken again since by a sweep is that sweep's to publish.
        Signup.objects.filter(pk__in=missed, enqueued_at=marked_at).update(enqueued_at=None)
    return published


def _send(signup_ids: list[int], countdown: float | None) -> list[int]:
    from .tasks import sync_signup

    published = []
    for signup_id in signup_ids:
        try:
            sync_signup.apply_async((signup_id,), countdown=countdown, queue=app_settings.QUEUE, retry=False)
        except Exception as err:  # the broker is down or misconfigured: the row stays due for the sweeper
            logger.warning(
                "Could not queue signup %s (%s); the sweeper will queue it.", signup_id, type(err).__name__
            )
            break
        published.append(signup_id)
    return published


def queue_sweep() -> None:
    """Ask a worker to sweep now (falls back silently to beat's next run if the broker is down)."""
    from .tasks import sweep_due_signups

    try:
        sweep_due_signups.apply_async(queue=app_settings.QUEUE, retry=False)
    except Exception as err:
        logger.warning("Could not queue a sweep (%s); beat's next run will do it.", type(err).__name__)
