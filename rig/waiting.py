"""Waiting with a deadline: one function, one behaviour, for tests, fault scenarios and benchmarks alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TimedOut(AssertionError):
    """The deadline of :func:`wait_until` passed (an AssertionError: a test reports it as a failure).

    A fault scenario or a benchmark that records a timeout as a figure catches it.
    """


def wait_until(
    condition: Callable[[], T], timeout: float, *, interval: float = 0.2, what: str = "the condition"
) -> T:
    """Call ``condition`` every ``interval`` seconds and return its first truthy result.

    It is called at least once, and once more at the deadline; if that answer is falsy too, :class:`TimedOut`
    is raised, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOut(f"Timed out after {timeout:g} s waiting for {what}.")
        time.sleep(min(interval, remaining))
