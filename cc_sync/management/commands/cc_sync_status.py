from typing import Any

from django.core.management.base import CommandError

from cc_sync import status
from cc_sync.management.commands._base import CCSyncCommand
from cc_sync.models import Signup


class Command(CCSyncCommand):
    help = (
        "Print the connection and outbox state; exit 1 when something needs attention (for cron or probes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = status.report()
        connection = report.connection
        labels = dict(Signup.Status.choices)
        counts = [
            (Signup.Status.PENDING, report.pending),
            (Signup.Status.SYNCING, report.syncing),
            (Signup.Status.WAITING_RECONNECT, report.waiting_reconnect),
            (Signup.Status.WAITING_LIST, report.waiting_list),
            (Signup.Status.AWAITING_CONFIRMATION, report.awaiting_confirmation),
            (Signup.Status.FAILED, report.failed),
        ]
        lines = [
            f"connection: {connection.status} ({connection.account_name or '-'})",
            f"access token expires: {connection.expires_at or '-'}",
            f"last refresh: {connection.last_refreshed_at or '-'}",
            f"lists: {', '.join(report.list_ids) or '-'}",
            *(f"{str(labels[value]).lower()}: {count}" for value, count in counts),
            f"synced (24 h): {report.synced_last_24h}",
            f"oldest pending: {report.oldest_pending_age or '-'}",
            f"API requests today (UTC): {report.requests_today} / {report.daily_limit}",
        ]
        if report.quota_line:
            lines.append(report.quota_line)
        self.stdout.write("\n".join(lines))
        if report.problems:
            raise CommandError("needs attention: " + " ".join(report.problems), returncode=1)
        self.stdout.write(self.style.SUCCESS("ok"))
