from typing import Any

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from cc_sync import status
from cc_sync.management.commands._base import CCSyncCommand
from cc_sync.models import Connection, Signup

EXIT_USAGE = 2  # an unknown --connection: nothing was checked


class Command(CCSyncCommand):
    help = (
        "Print each connection's state and its signups in the outbox; exit 1 when something needs "
        "attention (for cron or probes)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--connection",
            metavar="SLUG",
            help="Report only this connection (its slug); default: every connection.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            reports = status.reports(options["connection"])
        except Connection.DoesNotExist:
            known = ", ".join(Connection.objects.values_list("slug", flat=True)) or _("none")
            raise CommandError(
                _("No connection has the slug %(slug)s (known: %(known)s).")
                % {"slug": options["connection"], "known": known},
                returncode=EXIT_USAGE,
            ) from None
        # With one connection the report reads as it always has; with several, each block is named.
        several = Connection.objects.count() > 1
        blocks = [self.block(report, named=several) for report in reports]
        self.stdout.write("\n\n".join("\n".join(lines) for lines in blocks))
        problems = [
            f"[{report.connection.slug}] {problem}" if several else problem
            for report in reports
            for problem in report.problems
        ]
        if problems:
            raise CommandError("needs attention: " + " ".join(problems), returncode=1)
        self.stdout.write(self.style.SUCCESS("ok"))

    @staticmethod
    def block(report: status.Report, named: bool) -> list[str]:
        """The lines of one connection's report; ``named``: headed by its slug, with its application."""
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
        state = f"{connection.status} ({connection.account_name or '-'})"
        requests = f"API requests today (UTC): {report.requests_today} / {report.daily_limit}"
        if not named:
            head = [f"connection: {state}"]
        else:
            unnamed = ("", connection.slug, Connection._meta.get_field("name").default)
            title = "" if connection.name in unnamed else f" ({connection.name})"
            head = [
                f"connection {connection.slug}{title}: {state}",
                f"application: {report.client_id or '-'}",
            ]
            if len(report.budget_shared_by) > 1:
                # CC counts per application: this figure and the quota are those of every connection listed.
                requests += f" (shared by {', '.join(report.budget_shared_by)})"
        lines = [
            *head,
            f"access token expires: {connection.expires_at or '-'}",
            f"last refresh: {connection.last_refreshed_at or '-'}",
            f"lists: {', '.join(report.list_ids) or '-'}",
            *(f"{str(labels[value]).lower()}: {count}" for value, count in counts),
            f"synced (24 h): {report.synced_last_24h}",
            f"oldest pending: {report.oldest_pending_age or '-'}",
            requests,
        ]
        if report.bulk_imports:
            lines.append(
                f"in bulk imports (surge mode): {report.in_bulk_import} signups in {report.bulk_imports} imports"
            )
        if report.quota_line:
            lines.append(report.quota_line)
        return lines
