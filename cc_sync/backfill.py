"""Bulk import of the people a site already has (``manage.py cc_sync_backfill``).

Plain functions, no Celery: read a source (a CSV file or a callable returning rows), validate every row with
the signup form's own limits, drop the suppressed and the non-consenting, cut the rest into batches that fit
CC's ``contacts_json_import`` (at most 40,000 contacts and under 4 MB each), submit them and poll each
activity until CC has finished it. Every request goes through :class:`~cc_sync.client.ConstantContactClient`,
so the shared rate limit, the daily budget and the timeouts apply.

Progress lives in :class:`~cc_sync.models.BackfillRun` / :class:`~cc_sync.models.BackfillBatch`, keyed on a
fingerprint of the source, so running the same command again after a crash resumes: finished batches are not
sent again, a submitted one is polled, pending ones are sent. Batches store row numbers, never emails.

Bulk-imported *new* contacts get **implicit** permission, not the explicit permission of ``sign_up_form``
(https://developer.constantcontact.com/api_guide/import_contacts.html).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import oauth
from .backfill_source import (  # noqa: F401 - re-exported: cc_sync.backfill is the front door
    CONSENT_COLUMN,
    CONSENT_YES,
    CUSTOM_FIELD_PREFIX,
    IMPORT_CUSTOM_FIELD_MAX_LENGTH,
    IMPORT_EMAIL_MAX_LENGTH,
    IMPORT_PHONE_MAX_LENGTH,
    IMPORT_TEXT_MAX_LENGTH,
    KNOWN_COLUMNS,
    MAX_CUSTOM_FIELDS,
    TEXT_FIELDS,
    Row,
    Source,
    SourceError,
    contact_from,
    load_source,
    read_callable,
    read_csv,
)
from .client import ConstantContactClient, get_client
from .exceptions import (
    ActivityQueueFull,
    QuotaExceeded,
    Rejected,
    RetryLater,
)
from .models import BackfillBatch, BackfillRun, Connection

logger = logging.getLogger("cc_sync.backfill")

# CC's limits per contacts_json_import request: "The total number of contacts in the JSON payload cannot
# exceed 40,000" and the payload "must be less than 4 megabytes"; data beyond 4 MB is silently dropped
# (https://developer.constantcontact.com/api_guide/import_contacts.html). Whether a megabyte is 10^6 or 2^20
# bytes is not said, so the smaller reading is used. Tests lower these.
MAX_CONTACTS = 40_000
MAX_BYTES = 4_000_000
# Seconds between two polls of an activity; each poll costs one request of the 10,000-a-day budget.
POLL_INTERVAL = 5.0
# Transient failures (5xx, timeouts, throttling) of one call are retried this often, backing off from
# RETRY_BASE seconds; after that the command stops and a re-run resumes.
RETRY_ATTEMPTS = 5
RETRY_BASE = 2.0
# A 429 on contacts_json_import does not mean "too fast": CC's spec gives it one meaning there, "You exceeded
# 1,000 queued activities for this user account" (Activities429ErrorResponse,
# https://developer.constantcontact.com/api_reference/index.html#!/Bulk_Activities/createImportJSONActivity).
# Such a queue drains in minutes, so the next batch waits 1, 2, 4 ... minutes (at most 15) between tries and
# the batches already sent are polled meanwhile; the command keeps waiting until CC takes the batch (Ctrl-C
# stops it, and a re-run resumes).
QUEUE_FULL_BACKOFF = 60.0
QUEUE_FULL_BACKOFF_MAX = 900.0
# Batches of one run that may wait at CC at the same time: a batch is sent while the one before is still being
# processed, so no time is lost between them, and a few of the account's 1,000 queued activities at most.
MAX_IN_FLIGHT = 3
# CC's activity states (spec build 3.0.161, ActivityImport.state); all but initialized/processing are final.
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "timed_out"})


_EMAIL_IN_TEXT = re.compile(r"[^\s'\"<>(),;:]+@[^\s'\"<>(),;:]+")
_LINE_IN_TEXT = re.compile(r"\bline\s*#?\s*(\d+)", re.IGNORECASE)


def request_body(contacts: list[dict[str, str]], list_ids: list[str]) -> bytes:
    """The request body exactly as the client sends it (``json.dumps``, ASCII)."""
    return json.dumps({"import_data": contacts, "list_ids": list_ids}).encode()


def split_batches(
    contacts: Sequence[dict[str, Any]], list_ids: list[str]
) -> tuple[list[list[int]], list[int]]:
    """Cut ``contacts`` into import requests within CC's limits: ``(batches, too_large)``, both as positions.

    Each batch holds at most ``MAX_CONTACTS`` contacts and its body stays under ``MAX_BYTES``; a contact that
    could not fit a request even alone is listed in ``too_large`` (never sent: CC would cut it silently).
    The backfill and surge mode (:mod:`cc_sync.surge`) both plan their requests here.
    """
    base = len(request_body([], list_ids))
    batches: list[list[int]] = []
    too_large: list[int] = []
    current: list[int] = []
    size = base
    for position, item_contact in enumerate(contacts):
        item = len(json.dumps(item_contact))
        if base + item >= MAX_BYTES:  # only possible with lowered limits, but never send what CC would cut
            too_large.append(position)
            continue
        extra = item + (2 if current else 0)  # ", " between items, as json.dumps writes it
        if current and (len(current) >= MAX_CONTACTS or size + extra >= MAX_BYTES):
            batches.append(current)
            current, size, extra = [], base, item
        current.append(position)
        size += extra
    if current:
        batches.append(current)
    return batches, too_large


def plan_batches(source: Source, list_ids: list[str]) -> list[list[int]]:
    """Cut the sendable rows into batches of at most ``MAX_CONTACTS`` and under ``MAX_BYTES`` each."""
    indexes = list(source.sendable)
    batches, too_large = split_batches([source.rows[index].contact or {} for index in indexes], list_ids)
    for position in too_large:
        row = source.rows[indexes[position]]
        row.contact, row.problem = None, _("Too large for one import request.")
    return [[indexes[position] for position in batch] for batch in batches]


# -- what the backfill and surge mode share: one call, queue-full backoff, an activity's outcome -------


def call_api(
    method: Callable[..., dict[str, Any]],
    *args: Any,
    sleep: Callable[[float], None] | None = None,
    connection: Connection | None = None,
) -> dict[str, Any]:
    """One API call with a valid token: one refresh after a 401, transient failures retried with backoff.

    ``QuotaExceeded`` and ``ActivityQueueFull`` are raised at once (minutes or hours away: the caller
    decides), as is ``RetryLater`` after ``RETRY_ATTEMPTS`` tries.
    """
    attempt = 0
    while True:
        try:
            # A fresh copy each time: the token may have been refreshed since the last call.
            fresh = Connection.for_id(connection.pk) if connection is not None else None
            return oauth.with_access_token(lambda token: method(token, *args), fresh)
        except (QuotaExceeded, ActivityQueueFull):
            raise
        except RetryLater as err:
            attempt += 1
            if attempt >= RETRY_ATTEMPTS:
                raise
            delay = max(err.retry_after or 0.0, RETRY_BASE * 2 ** (attempt - 1))
            logger.info("Bulk call failed (%s); retrying in %.1f s.", err, delay)
            (sleep or time.sleep)(delay)


def queue_full_delay(err: ActivityQueueFull, refusals: int) -> float:
    """Seconds before a refused import is tried again: 1, 2, 4 ... 15 minutes, or CC's own wait if longer."""
    return min(QUEUE_FULL_BACKOFF_MAX, max(QUEUE_FULL_BACKOFF * 2 ** (refusals - 1), err.retry_after or 0.0))


