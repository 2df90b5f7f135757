"""Surge mode: when the queue is long, due signups go to CC in bulk imports instead of one request each.

CC allows 4 requests a second and 10,000 a day per API key, and the one-by-one path costs at least one
request per signup; ``POST /v3/activities/contacts_json_import`` takes up to 40,000 contacts in one request
(https://developer.constantcontact.com/api_guide/import_contacts.html). So when more signups are due than
``CC_SYNC["SURGE_THRESHOLD"]`` (default: a minute of sending at ``API_RATE``), or than the day's remaining
``DAILY_LIMIT`` can pay for, the worker that notices queues one ``cc_sync.import_surge`` task and the
one-by-one tasks of the signups it can take step aside.

The same contact-safety rules hold (docs/signups.md):

- CC's import updates the fields it is sent on a contact that exists, so a stranger's signup is imported
  with its email and lists only: the names of an existing contact are never overwritten, and a *new*
  contact is created without the names the visitor typed (the trade-off of surge mode). Only a
  ``verified`` signup sends its details.
- CC does not add a contact that unsubscribed to any list (``status.cannot_add_to_list_count``), so the
  import never re-subscribes anyone. Those signups are found with a lookup of the account's unsubscribed
  contacts and sent back to the one-by-one path, which emails the person a confirmation link; when they
  cannot all be found, every signup of the batch that was not an error goes back, never silently synced.
- New contacts get ``permission_to_send=implicit`` and ``opt_in_source=Account`` from an import, not the
  explicit permission of ``POST /contacts``; each signup keeps its own consent record on the row.
- Suppressed addresses are dropped before the request; held signups (awaiting confirmation, waiting for a
  list or a connection) are not due, so never taken; signups that need ``sign_up_form`` (confirmed ones,
  ``DOUBLE_OPT_IN``, ``CONFIRMED_OPT_IN_AT_CC``, verified ones with custom fields) stay on the one-by-one
  path.

Crash safety follows the backfill (:mod:`cc_sync.backfill`, whose request planning, API call, error
attribution and activity states this module uses): the rows are claimed into a :class:`SurgeBatch` with one
conditional UPDATE, the activity id is saved the moment CC accepts the import, and a batch is worked by one
worker at a time under a lease. A killed worker's batch is picked up by the next ``import_surge`` (the
sweeper queues it), which polls the saved activity instead of importing again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import backfill, privacy, ratelimit, sync
from .client import ConstantContactClient, get_client
from .conf import app_settings
from .exceptions import ActivityQueueFull, ReconnectRequired, Rejected, RetryLater
from .models import Connection, Signup, Suppression, SurgeBatch
from .publisher import publish
from .signals import signup_failed, signup_synced

logger = logging.getLogger("cc_sync.surge")

Status = Signup.Status
BatchStatus = SurgeBatch.Status

#: Seconds a worker process trusts its last look at the backlog (one COUNT per process per interval).
CHECK_INTERVAL = 5.0
#: Seconds between two polls of an activity; each poll is one request of the daily budget.
POLL_INTERVAL = 5.0
#: Signups claimed into batches at a time: one full import request.
CLAIM_SIZE = backfill.MAX_CONTACTS
#: A claimed signup stays out of the one-by-one path this long; every worker that takes its batch renews
#: it, so only a surge machinery dead for a day lets the one-by-one path take the row back.
ROW_LEASE = 24 * 3600.0
#: ``GET /contacts?status=unsubscribed`` pages (500 each) read to find who CC did not add; beyond that the
#: batch's signups go back to the one-by-one path.
UNSUBSCRIBED_PAGES = 20
UNSUBSCRIBED_PAGE_SIZE = 500
# Set while an import_surge task is queued or running, so that a thousand diverted signups queue one task.
_QUEUED_KEY = "cc_sync:surge:queued"
_QUEUED_TIMEOUT = 60

# Import keys of a sign_up_form street_address, by its kind (spec build 3.0.161, JsonImportContact; its
# home country key is spelled "home country").
_ADDRESS_PARTS = {"street": "street", "city": "city", "state": "state", "postal_code": "zip"}
_ADDRESS_KINDS = ("home", "work", "other")


# -- the decision ------------------------------------------------------------------------------------


def enabled() -> bool:
    """Surge mode is on (``SURGE_IMPORT``) and may be used: not with CC's Confirmed Opt-In, which only
    ``sign_up_form`` triggers."""
    return app_settings.SURGE_IMPORT and not app_settings.CONFIRMED_OPT_IN_AT_CC


def threshold() -> int:
    """Due signups above which surge mode starts: ``SURGE_THRESHOLD``, else a minute of sending at ``API_RATE``."""
    configured = app_settings.SURGE_THRESHOLD
    if configured is not None:
        return configured
    return int(60 * app_settings.API_RATE)


def eligible_q() -> Q:
    """Signups the import may carry: all but those only ``sign_up_form`` can send right.

    A confirmed re-subscription needs sign_up_form (an import never re-subscribes); with ``DOUBLE_OPT_IN``
    only verified signups skip the email; a verified signup's custom fields are keyed by id and the import
    takes names; a signup the import sent back (it has a batch) goes one by one.
    """
    eligible = Q(confirmed_at__isnull=True, surge_batch__isnull=True)
    if app_settings.DOUBLE_OPT_IN:
        eligible &= Q(verified=True)
    return eligible & (Q(verified=False) | Q(custom_fields=[]))


def decide(now: Any = None) -> bool:
    """True when the due, eligible backlog of an application (API key) is above :func:`threshold` or beyond
    its day's remaining budget.

    With one application (every connection on the settings' one) the whole backlog is counted; with several,
    each application's connections' backlog against that application's budget.
    """
    if not enabled():
        return False
    budgets = _budgets()
    backlog = Signup.objects.due(now).filter(eligible_q()).order_by()
    if len(set(budgets.values())) <= 1:
        return _calls_for_bulk(backlog, next(iter(budgets.values()), "api"))
    return any(
        _calls_for_bulk(backlog.filter(_connections_q(budgets, budget)), budget)
        for budget in set(budgets.values())
    )


def _budgets() -> dict[int | None, str]:
    """``{Signup.connection_id: API budget}``: ``None`` (a signup naming no connection) is the default one's."""
    budgets: dict[int | None, str] = {None: "api"}
    for connection in Connection.objects.all():
        budgets[connection.pk] = budget = connection.budget("api")
        if connection.is_default:
            budgets[None] = budget
    return budgets


def _connections_q(budgets: dict[int | None, str], budget: str) -> Q:
    ids = [pk for pk, name in budgets.items() if name == budget and pk is not None]
    q = Q(connection_id__in=ids)
    return q | Q(connection__isnull=True) if budgets[None] == budget else q


def _calls_for_bulk(backlog: Any, budget: str) -> bool:
    limit = threshold()
    remaining = None
    if app_settings.DAILY_LIMIT > 0:
        remaining = max(0, app_settings.DAILY_LIMIT - ratelimit.requests_today(budget))
    # Counting stops one past what decides, so a long queue costs no more than a short one.
    cap = max(limit, remaining or 0) + 1
    count = backlog[:cap].count()
    if count > limit:
        logger.info("%s+ signups are due (threshold %s) in budget %s: surge mode.", count, limit, budget)
        return True
    if remaining is not None and count > remaining:
        logger.info(
            "%s signups are due and %s requests are left today in budget %s: surge mode.",
            count,
            remaining,
            budget,
        )
        return True
    return False


_decision: dict[str, float | bool] = {"at": float("-inf"), "active": False}


def active() -> bool:
    """:func:`decide`, looked at most every ``CHECK_INTERVAL`` seconds per process; queues the import when on."""
    now = time.monotonic()
    if now - float(_decision["at"]) >= CHECK_INTERVAL:
        _decision.update(at=now, active=decide())
    if _decision["active"]:
        queue_import()
    return bool(_decision["active"])


def forget() -> None:
    """Drop this process's cached decision (tests, or after changing the settings at run time)."""
    _decision.update(at=float("-inf"), active=False)


def diverts(signup_id: int) -> bool:
    """True when surge mode is on and will take this signup: its one-by-one task then does nothing.

    The hook at the start of :func:`cc_sync.sync.process_signup`. A signup diverted but not taken (the
    import finished just before) stays due, and the sweeper queues it again.
    """
    if not active():
        return False
    return Signup.objects.due().filter(eligible_q(), pk=signup_id).exists()


def check_backlog() -> bool:
    """The sweeper's hook: queue ``import_surge`` when a batch waits for a worker or the backlog calls for it."""
    # Batches left unfinished are resumed even with surge mode switched off since: their rows are held.
    if _free_batches(timezone.now()).exists() or decide():
        queue_import()
        return True
    return False


def queue_import() -> None:
    """Queue one ``cc_sync.import_surge`` task (at most one a minute; the claims keep extra ones harmless)."""
    if not cache.add(_QUEUED_KEY, True, timeout=_QUEUED_TIMEOUT):
        return
    from .tasks import import_surge

    def send() -> None:
        try:
            import_surge.apply_async(queue=app_settings.QUEUE, retry=False)
        except Exception as err:  # the broker is down: the sweeper's next run tries again
            cache.delete(_QUEUED_KEY)
            logger.warning("Could not queue the surge import (%s).", type(err).__name__)

    transaction.on_commit(send)


# -- what one signup becomes in the import ----------------------------------------------------------


def contact_for(signup: Signup) -> dict[str, str]:
    """The ``import_data`` item of a signup: email only, with the details only when ``verified``.

    CC's import overwrites the fields it is sent on a contact that exists; a stranger's signup must not.
    """
    item = {"email": signup.email}
    if not signup.verified:
        return item
    item.update({field: getattr(signup, field) for field in sync.NAME_FIELDS if getattr(signup, field)})
    if signup.phone_number:
        item["phone"] = signup.phone_number
    address = signup.street_address or {}
    kind = address.get("kind") if address.get("kind") in _ADDRESS_KINDS else "other"
    for part, name in _ADDRESS_PARTS.items():
        if address.get(part):
            item[f"{kind}_{name}"] = address[part]
    if address.get("country"):
        item["home country" if kind == "home" else f"{kind}_country"] = address["country"]
    return item


# -- claiming rows into batches ----------------------------------------------------------------------


def claim_batches(now: Any = None) -> list[SurgeBatch]:
    """Take up to ``CLAIM_SIZE`` due, eligible signups into new batches (one per set of lists, each within
    CC's request limits), held by this worker. Two workers never take the same row: the claim is one
    conditional UPDATE, as :func:`cc_sync.sync.claim` is."""
    now = now or timezone.now()
    ids = list(
        Signup.objects.due(now)
        .filter(eligible_q())
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:CLAIM_SIZE]
    )
    if not ids:
        return []
    with transaction.atomic():
        holder = SurgeBatch.objects.create(lease_expires_at=batch_lease_until(now))
        taken = (
            Signup.objects.due(now)
            .filter(eligible_q(), pk__in=ids)
            .update(
                status=Status.SYNCING,
                attempts=F("attempts") + 1,
                lease_expires_at=now + timedelta(seconds=ROW_LEASE),
                surge_batch=holder,
            )
        )
        if not taken:
            holder.delete()
            return []
        signups = list(Signup.objects.filter(surge_batch=holder, status=Status.SYNCING).order_by("pk"))
        return _plan(holder, signups, now)


