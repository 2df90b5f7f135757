"""The signup path: save, queue after commit, claim, push to CC, record the outcome.

The :class:`~cc_sync.models.Signup` row is the outbox: it is saved in the visitor's transaction and
stays until CC has the contact. The broker is only a fast path; the sweeper re-queues whatever it lost.
"""

from __future__ import annotations

import logging
import random
import unicodedata
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.dispatch import receiver
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import confirmation, oauth, privacy, ratelimit, surge
from .client import ConstantContactClient, get_client
from .conf import app_settings
from .db import insert_unless, lock_row, update_returning
from .exceptions import (
    QuotaExceeded,
    ReconnectRequired,
    Rejected,
    RetryLater,
    Throttled,
)
from .models import Connection, Signup, SignupQuerySet, Suppression, default_deadline
from .publisher import publish, publish_later, queue_sweep
from .signals import connection_established, signup_failed, signup_synced
from .validators import validate_custom_field_id, validate_list_ids

logger = logging.getLogger("cc_sync.sync")

NAME_FIELDS = ("first_name", "last_name", "job_title", "company_name")
CONTACT_FIELDS = (*NAME_FIELDS, "phone_number")
# POST /contacts takes at most 25 custom fields (sign_up_form 50): more go through the lookup path.
CREATE_CUSTOM_FIELDS_MAX = 25
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
    field_values: dict[str, str] | None = None,
    street_address: dict[str, str] | None = None,
    list_ids: list[str] | None = None,
    verified: bool = False,
    consent_text: str | None = None,
    consent_version: str | None = None,
    source_url: str = "",
    client_ip: str = "",
    user_agent: str = "",
    validated_fields: Collection[str] = (),
    connection: Connection | str | None = None,
) -> Signup | None:
    """Validate and save a signup, and queue its sync once the surrounding transaction commits.

    Call it from your own registration flow, inside or outside a transaction. Raises Django's
    ``ValidationError`` (with per-field messages) for input CC would refuse; nothing is saved then.
    Calling it means the person consented: ``consent_text`` (default ``CC_SYNC["CONSENT_TEXT"]``) is
    recorded with the time. ``custom_fields`` maps CC custom field ids (UUIDs) to values;
    ``field_values`` maps names of ``CC_SYNC["CUSTOM_FIELDS"]`` to values, turned into ids when the signup
    is sent. ``list_ids`` are lists for this submission only; without them the configured default lists
    are used when the signup is sent. ``verified=True`` says the submitter *is* that person (a form
    behind login): only then are the details of a contact that already exists at CC updated. Returns
    ``None``, storing nothing, for an email on the suppression list.

    ``validated_fields`` names ``Signup`` fields the caller has already put through the model's own
    validation (a valid :class:`~cc_sync.forms.SignupForm` passes its fields): they are not checked again.
    Everything else is, as is ``Signup.clean()``.

    ``connection`` (a :class:`~cc_sync.models.Connection` or its slug) is the CC account the signup goes
    to; by default the default connection. The signup stores it.
    """
    connection_id = connection_id_for(connection)
    try:
        ids = [
            {"custom_field_id": validate_custom_field_id(key), "value": str(value)}
            for key, value in (custom_fields or {}).items()
        ]
    except ValidationError as err:
        raise ValidationError({"custom_fields": err.messages}) from None
    try:
        chosen_lists = validate_list_ids(list_ids) if list_ids else []
    except ValidationError as err:
        raise ValidationError({"list_ids": err.messages}) from None
    signup = Signup(
        # Compatibility forms first (full-width letters): Django's email check runs before Signup.clean().
        email=unicodedata.normalize("NFKC", email),
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        phone_number=phone_number.strip(),
        job_title=job_title.strip(),
        company_name=company_name.strip(),
        custom_fields=ids
        + [{"name": name, "value": str(value)} for name, value in (field_values or {}).items()],
        street_address=street_address or None,
        list_ids=chosen_lists,
        verified=verified,
        consent_given_at=timezone.now(),
        consent_text=app_settings.CONSENT_TEXT if consent_text is None else consent_text,
        consent_version=app_settings.CONSENT_VERSION if consent_version is None else consent_version,
        source_url=source_url[:500],
        consent_ip_hash=privacy.keyed_hash(client_ip) if client_ip else "",
        consent_user_agent=user_agent[:255],
        connection_id=connection_id,
    )
    signup.full_clean(exclude=[*validated_fields, "connection"])
    hashes = privacy.email_hashes(signup.email)
    signup.email_hash = hashes[0]
    # Marked as queued in the INSERT itself, so the visitor's request costs no UPDATE after the publish.
    signup.enqueued_at = marked_at = timezone.now()
    # One statement: the suppression check rides in the INSERT (INSERT ... WHERE NOT EXISTS). A single
    # INSERT needs no transaction of its own: on_commit runs at once in autocommit mode, or when the
    # caller's transaction commits. The worker checks the suppression list again before sending.
    if not insert_unless(signup, Suppression, "email_hash", hashes):
        logger.info("Signup of suppressed email hash %s not stored.", signup.email_hash[:12])
        return None
    transaction.on_commit(lambda: publish_later([signup.pk], marked_at=marked_at))
    return signup


