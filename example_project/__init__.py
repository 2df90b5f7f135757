# The Celery app loads with Django so that @shared_task uses it (`celery -A example_project worker`).
from .celery import app as celery_app

__all__ = ("celery_app",)