def _plan(holder: SurgeBatch, signups: list[Signup], now: Any) -> list[SurgeBatch]:
    """Split claimed signups into batches by lists and size; signups without a usable list go one by one."""
    # One import goes to one account and one set of lists.
    groups: dict[tuple[int | None, tuple[str, ...]], list[Signup]] = defaultdict(list)
    no_list: list[Signup] = []
    connections: dict[int | None, Connection] = {}
    # lists_for(), once per connection and distinct pick
    resolved: dict[tuple[int | None, tuple[str, ...]], tuple[str, ...] | None] = {}
    for signup in signups:
        key = (signup.connection_id, tuple(signup.list_ids))
        if key not in resolved:
            if signup.connection_id not in connections:
                connections[signup.connection_id] = Connection.for_id(signup.connection_id)
            try:
                resolved[key] = tuple(sync.usable_lists(list(key[1]), connections[signup.connection_id]))
            except sync.ListsMissing:
                resolved[key] = None
        list_ids = resolved[key]
        if list_ids is None:
            no_list.append(signup)
        else:
            groups[(signup.connection_id, list_ids)].append(signup)
    if no_list:
        # The one-by-one path holds them for a list (waiting_list) and tells the admin.
        _one_by_one(holder, [signup.pk for signup in no_list], now)
    batches: list[SurgeBatch] = []
    for (connection_id, list_ids), members in groups.items():
        planned, too_large = backfill.split_batches([contact_for(s) for s in members], list(list_ids))
        if too_large:
            _one_by_one(holder, [members[position].pk for position in too_large], now)
        for positions in planned:
            batch = holder if not batches else SurgeBatch(lease_expires_at=holder.lease_expires_at)
            batch.connection_id = connection_id
            batch.list_ids = list(list_ids)
            batch.signup_ids = [members[position].pk for position in positions]
            batch.save()
            if batch is not holder:
                Signup.objects.filter(pk__in=batch.signup_ids).update(surge_batch=batch)
            batches.append(batch)
    if not batches:
        holder.status, holder.finished_at = BatchStatus.COMPLETED, now
        holder.save()
    logger.info("Surge mode took %s signups into %s bulk imports.", len(signups), len(batches))
    return batches