def connection_id_for(connection: Connection | str | None) -> int | None:
    """The ``Signup.connection`` value for a connection, its slug, or ``None`` (the default connection).

    The default connection is stored as ``None``, so the visitor's request reads no connection row for it.
    Raises ``ValidationError`` for a slug no connection has.
    """
    if connection is None:
        return None
    if isinstance(connection, str):
        if connection == Connection.DEFAULT_SLUG:
            return None
        found = Connection.objects.filter(slug=connection).values_list("pk", flat=True).first()
        if found is None:
            raise ValidationError(
                {"connection": f"No Constant Contact connection has the slug {connection!r}."}
            )
        return found
    return None if connection.is_default else connection.pk


def default_list_ids(connection: Connection | None = None) -> list[str]:
    """The lists a signup goes to when none were picked for it (may be empty).

    The one place for this rule: for the default connection, ``CC_SYNC["LIST_IDS"]`` if set; else the lists
    chosen on the connection's admin page. List ids belong to one account, so ``LIST_IDS`` never applies to
    another connection. Without ``connection`` it reads the default connection's choice without creating
    its row (a dry run or a status report stores nothing).
    """
    configured = app_settings.LIST_IDS
    if configured and (connection is None or connection.is_default):
        return configured
    if connection is not None:
        return list(connection.list_ids)
    chosen = (
        Connection.objects.filter(slug=Connection.DEFAULT_SLUG).values_list("list_ids", flat=True).first()
    )
    return list(chosen or [])


# -- syncing one signup -------------------------------------------------------------------------


def claim(signup_id: int) -> Signup | None:
    """Take the row for this worker with one conditional UPDATE; ``None`` if it is not due or not ours.

    A duplicate delivery of the same message finds the row already ``syncing`` (or not yet due) and does
    nothing. A row left ``syncing`` by a killed worker can be claimed again once its lease has run out. The
    UPDATE returns the claimed row (``RETURNING``) where the database can; elsewhere a SELECT follows.
    """
    now = timezone.now()
    claimable = Signup.objects.claimable(now).filter(pk=signup_id)
    claim_fields: dict[str, Any] = {
        "status": Status.SYNCING,
        "attempts": F("attempts") + 1,
        "lease_expires_at": now + timedelta(seconds=app_settings.LEASE),
    }
    claimed = update_returning(claimable, **claim_fields)
    if claimed is not None:
        return claimed[0] if claimed else None
    return Signup.objects.get(pk=signup_id) if claimable.update(**claim_fields) else None


class NeedsConfirmation(Exception):
    """The person must confirm by email first: their contact unsubscribed at CC, or ``DOUBLE_OPT_IN`` is on."""


