"""The signup path: save, queue after commit, claim, push to CC, record the outcome.

The :class:`~cc_sync.models.Signup` row is the outbox: it is saved in the visitor's transaction and
stays until CC has the contact. The broker is only a fast path; the sweeper re-queues whatever it lost.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.dispatch import receiver
from django.utils import timezone

from . import oauth, privacy, publisher, ratelimit
from .client import get_client
from .conf import get_setting, list_setting
from .exceptions import (
    AccessTokenRejected,
    QuotaExceeded,
    ReconnectRequired,
    Rejected,
    RetryLater,
    Throttled,
)
from .models import Connection, Signup, default_deadline
from .signals import connection_established, signup_failed, signup_synced

logger = logging.getLogger("cc_sync.sync")

CONTACT_FIELDS = ("first_name", "last_name", "phone_number", "job_title", "company_name")
Status = Signup.Status


# -- accepting a signup -------------------------------------------------------------------------


def enqueue_signup(
    email: str,
    *,
    first_name: str = "",
    last_name: str = "",
    phone_number: str = "",
    job_title: str = "",
    company_name: str = "",
    custom_fields: dict[str, str] | None = None,
    street_address: dict[str, str] | None = None,
    list_ids: list[str] | None = None,
    consent_text: str | None = None,
    consent_version: str | None = None,
    source_url: str = "",
    client_ip: str = "",
    user_agent: str = "",
) -> Signup | None:
    """Validate and save a signup, and queue its sync once the surrounding transaction commits.

    Call it from your own registration flow, inside or outside a transaction. Raises Django's
    ``ValidationError`` (with per-field messages) for input CC would refuse; nothing is saved then.
    Calling it means the person consented: ``consent_text`` (default ``CC_SYNC["CONSENT_TEXT"]``) is
    recorded with the time. ``custom_fields`` maps CC custom field ids to values. Returns ``None``,
    storing nothing, for an email on the suppression list.
    """
    signup = Signup(
        email=email,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        phone_number=phone_number.strip(),
        job_title=job_title.strip(),
        company_name=company_name.strip(),
        custom_fields=[
            {"custom_field_id": key, "value": str(value)} for key, value in (custom_fields or {}).items()
        ],
        street_address=street_address or None,
        list_ids=list(list_ids) if list_ids else default_list_ids(),
        consent_given_at=timezone.now(),
        consent_text=get_setting("CONSENT_TEXT") if consent_text is None else consent_text,
        consent_version=get_setting("CONSENT_VERSION") if consent_version is None else consent_version,
        source_url=source_url[:500],
        consent_ip_hash=privacy.keyed_hash(client_ip) if client_ip else "",
        consent_user_agent=user_agent[:255],
    )
    signup.full_clean()
    signup.email_hash = privacy.email_hash(signup.email)
    if privacy.is_suppressed(signup.email):
        logger.info("Signup of suppressed email hash %s not stored.", signup.email_hash[:12])
        return None
    # Marked as queued in the INSERT itself, so the visitor's request costs no UPDATE after the publish.
    # A single INSERT needs no transaction of its own: on_commit runs at once in autocommit mode, or when
    # the caller's transaction commits.
    signup.enqueued_at = timezone.now()
    signup.save()
    transaction.on_commit(lambda: publish([signup.pk], marked_at=signup.enqueued_at))
    return signup


def default_list_ids() -> list[str]:
    """``CC_SYNC["LIST_IDS"]`` if set, else the lists chosen on the admin connection page."""
    return list_setting("LIST_IDS") or list(Connection.load().list_ids)


def publish(
    signup_ids: list[int], marked_at: datetime, countdown: float | None = None, bounded: bool = True
) -> list[int]:
    """Send one sync task per id and return the ids the broker took.

    Callers mark the rows as queued first (``enqueued_at = marked_at``, in the statement that makes them
    due), so a publish that works costs no query; the rows the broker did not take are unmarked here and
    the next sweep queues them. A broker failure is logged, never raised. With ``bounded`` (the visitor's
    request, admin actions) the caller waits at most ``CC_SYNC["PUBLISH_TIMEOUT"]`` seconds for the broker
    (see :mod:`cc_sync.publisher`); workers publish in their own thread.
    """
    if bounded:
        finished, published = publisher.runner.run(
            lambda: _send(signup_ids, countdown), float(get_setting("PUBLISH_TIMEOUT"))
        )
        if not finished:
            logger.warning(
                "The broker did not take %s signups in time; the sweeper will queue them.", len(signup_ids)
            )
        published = published or []
    else:
        published = _send(signup_ids, countdown)
    missed = set(signup_ids) - set(published)
    if missed:
        # Only rows still carrying this mark: one taken again since by a sweep is that sweep's to publish.
        Signup.objects.filter(pk__in=missed, enqueued_at=marked_at).update(enqueued_at=None)
    return published


def _send(signup_ids: list[int], countdown: float | None) -> list[int]:
    from .tasks import sync_signup

    published = []
    for signup_id in signup_ids:
        try:
            sync_signup.apply_async(
                (signup_id,), countdown=countdown, queue=get_setting("QUEUE"), retry=False
            )
        except Exception as err:  # the broker is down or misconfigured: the row stays due for the sweeper
            logger.warning(
                "Could not queue signup %s (%s); the sweeper will queue it.", signup_id, type(err).__name__
            )
            break
        published.append(signup_id)
    return published


# -- syncing one signup -------------------------------------------------------------------------


def claim(signup_id: int) -> Signup | None:
    """Take the row for this worker with one conditional UPDATE; ``None`` if it is not due or not ours.

    A duplicate delivery of the same message finds the row already ``syncing`` (or not yet due) and does
    nothing. A row left ``syncing`` by a killed worker can be claimed again once its lease has run out.
    """
    now = timezone.now()
    claimable = Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(
        status=Status.SYNCING, lease_expires_at__lte=now
    )
    claimed = Signup.objects.filter(claimable, pk=signup_id).update(
        status=Status.SYNCING,
        attempts=F("attempts") + 1,
        lease_expires_at=now + timedelta(seconds=float(get_setting("LEASE"))),
    )
    return Signup.objects.get(pk=signup_id) if claimed else None


def payload_for(signup: Signup, list_ids: list[str]) -> dict[str, Any]:
    """The ``sign_up_form`` body for a signup (only the fields that have a value)."""
    payload: dict[str, Any] = {"email_address": signup.email, "list_memberships": list_ids}
    payload.update({field: getattr(signup, field) for field in CONTACT_FIELDS if getattr(signup, field)})
    if signup.custom_fields:
        payload["custom_fields"] = signup.custom_fields
    if signup.street_address:
        payload["street_address"] = signup.street_address
    return payload


def push(signup: Signup) -> tuple[str, bool]:
    """Send one signup to CC; return ``(contact_id, created)`` or raise what says what to do next.

    A 401 gets one refresh (unless another worker already did it) and one retry; a second 401 right
    after a refresh means CC no longer accepts the grant.
    """
    if privacy.is_suppressed(signup.email):
        # Erased or unsubscribed after submitting: sign_up_form would opt them back in.
        raise Rejected("This email is on the suppression list.", error_key="suppressed")
    list_ids = signup.list_ids or default_list_ids()
    if not list_ids:
        raise ReconnectRequired("No Constant Contact list is chosen: choose one on the connection page.")
    payload = payload_for(signup, list_ids)
    client = get_client()
    token = oauth.get_access_token()
    try:
        return client.sign_up_form(token, payload)
    except AccessTokenRejected:
        token = oauth.replace_rejected_token(token)
    try:
        return client.sign_up_form(token, payload)
    except AccessTokenRejected as err:
        oauth.mark_needs_reconnect(f"Constant Contact refused a freshly refreshed access token: {err}")
        raise ReconnectRequired(str(err), status_code=err.status_code) from None


def process_signup(signup_id: int) -> None:
    """Claim, push and record the outcome of one signup (what the Celery task runs)."""
    signup = claim(signup_id)
    if signup is None:
        return
    try:
        contact_id, created = push(signup)
    except Rejected as err:
        _give_up(signup, str(err), err.error_key)
    except ReconnectRequired as err:
        if err.status_code == 403:
            oauth.mark_needs_reconnect(str(err))
        _finish(
            signup, status=Status.WAITING_RECONNECT, last_error=str(err)[:2000], last_error_key=err.error_key
        )
    except RetryLater as err:
        _retry_later(signup, err)
    except Exception as err:
        # A bug or a database hiccup must not strand the row in "syncing" until its lease runs out.
        logger.exception("Unexpected error while syncing signup %s.", signup.pk)
        _retry_later(signup, RetryLater(f"Unexpected error: {type(err).__name__}"))
    else:
        if _finish(
            signup,
            status=Status.SYNCED,
            contact_id=contact_id,
            created_in_cc=created,
            synced_at=timezone.now(),
            last_error="",
            last_error_key="",
        ):
            logger.info("Signup %s synced to Constant Contact (contact %s).", signup.pk, contact_id)
            signup_synced.send(sender=Signup, signup=signup)


def retry_delay(attempts: int, error: RetryLater) -> float:
    """Seconds to wait before the next attempt: full-jitter capped exponential backoff, or CC's own wait."""
    if isinstance(error, QuotaExceeded):
        # The daily quota resets at 00:00 UTC; spread the restart over a minute.
        return (error.retry_after or 0) + random.uniform(0, 60)
    if isinstance(error, Throttled):
        return max(1.0, error.retry_after or 1.0) + random.uniform(0, 1)
    cap = min(float(get_setting("RETRY_MAX")), float(get_setting("RETRY_BASE")) * 2 ** max(0, attempts - 1))
    return random.uniform(0, cap)