def batch_lease_until(now: Any) -> Any:
    """When a worker's hold on a batch runs out: ``LEASE`` from ``now``, and at least three polls away, so that a
    short ``LEASE`` never lets another worker take a batch between two polls of the one working it."""
    return now + timedelta(seconds=max(app_settings.LEASE, 3 * POLL_INTERVAL))


def _free_batches(now: Any) -> Any:
    return SurgeBatch.objects.filter(status__in=SurgeBatch.UNFINISHED).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    )


def take_unfinished(now: Any = None) -> list[SurgeBatch]:
    """Batches left by a worker that stopped (killed, or waiting out CC's queue or quota), now held by this one."""
    now = now or timezone.now()
    taken = []
    for pk in _free_batches(now).order_by("pk").values_list("pk", flat=True):
        until = batch_lease_until(now)
        if _free_batches(now).filter(pk=pk).update(lease_expires_at=until):
            batch = SurgeBatch.objects.get(pk=pk)
            Signup.objects.filter(surge_batch=batch, status=Status.SYNCING).update(
                lease_expires_at=now + timedelta(seconds=ROW_LEASE)
            )
            taken.append(batch)
    return taken


# -- sending and polling -----------------------------------------------------------------------------


class Surge:
    """Sends this worker's batches and polls their activities to the end, then records every signup."""

    def __init__(
        self,
        poll_interval: float = POLL_INTERVAL,
        sleep: Callable[[float], None] | None = None,
        client: ConstantContactClient | None = None,
    ) -> None:
        self.poll_interval = poll_interval
        self.sleep = sleep or time.sleep
        # A client given here (tests) serves every batch; otherwise each batch's connection's application.
        self.client = client

    def run(self) -> int:
        """Resume unfinished batches, then take due signups while the backlog calls for it; return the batches ended."""
        ended, first = 0, True
        try:
            while True:
                batches = take_unfinished()
                # The first round takes what is due (the task was queued for it); later rounds only while the
                # backlog still calls for bulk, so that steady traffic after a surge goes one by one again.
                if enabled() and (first or decide()):
                    batches += claim_batches()
                first = False
                if not batches:
                    return ended
                done = self.drive(batches)
                ended += done
                if done < len(batches):
                    return ended  # some wait (CC's queue, the quota, a reconnect): the sweeper resumes them
        finally:
            cache.delete(_QUEUED_KEY)

    def drive(self, batches: list[SurgeBatch]) -> int:
        """Send and poll ``batches`` (at most ``backfill.MAX_IN_FLIGHT`` at CC at once); return how many ended.

        A batch CC cannot take now (its activity queue is full, the quota is spent, a transient failure
        outlasting the retries, a grant to reconnect) is left with a lease that runs out when it may be tried
        again, and so are the other batches of its connection. The other connections' batches go on: one
        account's refusal never holds up another account's signups.
        """
        pending = [b for b in batches if b.status == BatchStatus.PENDING]
        in_flight = [b for b in batches if b.status == BatchStatus.SUBMITTED]
        ended = 0
        while pending or in_flight:
            while pending and len(in_flight) < backfill.MAX_IN_FLIGHT:
                batch = pending[0]
                if not self._hold(batch):
                    pending.pop(0)  # our lease ran out while other batches were polled: not ours now
                    continue
                try:
                    self.submit(batch)  # raises before the pop: a batch CC did not take stays pending
                except (RetryLater, ReconnectRequired) as err:
                    self._stop_connection(batch.connection_id, err, pending, in_flight)
                    continue
                pending.pop(0)
                if batch.status == BatchStatus.SUBMITTED:
                    in_flight.append(batch)
                else:
                    ended += 1
            if in_flight:
                self.sleep(self.poll_interval)
                for batch in list(in_flight):
                    if batch not in in_flight:
                        continue  # its connection was stopped by another batch's refusal in this round
                    if not self._hold(batch):
                        in_flight.remove(batch)
                        continue
                    try:
                        finished = self.poll(batch)
                    except (RetryLater, ReconnectRequired) as err:
                        self._stop_connection(batch.connection_id, err, pending, in_flight)
                        continue
                    if finished:
                        in_flight.remove(batch)
                        ended += 1
        return ended

    def _stop_connection(
        self,
        connection_id: int | None,
        err: RetryLater | ReconnectRequired,
        pending: list[SurgeBatch],
        in_flight: list[SurgeBatch],
    ) -> None:
        """Take the batches of ``connection_id`` out of ``pending`` and ``in_flight`` and leave them as ``err``
        says: waiting out CC's queue or quota, or (unsent) held for a reconnect."""
        unsent = [b for b in pending if b.connection_id == connection_id]
        submitted = [b for b in in_flight if b.connection_id == connection_id]
        pending[:] = [b for b in pending if b.connection_id != connection_id]
        in_flight[:] = [b for b in in_flight if b.connection_id != connection_id]
        if isinstance(err, ActivityQueueFull):
            self._wait([*submitted, *unsent], backfill.queue_full_delay(err, 1), str(err))
        elif isinstance(err, ReconnectRequired):
            self._hold_for_reconnect(unsent, str(err))
            self._wait(submitted, app_settings.LEASE, str(err))
        else:  # QuotaExceeded included: its retry_after is the next probe
            self._wait([*submitted, *unsent], max(err.retry_after or 0.0, app_settings.LEASE), str(err))

    def _hold(self, batch: SurgeBatch) -> bool:
        """Renew this worker's lease on ``batch``; False when it ran out and another worker may have the batch."""
        until = batch_lease_until(timezone.now())
        # Taking a batch over changes its lease: the same value means nobody has (even if it has run out).
        held = SurgeBatch.objects.filter(
            pk=batch.pk, status=batch.status, lease_expires_at=batch.lease_expires_at
        )
        if not held.update(lease_expires_at=until):
            logger.warning(
                "Surge batch %s: this worker's lease ran out; another worker resumes it.", batch.pk
            )
            return False
        batch.lease_expires_at = until
        return True

    def _wait(self, batches: list[SurgeBatch], seconds: float, reason: str) -> None:
        until = timezone.now() + timedelta(seconds=seconds)
        for batch in batches:
            batch.lease_expires_at, batch.last_error = until, reason[:2000]
            batch.save(update_fields=["lease_expires_at", "last_error"])
        if batches:
            logger.warning("Surge import waits %.0f s: %s", seconds, reason)

    def _hold_for_reconnect(self, batches: list[SurgeBatch], reason: str) -> None:
        """Unsent batches dissolve: their signups wait for a connection, as the one-by-one path's would."""
        for batch in batches:
            with transaction.atomic():
                _dissolve(batch, reason, status=Status.WAITING_RECONNECT, last_error_key="reconnect_required")

    def _call(self, batch: SurgeBatch, method: str, *args: Any) -> dict[str, Any]:
        """``client.<method>(token, *args)`` for ``batch``'s account (backfill.call_api's retries)."""
        connection = Connection.for_id(batch.connection_id)
        client = self.client or get_client(connection.application())
        return backfill.call_api(getattr(client, method), *args, sleep=self.sleep, connection=connection)

    def _signups(self, batch: SurgeBatch) -> list[Signup | None]:
        """The batch's signups in request order (None for one erased since)."""
        rows = Signup.objects.filter(pk__in=batch.signup_ids, surge_batch=batch, status=Status.SYNCING)
        by_id = {signup.pk: signup for signup in rows}
        return [by_id.get(pk) for pk in batch.signup_ids]

    def submit(self, batch: SurgeBatch) -> None:
        """Send one batch; its activity id is saved at once, so a crash from then on polls instead of resending."""
        signups = [signup for signup in self._signups(batch) if signup is not None]
        suppressed = _suppressed(signups)
        if suppressed:
            # Erased or unsubscribed since they signed up: never sent, as push() refuses them.
            _fail(batch, suppressed, "This email is on the suppression list.", "suppressed")
            signups = [signup for signup in signups if signup.pk not in suppressed]
        ids = [signup.pk for signup in signups]
        if ids != batch.signup_ids:
            batch.signup_ids = ids
            batch.save(update_fields=["signup_ids"])
        if not signups:
            batch.status, batch.finished_at = BatchStatus.COMPLETED, timezone.now()
            batch.save()
            return
        try:
            activity = self._call(
                batch, "import_contacts_json", [contact_for(s) for s in signups], list(batch.list_ids)
            )
        except Rejected as err:
            # CC refused the request as a whole (a 400, a list gone): the one-by-one path sends each signup
            # and records what CC says about it, holding them for a list if that is the cause.
            with transaction.atomic():
                _one_by_one(batch, ids, timezone.now())
                batch.status, batch.finished_at = BatchStatus.FAILED, timezone.now()
                batch.last_error = str(err)[:2000]
                batch.save()
            return
        batch.activity_id = activity["activity_id"]
        batch.state = str(activity.get("state") or "initialized")[:20]
        batch.status, batch.submitted_at = BatchStatus.SUBMITTED, timezone.now()
        batch.last_error = ""
        batch.lease_expires_at = batch_lease_until(timezone.now())
        batch.save()
        logger.info(
            "Surge batch %s (%s signups) submitted as activity %s.", batch.pk, len(ids), batch.activity_id
        )

    def poll(self, batch: SurgeBatch) -> bool:
        """Check a submitted batch's activity once; True when it has ended and its signups are recorded."""
        try:
            activity = self._call(batch, "activity", batch.activity_id)
        except Rejected as err:  # 404: CC keeps activities for 10 days only
            self._retry(batch, str(err))
            return True
        state, percent = backfill.activity_progress(activity, batch.percent_done)
        batch.state, batch.percent_done = state, percent
        if state not in backfill.FINAL_STATES:
            batch.save(update_fields=["state", "percent_done"])
            return False
        if state != "completed":
            self._retry(batch, backfill.activity_failure(activity, state))
            return True
        self.settle(batch, activity)
        return True

    def settle(self, batch: SurgeBatch, activity: dict[str, Any]) -> None:
        """Record a completed import: per-contact errors fail their signups, the unsubscribed go one by one,
        the rest are synced. One transaction, so a crash before its end leaves the batch to be polled again."""
        signups = self._signups(batch)
        errors = backfill.contact_errors([s.email if s else None for s in signups], activity)
        failed: dict[int, str] = {}
        for error in errors:
            index = error["index"]
            if isinstance(index, int) and signups[index] is not None:
                failed[signups[index].pk] = error["message"]  # type: ignore[union-attr]
        rest = [s for s in signups if s is not None and s.pk not in failed]
        refused = _count(activity, "cannot_add_to_list_count")
        unattributed = sum(error["index"] is None for error in errors)
        if unattributed:
            # An error CC tied to no contact of ours: which signup it is cannot be told, so none is synced.
            back = [s.pk for s in rest]
        elif refused:
            back = self._not_added(batch, rest, refused)
        else:
            back = []
        synced = [s for s in rest if s.pk not in set(back)]
        now = timezone.now()
        with transaction.atomic():
            for pk, message in failed.items():
                _fail(
                    batch,
                    {pk},
                    f"Constant Contact refused this contact in the import: {message}",
                    "import_error",
                )
            _one_by_one(batch, back, now)
            Signup.objects.filter(
                pk__in=[s.pk for s in synced], surge_batch=batch, status=Status.SYNCING
            ).update(
                status=Status.SYNCED,
                synced_at=now,
                last_error="",
                last_error_key="",
                updated_at=now,
            )
            batch.errors, batch.cannot_add_to_list_count = errors, refused
            batch.status, batch.finished_at, batch.percent_done = BatchStatus.COMPLETED, now, 100
            batch.save()
        logger.info(
            "Surge batch %s completed: %s synced, %s refused by CC, %s sent one by one.",
            batch.pk,
            len(synced),
            len(failed),
            len(back),
        )
        for signup in synced:
            signup.status, signup.synced_at = Status.SYNCED, now
            signup_synced.send(sender=Signup, signup=signup)

    def _not_added(self, batch: SurgeBatch, signups: list[Signup], refused: int) -> list[int]:
        """The signups CC did not add to the lists because their contact unsubscribed.

        CC gives only a count. The account's unsubscribed contacts are read (up to ``UNSUBSCRIBED_PAGES``
        pages) and matched by email; if fewer than ``refused`` are found, which ones they are cannot be
        told, so all the batch's signups go back to the one-by-one path (safe, costs requests).
        """
        wanted = {signup.email.lower(): signup.pk for signup in signups}
        found: list[int] = []
        params: dict[str, Any] = {"status": "unsubscribed", "limit": UNSUBSCRIBED_PAGE_SIZE}
        href = ""
        for _page in range(UNSUBSCRIBED_PAGES):
            page = self._call(batch, "contacts_page", params, href)
            for contact in page.get("contacts") or []:
                address = str(((contact or {}).get("email_address") or {}).get("address") or "").lower()
                if address in wanted:
                    found.append(wanted.pop(address))
            href = str(((page.get("_links") or {}).get("next") or {}).get("href") or "")
            if len(found) >= refused or not href:
                break
        if len(found) >= refused:
            return found
        logger.warning(
            "Surge import: CC did not add %s contacts (unsubscribed) and only %s were found; the batch's "
            "signups are sent one by one.",
            refused,
            len(found),
        )
        return [signup.pk for signup in signups]

    def _retry(self, batch: SurgeBatch, reason: str) -> None:
        """The activity failed (or is gone): its signups are due again under the retry rules, free for a later
        import; past their deadline they fail. Never counted as synced."""
        now = timezone.now()
        rows = Signup.objects.filter(surge_batch=batch, status=Status.SYNCING)
        attempts = max(rows.values_list("attempts", flat=True), default=1)
        delay = sync.retry_delay(attempts, RetryLater(reason))
        with transaction.atomic():
            expired = list(rows.filter(deadline_at__lte=now).values_list("pk", flat=True))
            _fail(
                batch, set(expired), f"Gave up: the bulk import did not complete: {reason}", "import_failed"
            )
            _dissolve(
                batch,
                reason,
                status=Status.PENDING,
                next_attempt_at=now + timedelta(seconds=delay),
                enqueued_at=None,
                lease_expires_at=None,
                last_error_key="import_failed",
            )
        logger.warning(
            "Surge batch %s did not complete (%s); its signups are retried in %.0f s.",
            batch.pk,
            reason,
            delay,
        )