class ListsMissing(Exception):
    """CC no longer has some of the lists this signup goes to (deleted in CC's interface)."""

    def __init__(self, list_ids: list[str]) -> None:
        super().__init__(", ".join(list_ids))
        self.list_ids = list_ids


def lists_for(signup: Signup, connection: Connection | None = None) -> list[str]:
    """The lists a signup goes to: those picked for it, else the configured defaults, read now."""
    return usable_lists(signup.list_ids, connection)


def usable_lists(picked: list[str], connection: Connection | None = None) -> list[str]:
    """``picked`` else the default lists, leaving out lists known to be missing at CC.

    So a signup held for a deleted list goes to the list an admin chooses instead. Raises
    :class:`ListsMissing` when nothing usable is left. Reads the connection row unless ``connection``, a
    copy just loaded, is given.
    """
    if connection is None:
        missing = set(
            Connection.objects.filter(slug=Connection.DEFAULT_SLUG)
            .values_list("missing_list_ids", flat=True)
            .first()
            or []
        )
    else:
        missing = set(connection.missing_list_ids)
    chosen = [list_id for list_id in picked if list_id not in missing]
    list_ids = chosen or [list_id for list_id in default_list_ids(connection) if list_id not in missing]
    if not list_ids:
        raise ListsMissing(sorted(missing))
    return list_ids


def custom_fields_for(signup: Signup) -> list[dict[str, str]]:
    """CC's ``custom_fields`` for a signup, form fields mapped through ``CUSTOM_FIELDS`` as configured now."""
    mapping = app_settings.CUSTOM_FIELDS
    fields = []
    for item in signup.custom_fields:
        field_id = item.get("custom_field_id") or mapping.get(item.get("name"))
        if field_id and item.get("value") not in ("", None):
            fields.append({"custom_field_id": field_id, "value": item["value"]})
    return fields


def payload_for(signup: Signup, list_ids: list[str], details: bool = True) -> dict[str, Any]:
    """The ``sign_up_form`` body for a signup (only the fields that have a value); ``details=False``: lists only."""
    payload: dict[str, Any] = {"email_address": signup.email, "list_memberships": list_ids}
    if not details:
        return payload
    payload.update({field: getattr(signup, field) for field in CONTACT_FIELDS if getattr(signup, field)})
    custom_fields = custom_fields_for(signup)
    if custom_fields:
        payload["custom_fields"] = custom_fields
    if signup.street_address:
        payload["street_address"] = signup.street_address
    return payload


def create_body_for(signup: Signup, list_ids: list[str]) -> dict[str, Any]:
    """The ``POST /contacts`` body: a new contact with the person's details, created by the contact."""
    body: dict[str, Any] = {
        "email_address": {"address": signup.email, "permission_to_send": "explicit"},
        # CC asks integrations to say truthfully who added the contact: here the person did.
        "create_source": "Contact",
        "list_memberships": list_ids,
    }
    body.update({field: getattr(signup, field) for field in NAME_FIELDS if getattr(signup, field)})
    if signup.phone_number:
        body["phone_numbers"] = [{"phone_number": signup.phone_number, "kind": "other"}]
    if signup.street_address:
        body["street_addresses"] = [signup.street_address]
    custom_fields = custom_fields_for(signup)
    if custom_fields:
        body["custom_fields"] = custom_fields
    return body