def activity_progress(activity: dict[str, Any], percent_before: int) -> tuple[str, int]:
    """``(state, percent_done)`` of an activity as CC reported it (the percentage clamped to 0-100)."""
    state = str(activity.get("state") or "")[:20]
    try:
        percent = max(0, min(100, int(activity.get("percent_done") or 0)))
    except (TypeError, ValueError):
        percent = percent_before
    return state, percent


def activity_failure(activity: dict[str, Any], state: str) -> str:
    """Why an activity that did not complete ended: CC's messages, else its final state."""
    messages = "; ".join(str(item) for item in activity.get("activity_errors") or [])
    return (messages or _("The activity ended as %(state)s.") % {"state": state})[:2000]


def contact_errors(emails: Sequence[str | None], activity: dict[str, Any]) -> list[dict[str, Any]]:
    """CC's per-contact errors of an import of ``emails`` (in request order), each tied to its position.

    CC's schema (build 3.0.161, ``ActivityImport.activity_errors``) documents plain message strings, and its
    older API wrote them as "Line 2: Invalid birthday"; whether a line number counts from the first
    contact is not documented (https://developer.constantcontact.com/api_guide/activity_status.html).
    So, worst case: an object's ``email``, an address of the batch quoted in the message, then a line
    number (1 = the first contact); otherwise the error is kept without a contact (``index`` None).
    """
    position = {email.lower(): number for number, email in enumerate(emails) if email}
    errors = []
    for item in activity.get("activity_errors") or []:
        line = None
        if isinstance(item, dict):
            message = str(item.get("message") or item.get("error_message") or json.dumps(item))
            line, email = item.get("line_number"), item.get("email")
            index = position.get(email.strip().lower()) if isinstance(email, str) else None
        else:
            message, index = str(item), None
        if index is None:
            index = next(
                (position[c.lower()] for c in _EMAIL_IN_TEXT.findall(message) if c.lower() in position),
                None,
            )
        if index is None:
            match = _LINE_IN_TEXT.search(message)
            line = int(match.group(1)) if line is None and match else line
            if isinstance(line, int) and 1 <= line <= len(emails):
                index = line - 1
        errors.append({"index": index, "message": message[:1000]})
    return errors


