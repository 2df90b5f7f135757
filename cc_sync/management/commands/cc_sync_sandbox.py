"""``manage.py cc_sync_sandbox``: run the local Constant Contact emulator until Ctrl-C."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from cc_sync.management.commands._base import CCSyncCommand
from cc_sync.sandbox import cli


class Command(CCSyncCommand):
    help = (
        "Run a local Constant Contact emulator (OAuth2 consent, tokens, lists, sign_up_form) and print "
        "the CC_SYNC settings that point this site at it."
    )
    # The sandbox needs neither the database nor a valid CC_SYNC: it is what CC_SYNC gets pointed at.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            sandbox = cli.sandbox_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            sandbox.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from exc
        self.stdout.write(cli.describe(sandbox))
        self.stdout.flush()
        cli.wait_until_interrupted(sandbox)