def _dissolve(batch: SurgeBatch, reason: str, **fields: Any) -> None:
    """End a batch as failed; its signups still held leave it (free for a later import) with ``fields``."""
    now = timezone.now()
    Signup.objects.filter(surge_batch=batch, status=Status.SYNCING).update(
        surge_batch=None, last_error=reason[:2000], updated_at=now, **fields
    )
    batch.status, batch.finished_at, batch.last_error = BatchStatus.FAILED, now, reason[:2000]
    batch.save()


def _count(activity: dict[str, Any], name: str) -> int:
    try:
        return max(0, int((activity.get("status") or {}).get(name) or 0))
    except (TypeError, ValueError):
        return 0


def _suppressed(signups: list[Signup]) -> set[int]:
    """Signups whose email is on the suppression list (one query for the batch)."""
    hashes = {signup.pk: privacy.email_hashes(signup.email) for signup in signups}
    found = set(
        Suppression.objects.filter(
            email_hash__in=[h for values in hashes.values() for h in values]
        ).values_list("email_hash", flat=True)
    )
    return {pk for pk, values in hashes.items() if found.intersection(values)}


def _fail(batch: SurgeBatch, ids: set[int], reason: str, key: str) -> None:
    if not ids:
        return
    rows = Signup.objects.filter(pk__in=ids, surge_batch=batch, status=Status.SYNCING)
    failed = list(rows)
    rows.update(status=Status.FAILED, last_error=reason[:2000], last_error_key=key, updated_at=timezone.now())
    for signup in failed:
        logger.warning("Signup %s failed: %s", signup.pk, reason)
        signup.status = Status.FAILED
        signup_failed.send(sender=Signup, signup=signup, reason=reason)


def _one_by_one(batch: SurgeBatch, ids: list[int], now: Any) -> None:
    """Send signups back to the one-by-one path at once; they keep their batch, so no import takes them again."""
    if not ids:
        return
    Signup.objects.filter(pk__in=ids, surge_batch=batch, status=Status.SYNCING).update(
        status=Status.PENDING, next_attempt_at=now, enqueued_at=now, lease_expires_at=None, updated_at=now
    )
    transaction.on_commit(lambda: publish(list(ids), marked_at=now))


def run(poll_interval: float = POLL_INTERVAL, sleep: Callable[[float], None] | None = None) -> int:
    """What the ``cc_sync.import_surge`` task runs: see :class:`Surge`."""
    return Surge(poll_interval=poll_interval, sleep=sleep).run()
