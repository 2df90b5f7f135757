"""A snapshot of the connection and the outbox, for the admin page and the status command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from . import ratelimit
from .conf import get_setting, list_setting
from .models import Connection, Signup


@dataclass
class Report:
    connection: Connection
    pending: int = 0
    syncing: int = 0
    waiting_reconnect: int = 0
    failed: int = 0
    synced_last_24h: int = 0
    oldest_pending_at: datetime | None = None
    last_synced_at: datetime | None = None
    requests_today: int = 0
    daily_limit: int = 0
    list_ids: list[str] = field(default_factory=list)
    lists_from_settings: bool = False
    missing_list_ids: list[str] = field(default_factory=list)

    @property
    def oldest_pending_age(self) -> timedelta | None:
        return timezone.now() - self.oldest_pending_at if self.oldest_pending_at else None

    @property
    def problems(self) -> list[str]:
        """What needs someone's attention, in words."""
        found = []
        if self.connection.status != Connection.Status.CONNECTED:
            found.append(f"Constant Contact is {self.connection.get_status_display().lower()}.")
        if not self.list_ids:
            found.append("No Constant Contact list is chosen.")
        if self.missing_list_ids:
            found.append(f"Lists no longer in the account: {', '.join(self.missing_list_ids)}.")
        if self.failed:
            found.append(f"{self.failed} signups failed.")
        if self.waiting_reconnect:
            found.append(f"{self.waiting_reconnect} signups are held until Constant Contact is reconnected.")
        return found


def report() -> Report:
    """Counts, ages and list checks in three queries."""
    connection = Connection.load()
    now = timezone.now()
    S = Signup.Status
    counts = Signup.objects.aggregate(
        pending=Count("pk", filter=Q(status=S.PENDING)),
        syncing=Count("pk", filter=Q(status=S.SYNCING)),
        waiting_reconnect=Count("pk", filter=Q(status=S.WAITING_RECONNECT)),
        failed=Count("pk", filter=Q(status=S.FAILED)),
        synced_last_24h=Count("pk", filter=Q(status=S.SYNCED, synced_at__gte=now - timedelta(hours=24))),
        oldest_pending_at=Min("created_at", filter=Q(status__in=[S.PENDING, S.SYNCING])),
        last_synced_at=Max("synced_at"),
    )
    configured = list_setting("LIST_IDS")
    list_ids = configured or list(connection.list_ids)
    known = connection.list_names()
    missing = [list_id for list_id in list_ids if connection.lists_checked_at and list_id not in known]
    return Report(
        connection=connection,
        requests_today=ratelimit.requests_today("api"),
        daily_limit=int(get_setting("DAILY_LIMIT")),
        list_ids=list_ids,
        lists_from_settings=bool(configured),
        missing_list_ids=missing,
        **counts,
    )
