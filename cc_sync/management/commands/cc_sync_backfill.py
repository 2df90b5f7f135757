import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from cc_sync import backfill
from cc_sync.exceptions import CCSyncError
from cc_sync.models import Connection
from cc_sync.sync import default_list_ids

# Exit codes (also in docs/backfill.md).
EXIT_PROBLEMS = 1  # finished, but some rows were invalid, refused by CC, or in a failed batch (see --report)
EXIT_USAGE = 2  # bad source or options: nothing was sent
EXIT_STOPPED = 3  # stopped before the end (connection, quota, CC unavailable, Ctrl-C): run it again to resume


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP): the report
# holds whatever a source row carried, so such a cell is written with a leading quote, as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` for a CSV cell, prefixed with ``'`` when a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_report(path: str | Path, source: backfill.Source, run: Any) -> int:
    """Write :func:`cc_sync.backfill.report_rows` as a CSV file that is safe to open in a spreadsheet."""
    lines = backfill.report_rows(source, run)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(backfill.REPORT_HEADER)
        writer.writerows([safe_cell(cell) for cell in line] for line in lines)
    return len(lines)


class Command(BaseCommand):
    help = (
        "Import people who already consented (a CSV file or a callable) into the Constant Contact list(s) "
        "through CC's bulk JSON import. New contacts get *implicit* permission. Running the same command "
        "again resumes an interrupted run."
    )

    def add_arguments(self, parser: Any) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--csv",
            metavar="PATH",
            help="UTF-8 CSV file with a header: email (required), first_name, last_name, job_title, "
            "company_name, phone_number, consent, cf:<custom field name>.",
        )
        source.add_argument(
            "--queryset",
            metavar="DOTTED.PATH",
            help="Callable (or iterable) returning the people to import, as dicts or objects, in a stable order.",
        )
        parser.add_argument(
            "--list-id",
            action="append",
            dest="list_ids",
            metavar="LIST_ID",
            help="Constant Contact list to add everyone to (repeatable; default: the configured lists).",
        )
        parser.add_argument(
            "--all-consented",
            action="store_true",
            help="Declare that every row consented to email (needed for a CSV file without a consent column).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and count only: send nothing, store nothing."
        )
        parser.add_argument(
            "--report",
            metavar="PATH",
            help="Write every row that was not imported, and why, to this CSV file.",
        )
        parser.add_argument(
            "--connection",
            metavar="SLUG",
            default=Connection.DEFAULT_SLUG,
            help="The connection (its slug) whose Constant Contact account is imported into (default: default).",
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="Abandon the earlier run of this same source and import everything again.",
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=backfill.POLL_INTERVAL,
            metavar="SECONDS",
            help=f"Seconds between two status checks of an import (default {backfill.POLL_INTERVAL:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connection = Connection.objects.filter(slug=options["connection"]).first()
        if connection is None and options["connection"] != Connection.DEFAULT_SLUG:
            known = ", ".join(Connection.objects.values_list("slug", flat=True)) or _("none")
            raise CommandError(
                _("No connection has the slug %(slug)s (known: %(known)s).")
                % {"slug": options["connection"], "known": known},
                returncode=EXIT_USAGE,
            )
        list_ids = options["list_ids"] or default_list_ids(connection)
        if not list_ids:
            raise CommandError(
                _("No list to import into: pass --list-id or choose a list on the connection page."),
                returncode=EXIT_USAGE,
            )
        if options["poll_interval"] < 0:
            raise CommandError(_("--poll-interval cannot be negative."), returncode=EXIT_USAGE)
        try:
            source = backfill.load_source(
                csv_path=options["csv"],
                dotted_path=options["queryset"],
                list_ids=list_ids,
                all_consented=options["all_consented"],
            )
        except backfill.SourceError as err:
            raise CommandError(str(err), returncode=EXIT_USAGE) from None
        self._describe_source(source)
        self.stdout.write(
            _(
                "Note: Constant Contact gives bulk-imported new contacts implicit permission, not the explicit "
                "permission of a signup."
            )
        )
        if options["dry_run"]:
            self._dry_run(source, list_ids, options["report"])
            return

        self._bar_drawn = False
        show_bar = options["verbosity"] > 0
        try:
            run, how = backfill.run_backfill(
                source,
                list_ids,
                restart=options["restart"],
                poll_interval=options["poll_interval"],
                progress=self._draw if show_bar else None,
                notice=self._notice,
                connection=connection,
            )
        except KeyboardInterrupt:
            self._end_bar()
            raise CommandError(
                _("Interrupted. Progress is saved: run the same command again to resume."),
                returncode=EXIT_STOPPED,
            ) from None
        except CCSyncError as err:
            self._end_bar()
            raise CommandError(
                _("Stopped: %(error)s Progress is saved: run the same command again to resume.")
                % {"error": err},
                returncode=EXIT_STOPPED,
            ) from None
        self._end_bar()
        self._describe_run(run, how)
        summary = backfill.summarize(run)
        if options["report"]:
            written = write_report(options["report"], source, run)
            self.stdout.write(
                _("Report: %(count)d rows written to %(path)s.")
                % {"count": written, "path": options["report"]}
            )
        if source.invalid or summary.contact_errors or summary.failed:
            raise CommandError(
                _("Finished with problems: see the counts above%(hint)s.")
                % {"hint": "" if options["report"] else _(" (--report PATH lists every row)")},
                returncode=EXIT_PROBLEMS,
            )
        self.stdout.write(self.style.SUCCESS(_("Done.")))

    def _describe_source(self, source: backfill.Source) -> None:
        self.stdout.write(
            _(
                "%(label)s: %(rows)d rows; %(send)d to import, %(invalid)d invalid, %(no_consent)d without "
                "consent, %(duplicate)d duplicates, %(suppressed)d suppressed."
            )
            % {
                "label": source.label,
                "rows": len(source.rows),
                "send": len(source.sendable),
                "invalid": len(source.invalid),
                "no_consent": source.count("no_consent"),
                "duplicate": source.count("duplicate"),
                "suppressed": source.count("suppressed"),
            }
        )
        for row in source.invalid[:20]:
            self.stdout.write(
                _("  row %(row)d (%(email)s): %(problem)s")
                % {"row": row.number, "email": row.email or "-", "problem": row.problem}
            )
        if len(source.invalid) > 20:
            self.stdout.write(_("  ... and %(more)d more invalid rows.") % {"more": len(source.invalid) - 20})

    def _dry_run(self, source: backfill.Source, list_ids: list[str], report: str | None) -> None:
        batches = backfill.plan_batches(source, list_ids)
        for number, rows in enumerate(batches, start=1):
            contacts = [contact for i in rows if (contact := source.rows[i].contact) is not None]
            size = len(backfill.request_body(contacts, list_ids))
            self.stdout.write(
                _("  batch %(number)d: %(contacts)d contacts, %(bytes)s bytes")
                % {"number": number, "contacts": len(rows), "bytes": f"{size:,}"}
            )
        self.stdout.write(
            _(
                "Dry run: would send %(batches)d import requests (plus at least one status check each) to "
                "lists %(lists)s. Nothing was sent or stored."
            )
            % {"batches": len(batches), "lists": ", ".join(list_ids)}
        )
        if report:
            written = write_report(report, source, None)
            self.stdout.write(
                _("Report: %(count)d rows written to %(path)s.") % {"count": written, "path": report}
            )
        if source.invalid:
            raise CommandError(_("Some rows are invalid; they would not be sent."), returncode=EXIT_PROBLEMS)

    def _describe_run(self, run: Any, how: str) -> None:
        summary = backfill.summarize(run)
        if how == "done":
            self.stdout.write(
                _(
                    "This source was already imported by run #%(run)d (%(date)s); nothing was sent. "
                    "Use --restart to import it again."
                )
                % {"run": run.pk, "date": run.created_at.strftime("%Y-%m-%d %H:%M")}
            )
        else:
            self.stdout.write(
                {
                    "new": _("Run #%(run)d"),
                    "resumed": _("Run #%(run)d (resumed)"),
                    "retrying": _("Run #%(run)d (failed batches retried)"),
                }[how]
                % {"run": run.pk}
                + ": "
                + _(
                    "%(contacts)d contacts in %(batches)d batches: %(completed)d completed, %(failed)d failed; "
                    "%(errors)d contacts refused by Constant Contact."
                )
                % {
                    "contacts": summary.contacts,
                    "batches": summary.batches,
                    "completed": summary.completed,
                    "failed": summary.failed,
                    "errors": summary.contact_errors,
                }
            )
        for failure in summary.failures:
            self.stdout.write(_("  failed batch %(failure)s") % {"failure": failure})

    def _draw(self, progress: backfill.Progress) -> None:
        width = 20
        filled = width * progress.done // progress.total if progress.total else width
        self.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] "
            + _("%(done)s/%(total)s contacts, batch %(batch)d/%(batches)d, activity %(percent)d%% ")
            % {
                "done": f"{progress.done:,}",
                "total": f"{progress.total:,}",
                "batch": progress.batch,
                "batches": progress.batches,
                "percent": progress.percent,
            },
            style_func=str,
            ending="",
        )
        self.stderr.flush()
        self._bar_drawn = True

    def _notice(self, message: str) -> None:
        # Why the run waits (CC's activity queue is full): on a line of its own, whatever the verbosity.
        self._end_bar()
        self.stderr.write(message, style_func=self.style.WARNING)

    def _end_bar(self) -> None:
        if self._bar_drawn:
            self.stderr.write("", style_func=str)
            self._bar_drawn = False