def _retry_later(signup: Signup, error: RetryLater) -> None:
    rate_limited = isinstance(error, (Throttled, QuotaExceeded))
    if not rate_limited and timezone.now() >= signup.deadline_at:
        _give_up(signup, f"Gave up after {signup.attempts} attempts: {error}", error.error_key)
        return
    delay = retry_delay(signup.attempts, error)
    due = timezone.now() + timedelta(seconds=delay)
    # Long waits stay in the database for the sweeper: a Celery countdown longer than the broker's
    # visibility timeout gets redelivered again and again.
    countdown = delay <= float(get_setting("MAX_COUNTDOWN"))
    queued = {"enqueued_at": due} if countdown else {}
    if _finish(
        signup,
        status=Status.PENDING,
        next_attempt_at=due,
        last_error=str(error)[:2000],
        last_error_key=error.error_key,
        **queued,
    ):
        logger.info("Signup %s will be retried in %.1f s: %s", signup.pk, delay, error)
        if countdown:
            transaction.on_commit(lambda: publish([signup.pk], marked_at=due, countdown=delay, bounded=False))


def _give_up(signup: Signup, reason: str, error_key: str = "") -> None:
    if _finish(signup, status=Status.FAILED, last_error=reason[:2000], last_error_key=error_key):
        logger.warning("Signup %s failed: %s", signup.pk, reason)
        signup_failed.send(sender=Signup, signup=signup, reason=reason)