def push(signup: Signup) -> tuple[str, bool]:
    """Send one signup to CC the contact-safe way; return ``(contact_id, created)`` or raise what to do next.

    A new address is created with its details in one request (``POST /contacts``). For an address CC
    already has, a stranger's submission only adds the missing lists: the details stay as they are unless
    the signup is ``verified`` or confirmed by the person. An unsubscribed contact is never opted back in
    without the person's own confirmation (:class:`NeedsConfirmation`). See docs/signups.md for the cost
    of each case.
    """
    if privacy.is_suppressed(signup.email):
        # Erased or unsubscribed after submitting: sign_up_form would opt them back in.
        raise Rejected("This email is on the suppression list.", error_key="suppressed")
    if app_settings.DOUBLE_OPT_IN and not (signup.confirmed_at or signup.verified):
        raise NeedsConfirmation()
    # One read of the connection row serves the lists, the application and the access token.
    connection = Connection.for_id(signup.connection_id)
    list_ids = lists_for(signup, connection)
    client = get_client(connection.application())
    try:
        return oauth.with_access_token(
            lambda token: _send_contact(client, token, signup, list_ids), connection=connection
        )
    except Rejected as err:
        if err.status_code == 404:
            # CC answers 404 for a list it no longer has; which one is told by the account's lists.
            missing = _missing_lists(list_ids, connection)
            if missing:
                raise ListsMissing(missing) from None
        raise


@sensitive_variables("token")
def _send_contact(
    client: ConstantContactClient, token: str, signup: Signup, list_ids: list[str]
) -> tuple[str, bool]:
    confirmed = signup.confirmed_at is not None
    # CC's Confirmed Opt-In applies only to sign_up_form: such accounts look the address up first.
    create_first = not app_settings.CONFIRMED_OPT_IN_AT_CC and (
        len(custom_fields_for(signup)) <= CREATE_CUSTOM_FIELDS_MAX
    )
    if create_first:
        contact_id = client.create_contact(token, create_body_for(signup, list_ids))
        if contact_id:
            return contact_id, True
    existing = client.find_contact(token, signup.email)
    if existing is None:
        if create_first:
            # CC said 409 and then knows no such contact: an inconsistent pair of answers. Never guess that
            # the address is new (sign_up_form would re-subscribe an unsubscribed contact): ask again later.
            raise RetryLater("Constant Contact said the address exists but its lookup found no contact.")
        # A Confirmed Opt-In account: new addresses go through sign_up_form, so CC applies its own COI.
        return client.sign_up_form(token, payload_for(signup, list_ids))
    contact_id = existing["contact_id"]
    permission = (existing.get("email_address") or {}).get("permission_to_send")
    if permission == "unsubscribed" and not confirmed:
        raise NeedsConfirmation()
    if confirmed or signup.verified:
        # The person's own word: a re-subscription after they confirmed, or a form behind their login.
        return client.sign_up_form(token, payload_for(signup, list_ids))
    if existing.get("deleted_at"):
        # Only sign_up_form restores a deleted contact; sent without details, nothing of theirs changes.
        return client.sign_up_form(token, payload_for(signup, list_ids, details=False))
    member_of = {str(list_id).lower() for list_id in existing.get("list_memberships") or []}
    lacking = [list_id for list_id in list_ids if list_id.lower() not in member_of]
    if lacking:
        client.add_list_memberships(token, contact_id, lacking)
    return contact_id, False


def _missing_lists(list_ids: list[str], connection: Connection) -> list[str]:
    """Which of ``list_ids`` the account no longer has (fetches the account's lists once)."""
    try:
        available = {item["list_id"].lower() for item in oauth.refresh_lists(connection)}
    except Exception:  # the lookup itself failed: treat the 404 as what CC said, a rejection
        logger.warning("Could not fetch the lists to explain a 404 from Constant Contact.", exc_info=True)
        return []
    return [list_id for list_id in list_ids if list_id.lower() not in available]


