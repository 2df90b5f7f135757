"""The Celery app unit tests publish to: an in-memory broker, so nothing reaches a real one."""

from __future__ import annotations

from celery import Celery

test_celery_app = Celery("cc_sync_tests", broker="memory://")
test_celery_app.conf.task_ignore_result = True