def _finish(signup: Signup, **fields: Any) -> bool:
    """Record an outcome, but only if this worker still holds the claim it took."""
    # ``update()`` skips auto_now: set updated_at, from which the retention purge counts.
    fields.setdefault("updated_at", timezone.now())
    done = Signup.objects.filter(pk=signup.pk, status=Status.SYNCING, attempts=signup.attempts).update(
        **fields
    )
    for name, value in fields.items():
        setattr(signup, name, value)
    return bool(done)


# -- held signups, the sweeper and admin actions --------------------------------------------------


def release_held_signups() -> int:
    """Make every signup held for a reconnect due now, and queue a sweep to publish them."""
    released = Signup.objects.filter(status=Status.WAITING_RECONNECT).update(
        status=Status.PENDING, next_attempt_at=timezone.now(), enqueued_at=None
    )
    if released:
        logger.info("Released %s held signups.", released)
        transaction.on_commit(queue_sweep)
    return released


@receiver(connection_established, dispatch_uid="cc_sync.release_held_signups")
def _release_on_connect(**kwargs: Any) -> None:
    release_held_signups()


def queue_sweep() -> None:
    """Ask a worker to sweep now (falls back silently to beat's next run if the broker is down)."""
    from .tasks import sweep_due_signups

    try:
        sweep_due_signups.apply_async(queue=get_setting("QUEUE"), retry=False)
    except Exception as err:
        logger.warning("Could not queue a sweep (%s); beat's next run will do it.", type(err).__name__)


