"""The Celery beat entries cc_sync needs; merge them into your ``beat_schedule``.

Plain data (no Django or Celery import), so settings modules can use it::

    from cc_sync.schedules import BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE}

When cc_sync's tasks run on a queue of their own (``CC_SYNC["QUEUE"]``), send beat's messages there too::

    CELERY_BEAT_SCHEDULE = {**beat_schedule(queue="signups")}
"""

from __future__ import annotations

from typing import Any

INTERVALS = {
    "cc_sync.sweep_due_signups": 60.0,
    "cc_sync.keep_connection_alive": 3600.0,
    "cc_sync.purge_personal_data": 24 * 3600.0,
}


def beat_schedule(queue: str | None = None, sweep_interval: float | None = None) -> dict[str, dict[str, Any]]:
    """cc_sync's beat entries, optionally routed to ``queue`` and with another sweep interval."""
    schedule: dict[str, dict[str, Any]] = {}
    for task, seconds in INTERVALS.items():
        if task == "cc_sync.sweep_due_signups" and sweep_interval is not None:
            seconds = sweep_interval
        entry: dict[str, Any] = {"task": task, "schedule": seconds}
        if queue:
            entry["options"] = {"queue": queue}
        schedule[task] = entry
    return schedule


BEAT_SCHEDULE = beat_schedule()
