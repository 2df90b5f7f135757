"""The example project's settings, with workers that keep their database connection between tasks.

Celery's Django fixup (Celery 5.7, ``celery/fixups/django.py``) closes every database connection before and
after each task, whatever ``CONN_MAX_AGE`` says, unless ``CELERY_DB_REUSE_MAX`` is set; then it closes them
once every that many tasks; cc_sync's tasks then replace a connection that is unusable or older than
``CONN_MAX_AGE``. The overhead benchmark runs workers with this overlay (what docs/celery.md recommends for
workers) to measure what the reconnect per task costs.
"""

from example_project.settings import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