def expected_queue_time(now: Any = None) -> float:
    """Seconds the queued, due signups take to drain at ``API_RATE``.

    A message counts as lost only once it is older than ``REQUEUE_AFTER`` plus this: in a long backlog
    (after a broker outage, or at midnight after a quota day) a message may just be waiting its turn, and
    queueing it again would only add a duplicate per sweep.
    """
    rate = float(get_setting("API_RATE"))
    if rate <= 0:
        return 0.0
    queued = Signup.objects.filter(
        status=Status.PENDING, next_attempt_at__lte=now or timezone.now(), enqueued_at__isnull=False
    ).count()
    return queued * ratelimit.SPACING_MARGIN / rate


def sweep() -> int:
    """Queue due signups whose message is missing: never published, lost by the broker, or left by a dead worker.

    Also releases held signups once the connection works again. Returns how many were queued.
    """
    if Connection.load().status == Connection.Status.CONNECTED and default_list_ids():
        release_held_signups()
    now = timezone.now()
    stale = now - timedelta(seconds=float(get_setting("REQUEUE_AFTER")) + expected_queue_time(now))
    never_or_long_ago = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=stale)
    due = Q(status=Status.PENDING, next_attempt_at__lte=now) & never_or_long_ago
    # A dead worker's row: its lease ran out and nobody has queued it since.
    abandoned = Q(status=Status.SYNCING, lease_expires_at__lte=now) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=F("lease_expires_at"))
    )
    ids = list(
        Signup.objects.filter(due | abandoned)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: int(get_setting("SWEEP_BATCH"))]
    )
    if not ids:
        return 0
    # Beat's next sweep may start on another worker while this one publishes: take the rows first with a
    # conditional UPDATE (a concurrent one re-checks the condition once ours commits), so each is queued once.
    taken_at = timezone.now()
    Signup.objects.filter(due | abandoned, pk__in=ids).update(enqueued_at=taken_at)
    taken = list(Signup.objects.filter(pk__in=ids, enqueued_at=taken_at).values_list("pk", flat=True))
    return len(publish(taken, marked_at=taken_at, bounded=False))


def retry_now(queryset: Any) -> int:
    """Put failed or held signups back to pending, due now, and queue them (the admin's "Retry now")."""
    ids = list(
        queryset.filter(status__in=[Status.FAILED, Status.WAITING_RECONNECT, Status.PENDING]).values_list(
            "pk", flat=True
        )
    )
    now = timezone.now()
    Signup.objects.filter(pk__in=ids).update(
        status=Status.PENDING, next_attempt_at=now, enqueued_at=now, deadline_at=default_deadline()
    )
    transaction.on_commit(lambda: publish(ids, marked_at=now))
    return len(ids)


def mark_failed(queryset: Any, reason: str) -> int:
    """Give up on signups that are not synced (the admin's "Mark as failed")."""
    return queryset.exclude(status=Status.SYNCED).update(
        status=Status.FAILED, last_error=reason, lease_expires_at=None, updated_at=timezone.now()
    )
