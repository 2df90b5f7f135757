from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cc_sync import status


class Command(BaseCommand):
    help = (
        "Print the connection and outbox state; exit 1 when something needs attention (for cron or probes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = status.report()
        connection = report.connection
        lines = [
            f"connection: {connection.status} ({connection.account_name or '-'})",
            f"access token expires: {connection.expires_at or '-'}",
            f"last refresh: {connection.last_refreshed_at or '-'}",
            f"lists: {', '.join(report.list_ids) or '-'}",
            f"pending: {report.pending}  syncing: {report.syncing}  waiting for reconnect: {report.waiting_reconnect}"
            f"  failed: {report.failed}  synced (24 h): {report.synced_last_24h}",
            f"oldest pending: {report.oldest_pending_age or '-'}",
            f"API requests today (UTC): {report.requests_today} / {report.daily_limit}",
        ]
        self.stdout.write("\n".join(lines))
        if report.problems:
            raise CommandError("needs attention: " + " ".join(report.problems), returncode=1)
        self.stdout.write(self.style.SUCCESS("ok"))