# -- the run ----------------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the progress bar shows."""

    done: int
    total: int
    batch: int
    batches: int
    percent: int


def find_or_create_run(
    source: Source, list_ids: list[str], restart: bool = False, connection: Connection | None = None
) -> tuple[BackfillRun, str]:
    """The run for this source into ``connection``'s account (default: the default connection): ``(run, how)``
    where how is ``new``, ``resumed``, ``retrying`` or ``done``.

    An unfinished run of the same fingerprint and connection is resumed; a finished one with failed batches
    has those batches retried; a finished one without is ``done``. ``restart`` abandons the earlier run and
    starts anew.
    """
    connection_id = None if connection is None or connection.is_default else connection.pk
    previous = (
        BackfillRun.objects.filter(fingerprint=source.fingerprint)
        .filter(Q(connection_id=connection_id) if connection_id else Q(connection__isnull=True))
        .exclude(status=BackfillRun.Status.ABANDONED)
        .order_by("-created_at", "-pk")
        .first()
    )
    if previous is not None and restart:
        previous.status = BackfillRun.Status.ABANDONED
        previous.save(update_fields=["status", "updated_at"])
        previous = None
    if previous is not None:
        if previous.status == BackfillRun.Status.RUNNING:
            return previous, "resumed"
        failed = previous.batches.filter(status=BackfillBatch.Status.FAILED)
        if not failed.exists():
            return previous, "done"
        # A failed import can be sent again: CC's import updates existing contacts instead of duplicating them.
        failed.update(
            status=BackfillBatch.Status.PENDING,
            activity_id="",
            state="",
            percent_done=0,
            errors=[],
            last_error="",
        )
        previous.status, previous.finished_at = BackfillRun.Status.RUNNING, None
        previous.save(update_fields=["status", "finished_at", "updated_at"])
        return previous, "retrying"
    batches = plan_batches(source, list_ids)
    with transaction.atomic():
        run = BackfillRun.objects.create(
            fingerprint=source.fingerprint,
            connection_id=connection_id,
            source=source.label,
            list_ids=list_ids,
            rows=len(source.rows),
            contacts=sum(len(batch) for batch in batches),
            invalid=len(source.invalid),
            skipped=sum(bool(row.skipped) for row in source.rows),
        )
        BackfillBatch.objects.bulk_create(
            BackfillBatch(run=run, number=number, rows=rows) for number, rows in enumerate(batches, start=1)
        )
    return run, "new"


