"""The example project's settings, with workers that keep their database connection between tasks.

Celery's Django fixup (Celery 5.7, ``celery/fixups/django.py``) closes every database connection before and
after each task, whatever ``CONN_MAX_AGE`` says, unless ``CELERY_DB_REUSE_MAX`` is set; then it closes them
once every that many tasks. The overhead benchmark runs workers with this overlay to measure what the
reconnect per task costs.
"""

from example_project.settings import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000