def process_signup(signup_id: int) -> None:
    """Claim, push and record the outcome of one signup (what the Celery task runs)."""
    if surge.diverts(signup_id):
        return  # a long queue: this signup goes in a bulk import (cc_sync.surge)
    signup = claim(signup_id)
    if signup is None:
        _come_back_when_the_lease_ends(signup_id)
        return
    try:
        contact_id, created = push(signup)
    except Rejected as err:
        _give_up(signup, str(err), err.error_key)
    except ReconnectRequired as err:
        if err.status_code == 403 or err.error_key == "tokens_unreadable":
            # Nothing works until someone acts: say so on the connection, once, instead of re-holding forever.
            oauth.mark_needs_reconnect(str(err), Connection.for_id(signup.connection_id))
        _finish(
            signup, status=Status.WAITING_RECONNECT, last_error=str(err)[:2000], last_error_key=err.error_key
        )
    except ListsMissing as err:
        _hold_for_list(signup, err.list_ids)
    except NeedsConfirmation:
        _ask_for_confirmation(signup)
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


def _come_back_when_the_lease_ends(signup_id: int) -> None:
    """A delivery that finds the row held by another worker's lease is published again for the lease's end.

    A broker delivers a message again as soon as the worker holding it dies: RabbitMQ when the dead worker's
    connection closes, either broker when a worker's pool process is killed (``reject_on_worker_lost``). That
    is usually before the dead worker's lease runs out. Dropping the delivery would leave the row to the
    sweeper; following the lease lets the broker finish the job. If the worker is alive after all, the later
    delivery finds the row synced (or claimable once more, as the sweeper would) and does nothing more.
    """
    lease_end = (
        Signup.objects.in_flight().filter(pk=signup_id).values_list("lease_expires_at", flat=True).first()
    )
    if lease_end is None:
        return
    wait = max(0.0, (lease_end - timezone.now()).total_seconds())
    if wait <= app_settings.MAX_COUNTDOWN:  # longer waits are the sweeper's, like every long wait
        publish([signup_id], marked_at=None, countdown=wait)


def _hold_for_list(signup: Signup, missing: list[str]) -> None:
    """Hold a signup whose lists CC no longer has, until an admin chooses another (nothing is lost)."""
    connection = Connection.for_id(signup.connection_id)
    if missing:
        with transaction.atomic():
            connection = lock_row(Connection, connection.pk)
            known = list(connection.missing_list_ids)
            connection.missing_list_ids = known + [list_id for list_id in missing if list_id not in known]
            connection.save(update_fields=["missing_list_ids", "updated_at"])
        message = f"List {', '.join(missing)} no longer exists at Constant Contact: choose another list."
    else:
        message = "No Constant Contact list is chosen: choose one on the connection page."
    remaining = [list_id for list_id in signup.list_ids if list_id not in missing]
    try:
        usable_lists(remaining, connection)
    except ListsMissing:
        if _finish(
            signup,
            status=Status.WAITING_LIST,
            list_ids=remaining,
            lease_expires_at=None,
            last_error=message,
            last_error_key="list_missing",
        ):
            logger.warning("Signup %s is held: %s", signup.pk, message)
        return
    # The list picked for this signup is gone but the default lists are usable: go there instead.
    Signup.objects.filter(pk=signup.pk, status=Status.SYNCING, attempts=signup.attempts).update(
        list_ids=remaining
    )
    signup.list_ids = remaining
    _retry_later(signup, RetryLater(message))


def _ask_for_confirmation(signup: Signup) -> None:
    """Email the person a link to confirm, and hold the signup until they do."""
    try:
        confirmation.send(signup)
    except confirmation.CannotConfirm as err:
        _give_up(signup, str(err), "confirmation_impossible")
        return
    except Exception as err:  # the mail server is down: try again later, nothing is lost
        logger.warning(
            "Could not send the confirmation email of signup %s (%s).", signup.pk, type(err).__name__
        )
        _retry_later(signup, RetryLater(f"Could not send the confirmation email ({type(err).__name__})."))
        return
    _finish(
        signup,
        status=Status.AWAITING_CONFIRMATION,
        confirmation_sent_at=timezone.now(),
        lease_expires_at=None,
        last_error="Waiting for the person to confirm by email.",
        last_error_key="awaiting_confirmation",
    )


