"""Publishing sync tasks, and the outbox that keeps web requests from ever waiting for the broker.

A Celery publish can hang for seconds, or forever, when the broker is down (celery#4556, #6046), and the
retry policy of redis-py or the project's Celery settings may add more. A visitor must never wait on that,
nor pay for building the message. So web requests and admin actions only put the ids in a bounded
in-process queue (:data:`outbox`) and return; one daemon thread per process (started on first use, again
after a fork) publishes them. Nothing is lost on the way: the rows were saved already marked as queued
(``enqueued_at``), and

* a publish the broker refused is unmarked by the thread, so the next sweep queues the row;
* a queue that is full (the broker has hung for a long time) unmarks the row at once, on the caller's thread;
* ids still queued when the process ends (killed, or the broker hung through the exit wait) stay marked:
  the sweeper takes them as lost messages once the mark is older than ``REQUEUE_AFTER`` plus the time the
  queued backlog needs (:func:`cc_sync.sync.expected_queue_time`), as it does for a message the broker lost.

At a normal exit the process waits at most ``CC_SYNC["PUBLISH_TIMEOUT"]`` seconds for its queue. Workers
publish with :func:`publish` on their own thread: a task may wait for the broker.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from datetime import datetime

from django.db import close_old_connections

from .conf import app_settings
from .models import Signup

logger = logging.getLogger("cc_sync.publisher")

# A broker that hangs for long must not make the queue of waiting publishes grow without end.
MAX_WAITING = 10_000

#: One queued publish: the ids and the mark their rows carry; ``([], None)``: a sweep request (:func:`queue_sweep`).
Job = tuple[list[int], datetime | None]


class Outbox:
    """A bounded queue of publishes and the daemon thread that drains it.

    ``background=False`` publishes on the caller's thread instead (cc_sync's own tests use it: their rows
    live in an uncommitted transaction that another thread's database connection cannot see).
    """

    def __init__(self, background: bool = True, maxsize: int = MAX_WAITING) -> None:
        self.background = background
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._jobs: queue.Queue[Job] | None = None

    def put(self, signup_ids: list[int], marked_at: datetime | None) -> bool:
        """Queue one publish (no ids: a sweep request) and return at once; False, queueing nothing, when the
        queue is full."""
        if not self.background:
            _run(signup_ids, marked_at)
            return True
        try:
            self._queue().put_nowait((list(signup_ids), marked_at))
        except queue.Full:
            return False
        return True

    def flush(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until this process's queued publishes are done; True if they are."""
        jobs = self._jobs
        if jobs is None or self._pid != os.getpid():
            return True
        with jobs.all_tasks_done:
            return jobs.all_tasks_done.wait_for(lambda: jobs.unfinished_tasks == 0, timeout)

    def _queue(self) -> queue.Queue[Job]:
        with self._lock:
            if self._pid != os.getpid() or self._jobs is None:
                # A forked child has the queue but not the thread: ids queued before the fork stay marked
                # for the sweeper, and the child starts afresh.
                self._jobs = queue.Queue(maxsize=self.maxsize)
                self._pid = os.getpid()
                threading.Thread(
                    target=self._work, args=(self._jobs,), name="cc_sync-publisher", daemon=True
                ).start()
                atexit.register(self._flush_at_exit)
            return self._jobs

    def _flush_at_exit(self) -> None:
        if not self.flush(app_settings.PUBLISH_TIMEOUT) and self._jobs is not None:
            logger.warning(
                "%s publishes were still queued at exit; the sweeper will queue their signups.",
                self._jobs.unfinished_tasks,
            )

    @staticmethod
    def _work(jobs: queue.Queue[Job]) -> None:
        while True:
            signup_ids, marked_at = jobs.get()
            try:
                _run(signup_ids, marked_at)
            except Exception:
                logger.exception("Publishing failed.")
            finally:
                # A thread outside any request: Django's request signals never close its connection.
                close_old_connections()
                jobs.task_done()


outbox = Outbox()


# -- publishing sync tasks -----------------------------------------------------------------------


def publish_later(signup_ids: list[int], marked_at: datetime) -> None:
    """Queue the sync tasks of rows already marked ``enqueued_at = marked_at``, without waiting.

    What web requests and admin actions use: the publish happens on the publisher thread (see
    :mod:`cc_sync.publisher`). When the queue is full the rows are unmarked here, and the next sweep
    queues them.
    """
    if not outbox.put(signup_ids, marked_at):
        logger.warning(
            "The publish queue is full (the broker is not taking messages); the sweeper will queue %s signups.",
            len(signup_ids),
        )
        _unmark(signup_ids, marked_at)


def publish(signup_ids: list[int], marked_at: datetime | None, countdown: float | None = None) -> list[int]:
    """Send one sync task per id now, and return the ids the broker took.

    Callers mark the rows as queued first (``enqueued_at = marked_at``, in the statement that makes them
    due), so a publish that works costs no query; the rows the broker did not take are unmarked here and
    the next sweep queues them (``marked_at=None``: an extra message, for rows the sweeper watches anyway).
    A broker failure is logged, never raised. This waits for the broker:
    workers use it; web requests use :func:`publish_later`.
    """
    published = _send(signup_ids, countdown)
    _unmark(set(signup_ids) - set(published), marked_at)
    return published


def _unmark(signup_ids: list[int] | set[int], marked_at: datetime | None) -> None:
    if signup_ids and marked_at is not None:
        # Only rows still carrying this mark: one taken again since by a sweep is that sweep's to publish.
        Signup.objects.filter(pk__in=signup_ids, enqueued_at=marked_at).update(enqueued_at=None)


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


def _run(signup_ids: list[int], marked_at: datetime | None) -> None:
    if signup_ids or marked_at is not None:
        publish(signup_ids, marked_at)
    else:  # queue_sweep's request
        _send_sweep()


def queue_sweep() -> None:
    """Ask a worker to sweep now, from the publisher thread: the caller (an admin's Connect or list choice
    releasing held signups) never waits for the broker. Beat's next sweep does it if the broker is down or
    the queue is full."""
    if not outbox.put([], None):
        logger.warning("The publish queue is full; beat's next sweep will release the held signups.")


def _send_sweep() -> None:
    from .tasks import sweep_due_signups

    try:
        sweep_due_signups.apply_async(queue=app_settings.QUEUE, retry=False)
    except Exception as err:
        logger.warning("Could not queue a sweep (%s); beat's next run will do it.", type(err).__name__)
