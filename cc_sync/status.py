"""A snapshot of each connection and its signups in the outbox, for the admin page and the status command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from . import crypto, ratelimit
from .conf import app_settings
from .fields import unreadable_fields
from .models import Connection, RateLimitState, Signup, SurgeBatch
from .sync import default_list_ids


@dataclass
class Report:
    """One connection: its state, its signups by status, its lists and its application's request budget."""

    connection: Connection
    pending: int = 0
    syncing: int = 0
    waiting_reconnect: int = 0
    waiting_list: int = 0
    awaiting_confirmation: int = 0
    failed: int = 0
    synced_last_24h: int = 0
    #: Surge mode: signups in bulk imports that have not ended yet, and those imports.
    in_bulk_import: int = 0
    bulk_imports: int = 0
    oldest_pending_at: datetime | None = None
    last_synced_at: datetime | None = None
    requests_today: int = 0
    daily_limit: int = 0
    list_ids: list[str] = field(default_factory=list)
    lists_from_settings: bool = False
    missing_list_ids: list[str] = field(default_factory=list)
    #: Encrypted fields of the connection that the configured keys cannot decrypt.
    unreadable_tokens: list[str] = field(default_factory=list)
    #: While CC's daily quota is believed spent: when cc_sync sends its next (probe) request.
    quota_blocked_until: datetime | None = None
    #: The CC application (API key) the connection uses, and the name of its request budget: CC counts the
    #: rate and the daily quota per application, so every connection of one application shares them.
    client_id: str = ""
    budget: str = "api"
    #: The slugs of the connections drawing from that budget (filled in by :func:`reports`).
    budget_shared_by: list[str] = field(default_factory=list)

    @property
    def quota_probing(self) -> bool:
        """The block's time has passed: cc_sync now probes, and the block ends when CC accepts a probe."""
        return self.quota_blocked_until is not None and self.quota_blocked_until <= timezone.now()

    @property
    def quota_line(self) -> str:
        """What the admin page and the status command say while the daily quota is spent ("" otherwise)."""
        if self.quota_blocked_until is None:
            return ""
        until = f"{self.quota_blocked_until.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC"
        if self.quota_probing:
            # The block ends only when CC accepts a probe, not when the clock says CC's day is over.
            return f"Constant Contact's daily quota was spent; cc_sync probes whether it is back (since {until})."
        return f"Constant Contact's daily quota is spent; cc_sync waits until {until} and probes sparingly."

    @property
    def oldest_pending_age(self) -> timedelta | None:
        return timezone.now() - self.oldest_pending_at if self.oldest_pending_at else None

    @property
    def problems(self) -> list[str]:
        """What needs someone's attention, in words."""
        found = []
        if self.unreadable_tokens:
            found.append(crypto.UNREADABLE_MESSAGE)
        if self.connection.status != Connection.Status.CONNECTED:
            found.append(f"Constant Contact is {self.connection.get_status_display().lower()}.")
        if not self.list_ids:
            found.append("No Constant Contact list is chosen.")
        for list_id in self.missing_list_ids:
            found.append(f"List {list_id} no longer exists at Constant Contact; choose another.")
        if self.failed:
            found.append(f"{self.failed} signups failed.")
        if self.waiting_reconnect:
            found.append(f"{self.waiting_reconnect} signups are held until Constant Contact is reconnected.")
        if self.waiting_list:
            found.append(f"{self.waiting_list} signups are held until a list is chosen.")
        if self.quota_line:
            found.append(self.quota_line)
        return found


def report(connection: Connection | None = None) -> Report:
    """``connection``'s figures (default: the default connection's): counts, ages, list checks and the
    quota block of its application, in four queries."""
    connection = connection or Connection.load()
    now = timezone.now()
    S = Signup.Status
    in_bulk_import = Q(status=S.SYNCING, surge_batch__status__in=SurgeBatch.UNFINISHED)
    counts = connection.signups().aggregate(
        pending=Count("pk", filter=Q(status=S.PENDING)),
        syncing=Count("pk", filter=Q(status=S.SYNCING)),
        waiting_reconnect=Count("pk", filter=Q(status=S.WAITING_RECONNECT)),
        waiting_list=Count("pk", filter=Q(status=S.WAITING_LIST)),
        awaiting_confirmation=Count("pk", filter=Q(status=S.AWAITING_CONFIRMATION)),
        failed=Count("pk", filter=Q(status=S.FAILED)),
        synced_last_24h=Count("pk", filter=Q(status=S.SYNCED, synced_at__gte=now - timedelta(hours=24))),
        in_bulk_import=Count("pk", filter=in_bulk_import),
        bulk_imports=Count("surge_batch", filter=in_bulk_import, distinct=True),
        oldest_pending_at=Min("created_at", filter=Q(status__in=[S.PENDING, S.SYNCING])),
        last_synced_at=Max("synced_at"),
    )
    configured = app_settings.LIST_IDS if connection.is_default else []
    list_ids = default_list_ids(connection)
    known = connection.list_names()
    # Lists CC answered 404 for (recorded by the sync), and chosen lists gone from the last fetch.
    missing = list(connection.missing_list_ids or [])
    missing += [
        list_id
        for list_id in list_ids
        if connection.lists_checked_at and list_id not in known and list_id not in missing
    ]
    budget = connection.budget("api")
    quota = RateLimitState.objects.filter(name=budget).values_list("blocked_until", flat=True).first()
    return Report(
        connection=connection,
        requests_today=ratelimit.requests_today(budget),
        daily_limit=app_settings.DAILY_LIMIT,
        list_ids=list_ids,
        lists_from_settings=bool(configured),
        missing_list_ids=missing,
        unreadable_tokens=unreadable_fields(connection),
        quota_blocked_until=quota,
        client_id=connection.client_id if connection.has_own_application() else app_settings.CLIENT_ID,
        budget=budget,
        budget_shared_by=[connection.slug],
        **counts,
    )


def reports(slug: str | None = None) -> list[Report]:
    """A :func:`report` of every connection, the default one first (it is created, disconnected, when there
    is no connection at all), or only of the connection ``slug`` (``Connection.DoesNotExist`` if none has it).
    """
    connections = sorted(Connection.objects.all(), key=lambda c: (not c.is_default, c.pk))
    if not connections:
        connections = [Connection.load()]
    budgets: dict[str, list[str]] = {}
    for connection in connections:
        budgets.setdefault(connection.budget("api"), []).append(connection.slug)
    if slug is not None:
        connections = [c for c in connections if c.slug == slug]
        if not connections:
            raise Connection.DoesNotExist(f"No connection has the slug {slug!r}.")
    found = [report(connection) for connection in connections]
    for item in found:
        item.budget_shared_by = budgets[item.budget]
    return found