def retry_delay(attempts: int, error: RetryLater) -> float:
    """Seconds to wait before the next attempt: full-jitter capped exponential backoff, or CC's own wait."""
    retry_max = app_settings.RETRY_MAX
    if isinstance(error, QuotaExceeded):
        # Until the next probe of the quota (ratelimit lets one request through then, and the others wait
        # for the probe after it); spread the rows over a minute after it.
        return (error.retry_after or 0) + random.uniform(0, 60)
    if isinstance(error, Throttled):
        # CC asks for about a second; a signup throttled again and again backs off further, up to RETRY_MAX,
        # so that nothing retries every second for hours.
        spread = min(retry_max, 2.0 ** max(0, attempts - 1))
        return max(1.0, error.retry_after or 1.0) + random.uniform(0, spread)
    cap = min(retry_max, app_settings.RETRY_BASE * 2 ** max(0, attempts - 1))
    # A wait CC named (ActivityQueueFull: minutes) is the least; the backoff comes on top.
    return (error.retry_after or 0) + random.uniform(0, cap)


def _retry_later(signup: Signup, error: RetryLater) -> None:
    rate_limited = isinstance(error, (Throttled, QuotaExceeded))
    if not rate_limited and timezone.now() >= signup.deadline_at:
        _give_up(signup, f"Gave up after {signup.attempts} attempts: {error}", error.error_key)
        return
    delay = retry_delay(signup.attempts, error)
    due = timezone.now() + timedelta(seconds=delay)
    # Long waits stay in the database for the sweeper: a Celery countdown longer than the broker's
    # visibility timeout gets redelivered again and again.
    countdown = delay <= app_settings.MAX_COUNTDOWN
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
            transaction.on_commit(lambda: publish([signup.pk], marked_at=due, countdown=delay))


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


def release_held_signups(connection: Connection | None = None) -> int:
    """Make ``connection``'s held signups (default: the default connection's) due now with a fresh
    deadline, and queue a sweep to publish them.

    Signups held for a reconnect are released whenever this runs (after a connect); those held for a
    deleted list only once a usable list is chosen. Signups awaiting the person's confirmation stay held.
    """
    connection = connection or Connection.load()
    statuses = [Status.WAITING_RECONNECT]
    try:
        usable_lists([], connection)
    except ListsMissing:
        pass
    else:
        statuses.append(Status.WAITING_LIST)
    # A hold stops the deadline: one transient error right after a long hold must not fail the signup.
    released = (
        connection.signups()
        .filter(status__in=statuses)
        .update(
            status=Status.PENDING,
            next_attempt_at=timezone.now(),
            enqueued_at=None,
            deadline_at=default_deadline(),
        )
    )
    if released:
        logger.info("Released %s held signups.", released)
        transaction.on_commit(queue_sweep)
    return released


def release_connected() -> int:
    """Release the held signups of every connection that is connected (the sweeper's catch-up)."""
    held = Signup.objects.filter(status__in=[Status.WAITING_RECONNECT, Status.WAITING_LIST])
    connection_ids = set(held.order_by().values_list("connection_id", flat=True).distinct())
    if not connection_ids:
        return 0
    default = Connection.load()
    if None in connection_ids:
        connection_ids = (connection_ids - {None}) | {default.pk}
    connected = Connection.objects.filter(pk__in=connection_ids, status=Connection.Status.CONNECTED)
    return sum(release_held_signups(connection) for connection in connected)


@receiver(connection_established, dispatch_uid="cc_sync.release_held_signups")
def _release_on_connect(connection: Connection | None = None, **kwargs: Any) -> None:
    release_held_signups(connection)


def expected_queue_time(now: Any = None) -> float:
    """Seconds the queued, due signups take to drain at ``API_RATE``.

    A message counts as lost only once it is older than ``REQUEUE_AFTER`` plus this: in a long backlog
    (after a broker outage, or at midnight after a quota day) a message may just be waiting its turn, and
    queueing it again would only add a duplicate per sweep.
    """
    rate = app_settings.API_RATE
    if rate <= 0:
        return 0.0
    queued = Signup.objects.due(now).filter(enqueued_at__isnull=False).count()
    return queued * ratelimit.SPACING_MARGIN / rate


