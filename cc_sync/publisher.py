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
from typing import Any, TypeVar

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
