"""The Celery beat entries cc_sync needs; merge them into your ``beat_schedule``.

Plain data (no Django or Celery import), so settings modules can use it::

    from cc_sync.schedules import BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE}
"""

BEAT_SCHEDULE = {
    "cc_sync.sweep_due_signups": {"task": "cc_sync.sweep_due_signups", "schedule": 60.0},
    "cc_sync.keep_connection_alive": {"task": "cc_sync.keep_connection_alive", "schedule": 3600.0},
    "cc_sync.purge_personal_data": {"task": "cc_sync.purge_personal_data", "schedule": 24 * 3600.0},
}
