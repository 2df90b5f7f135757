"""Thin Celery tasks: each loads nothing but an id and calls a plain function."""

from __future__ import annotations

from celery import shared_task

from . import oauth, privacy, sync


# acks_late + reject_on_worker_lost: a worker killed mid-task (even by SIGKILL) leaves the message to be
# redelivered. That is safe because process_signup claims the row with a conditional UPDATE and CC's
# sign_up_form is an upsert keyed on the email.
@shared_task(name="cc_sync.sync_signup", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def sync_signup(signup_id: int) -> None:
    """Sync one signup to CC (by id; the row holds everything else)."""
    sync.process_signup(signup_id)


@shared_task(name="cc_sync.sweep_due_signups", ignore_result=True)
def sweep_due_signups() -> int:
    """Queue due signups whose message is missing (run every minute by beat)."""
    return sync.sweep()


@shared_task(name="cc_sync.keep_connection_alive", ignore_result=True)
def keep_connection_alive() -> None:
    """Refresh the token before it or the refresh token can expire, even when nobody signs up."""
    oauth.keep_alive()


@shared_task(name="cc_sync.purge_personal_data", ignore_result=True)
def purge_personal_data() -> int:
    """Blank the personal fields of signups past ``RETENTION_DAYS`` (run daily by beat)."""
    return privacy.apply_retention()