@dataclass
class Backfill:
    """Sends the pending batches of a run and polls their activities until CC has finished them."""

    source: Source
    run: BackfillRun
    poll_interval: float = POLL_INTERVAL
    progress: Callable[[Progress], None] | None = None
    sleep: Callable[[float], None] | None = None  # time.sleep
    #: Default: the client of the run's connection's application.
    client: ConstantContactClient | None = None
    #: Told why the run waits (CC's activity queue is full), as a sentence for the operator.
    notice: Callable[[str], None] | None = None
    max_in_flight: int = MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        self._in_flight: list[BackfillBatch] = []  # sent, not yet ended at CC
        self.connection = Connection.for_id(self.run.connection_id)
        self._client: ConstantContactClient = self.client or get_client(self.connection.application())

    def execute(self) -> BackfillRun:
        """Process every unfinished batch in order; the run is *finished* when none is left.

        Up to ``max_in_flight`` batches wait at CC at once; each round sends what may be sent, sleeps
        ``poll_interval`` and polls every batch that was sent. A 429 on the import (CC's activity queue is full)
        holds back the next batch for minutes while the batches already sent are still polled.

        Raises :class:`QuotaExceeded`, :class:`ReconnectRequired` or :class:`RetryLater` (after
        ``RETRY_ATTEMPTS``) to stop; the state saved so far lets a re-run resume.
        """
        batches = list(self.run.batches.order_by("number"))
        self._total = sum(len(batch.rows) for batch in batches)
        self._count = len(batches)
        self._finished = sum(
            len(b.rows)
            for b in batches
            if b.status in (BackfillBatch.Status.COMPLETED, BackfillBatch.Status.FAILED)
        )
        pending = [b for b in batches if b.status == BackfillBatch.Status.PENDING]
        self._in_flight = [b for b in batches if b.status == BackfillBatch.Status.SUBMITTED]
        refusals, hold = 0, 0.0  # queue-full answers in a row; seconds before the next batch may be sent
        while pending or self._in_flight:
            while pending and hold <= 0 and len(self._in_flight) < max(1, self.max_in_flight):
                batch = pending[0]
                try:
                    self._submit(batch)
                except ActivityQueueFull as err:
                    refusals += 1
                    hold = self._queue_full(batch, err, refusals)
                    break
                refusals = 0
                pending.pop(0)
                if batch.status == BackfillBatch.Status.SUBMITTED:
                    self._in_flight.append(batch)
            if self._in_flight:
                self._sleep(self.poll_interval)
                hold -= self.poll_interval
                for batch in list(self._in_flight):
                    if self._poll(batch):
                        self._in_flight.remove(batch)
            elif pending and hold > 0:
                self._sleep(hold)  # nothing to poll meanwhile
                hold = 0.0
        self.run.status, self.run.finished_at = BackfillRun.Status.FINISHED, timezone.now()
        self.run.save(update_fields=["status", "finished_at", "updated_at"])
        return self.run

    def _sleep(self, seconds: float) -> None:
        (self.sleep or time.sleep)(seconds)

    def _report(self, batch: BackfillBatch) -> None:
        if self.progress is not None:
            running = sum(
                len(b.rows) * b.percent_done // 100
                for b in self._in_flight
                if b.status == BackfillBatch.Status.SUBMITTED
            )
            self.progress(
                Progress(self._finished + running, self._total, batch.number, self._count, batch.percent_done)
            )

    def _call(self, method: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        return call_api(method, *args, sleep=self._sleep, connection=self.connection)

    def _queue_full(self, batch: BackfillBatch, err: ActivityQueueFull, refusals: int) -> float:
        """Record and tell why ``batch`` waits; return the seconds before it is sent again (1, 2, 4 ... 15 min)."""
        delay = queue_full_delay(err, refusals)
        message = _(
            "Constant Contact refused batch %(number)d for now: this account has more than 1,000 bulk "
            "activities queued (HTTP 429), from this or other applications. Trying again in %(minutes)s min "
            "(refusal %(count)d in a row); the batches already sent are still checked meanwhile."
        ) % {"number": batch.number, "minutes": f"{delay / 60:g}", "count": refusals}
        batch.last_error = message[:2000]
        batch.save(update_fields=["last_error"])
        logger.warning("Backfill run %s: %s", self.run.pk, message)
        if self.notice is not None:
            self.notice(message)
        return delay

    def _submit(self, batch: BackfillBatch) -> None:
        # Rows suppressed (erased) since the run was planned have lost their contact: never send them.
        rows = [index for index in batch.rows if self.source.rows[index].contact is not None]
        if rows != batch.rows:
            batch.rows = rows
            batch.save(update_fields=["rows"])
        if not rows:
            self._finish(batch, BackfillBatch.Status.COMPLETED)
            return
        contacts = [self.source.rows[index].contact for index in rows]
        self._report(batch)
        try:
            activity = self._call(self._client.import_contacts_json, contacts, list(self.run.list_ids))
        except Rejected as err:
            batch.last_error = str(err)[:2000]
            self._finish(batch, BackfillBatch.Status.FAILED)
            return
        # Saved at once: a crash from here on resumes by polling this activity, not by importing again.
        # (A crash between CC's answer and this save sends the batch again; the import is an upsert.)
        batch.activity_id = activity["activity_id"]
        batch.state = str(activity.get("state") or "initialized")[:20]
        batch.status, batch.submitted_at = BackfillBatch.Status.SUBMITTED, timezone.now()
        batch.last_error = ""  # a queue-full wait is over
        batch.save(update_fields=["activity_id", "state", "status", "submitted_at", "last_error"])
        logger.info(
            "Backfill run %s: batch %s submitted as activity %s.",
            self.run.pk,
            batch.number,
            batch.activity_id,
        )
        self._report(batch)

    def _poll(self, batch: BackfillBatch) -> bool:
        """Check a submitted batch's activity once; True when it has ended (completed or failed)."""
        try:
            activity = self._call(self._client.activity, batch.activity_id)
        except Rejected as err:  # 404: CC keeps activities for 10 days only
            batch.last_error = str(err)[:2000]
            self._finish(batch, BackfillBatch.Status.FAILED)
            return True
        state, percent = activity_progress(activity, batch.percent_done)
        batch.state, batch.percent_done = state, percent
        if state in FINAL_STATES:
            # A failed activity's errors are about the activity; its contacts are reported as a failed batch.
            batch.errors = self._contact_errors(batch, activity) if state == "completed" else []
            if state != "completed":
                batch.last_error = activity_failure(activity, state)
            self._finish(
                batch,
                BackfillBatch.Status.COMPLETED if state == "completed" else BackfillBatch.Status.FAILED,
            )
            return True
        batch.save(update_fields=["state", "percent_done"])
        self._report(batch)
        return False

    def _finish(self, batch: BackfillBatch, status: str) -> None:
        batch.status, batch.finished_at = status, timezone.now()
        if status == BackfillBatch.Status.COMPLETED:
            batch.percent_done = 100
        batch.save()
        self._finished += len(batch.rows)
        self._report(batch)

    def _contact_errors(self, batch: BackfillBatch, activity: dict[str, Any]) -> list[dict[str, Any]]:
        return contact_errors([self.source.rows[index].email for index in batch.rows], activity)


def run_backfill(
    source: Source,
    list_ids: list[str],
    *,
    restart: bool = False,
    poll_interval: float = POLL_INTERVAL,
    progress: Callable[[Progress], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    notice: Callable[[str], None] | None = None,
    connection: Connection | None = None,
) -> tuple[BackfillRun, str]:
    """Find or create the run for ``source`` into ``connection``'s account (default: the default connection)
    and carry it to the end; return ``(run, how)`` (see :func:`find_or_create_run`)."""
    oauth.get_access_token(connection)  # fail early, before anything is stored, when CC is not connected
    run, how = find_or_create_run(source, list_ids, restart=restart, connection=connection)
    if how != "done":
        Backfill(
            source, run, poll_interval=poll_interval, progress=progress, sleep=sleep, notice=notice
        ).execute()
    return run, how


# -- results --------------------------------------------------------------------------------------


@dataclass
class Summary:
    """The outcome of a run, for the command's last lines and its exit code."""

    batches: int
    completed: int
    failed: int
    contacts: int
    contact_errors: int
    failures: list[str]


def summarize(run: BackfillRun) -> Summary:
    """Counts of a run's batches and CC's per-contact errors."""
    batches = list(run.batches.order_by("number"))
    failed = [b for b in batches if b.status == BackfillBatch.Status.FAILED]
    return Summary(
        batches=len(batches),
        completed=sum(b.status == BackfillBatch.Status.COMPLETED for b in batches),
        failed=len(failed),
        contacts=sum(len(b.rows) for b in batches),
        contact_errors=sum(len(b.errors) for b in batches),
        failures=[f"{b.number}: {b.last_error}" for b in failed],
    )


REPORT_HEADER = ("row", "email", "stage", "error")


def report_rows(source: Source, run: BackfillRun | None) -> list[tuple[Any, ...]]:
    """``(row, email, stage, error)`` for every row not imported because of an error.

    Stages: ``validation`` (refused here, never sent), ``constant_contact`` (CC's per-contact error),
    ``batch_failed`` (CC refused or failed the whole request; a re-run retries it).
    """
    lines: list[tuple[Any, ...]] = [
        (row.number, row.email, "validation", row.problem) for row in source.invalid
    ]
    if run is None:
        return lines
    for batch in run.batches.order_by("number"):
        rows = [source.rows[index] for index in batch.rows]
        for error in batch.errors:
            index = error.get("index")
            row = rows[index] if isinstance(index, int) and 0 <= index < len(rows) else None
            lines.append(
                (row.number if row else "", row.email if row else "", "constant_contact", error["message"])
            )
        if batch.status == BackfillBatch.Status.FAILED:
            lines.extend((row.number, row.email, "batch_failed", batch.last_error) for row in rows)
    return lines