def sweep() -> int:
    """Queue due signups whose message is missing: never published, lost by the broker, or left by a dead worker.

    Also releases held signups once the connection works again. Returns how many were queued.
    """
    release_connected()
    expire_unconfirmed()
    surge.check_backlog()
    now = timezone.now()
    stale = now - timedelta(seconds=app_settings.REQUEUE_AFTER + expected_queue_time(now))
    never_or_long_ago = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=stale)
    due = SignupQuerySet.due_q(now) & never_or_long_ago
    # A dead worker's row: its lease ran out and nobody has queued it since.
    abandoned = SignupQuerySet.lease_expired_q(now) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=F("lease_expires_at"))
    )
    ids = list(
        Signup.objects.filter(due | abandoned)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: app_settings.SWEEP_BATCH]
    )
    if not ids:
        return 0
    # Beat's next sweep may start on another worker while this one publishes: take the rows first with a
    # conditional UPDATE (a concurrent one re-checks the condition once ours commits), so each is queued once.
    taken_at = timezone.now()
    Signup.objects.filter(due | abandoned, pk__in=ids).update(enqueued_at=taken_at)
    taken = list(Signup.objects.filter(pk__in=ids, enqueued_at=taken_at).values_list("pk", flat=True))
    return len(publish(taken, marked_at=taken_at))


def expire_unconfirmed() -> int:
    """Mark failed the signups whose confirmation link expired unused (``CONFIRMATION_MAX_AGE``)."""
    cutoff = timezone.now() - timedelta(seconds=app_settings.CONFIRMATION_MAX_AGE)
    expired = Signup.objects.filter(
        status=Status.AWAITING_CONFIRMATION, confirmation_sent_at__lte=cutoff
    ).update(
        status=Status.FAILED,
        last_error="The person did not confirm by email in time.",
        last_error_key="not_confirmed",
        updated_at=timezone.now(),
    )
    if expired:
        logger.info("%s signups were not confirmed in time.", expired)
    return expired


def in_flight(now: datetime | None = None) -> Q:
    """Rows a worker holds right now: ``syncing`` with a live lease. Admin actions leave them alone."""
    return SignupQuerySet.in_flight_q(now or timezone.now())


def retry_now(queryset: Any) -> tuple[int, int]:
    """Put failed or held signups back to pending, due now with a fresh deadline, and queue them.

    The admin's "Retry now". Returns ``(queued, skipped_in_flight)``: rows a worker holds are left to it.
    Signups awaiting the person's confirmation are not retried: only the person can release them.
    """
    now = timezone.now()
    retryable = [Status.FAILED, Status.WAITING_RECONNECT, Status.WAITING_LIST, Status.PENDING, Status.SYNCING]
    skipped = queryset.filter(in_flight(now)).count()
    ids = list(queryset.filter(status__in=retryable).exclude(in_flight(now)).values_list("pk", flat=True))
    Signup.objects.filter(pk__in=ids).exclude(in_flight(now)).update(
        status=Status.PENDING, next_attempt_at=now, enqueued_at=now, deadline_at=default_deadline()
    )
    transaction.on_commit(lambda: publish_later(ids, marked_at=now))
    return len(ids), skipped


def mark_failed(queryset: Any, reason: str) -> tuple[int, int]:
    """Give up on signups that are not synced (the admin's "Mark as failed").

    Returns ``(marked, skipped_in_flight)``: rows a worker holds are left to it.
    """
    now = timezone.now()
    skipped = queryset.filter(in_flight(now)).count()
    marked = (
        queryset.exclude(status=Status.SYNCED)
        .exclude(in_flight(now))
        .update(status=Status.FAILED, last_error=reason, lease_expires_at=None, updated_at=now)
    )
    return marked, skipped
