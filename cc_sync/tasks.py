"""Thin Celery tasks: each loads nothing but an id and calls a plain function."""

from __future__ import annotations

from celery import shared_task
from django.db import connections

from . import oauth, privacy, surge, sync


def _usable_database() -> None:
    # With CELERY_DB_REUSE_MAX set, Celery keeps a worker's connection between tasks without checking it. Do
    # what Django's close_old_connections() does before each request, so that a connection the database
    # dropped (a restart, a failover) or one past CONN_MAX_AGE is replaced instead of failing every task
    # after it; but never inside a transaction (a task run eagerly, or called from a test).
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


# acks_late + reject_on_worker_lost: a worker killed mid-task (even by SIGKILL) leaves the message to be
# redelivered. That is safe because process_signup claims the row with a conditional UPDATE and CC's
# sign_up_form is an upsert keyed on the email.
@shared_task(name="cc_sync.sync_signup", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def sync_signup(signup_id: int) -> None:
    """Sync one signup to CC (by id; the row holds everything else)."""
    _usable_database()
    sync.process_signup(signup_id)


@shared_task(name="cc_sync.sweep_due_signups", ignore_result=True)
def sweep_due_signups() -> int:
    """Queue due signups whose message is missing (run every minute by beat)."""
    _usable_database()
    return sync.sweep()


@shared_task(name="cc_sync.import_surge", ignore_result=True)
def import_surge() -> int:
    """Send the due backlog in bulk imports and poll them to the end (queued by surge mode; see cc_sync.surge)."""
    _usable_database()
    return surge.run()


@shared_task(name="cc_sync.keep_connection_alive", ignore_result=True)
def keep_connection_alive() -> int:
    """Refresh each connection's token before it or the refresh token can expire, even when nobody signs up."""
    _usable_database()
    return oauth.keep_alive()


@shared_task(name="cc_sync.purge_personal_data", ignore_result=True)
def purge_personal_data() -> int:
    """Blank the personal fields of signups past ``RETENTION_DAYS`` (run daily by beat)."""
    _usable_database()
    return privacy.apply_retention()
