"""The base of cc_sync's management commands (a leading underscore: Django does not list it as a command)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from cc_sync.checks import stored_tokens_check_skipped


class CCSyncCommand(BaseCommand):
    """Runs Django's system checks as usual, except ``cc_sync.E007`` (stored tokens the keys cannot read).

    E007 stops ``migrate`` and ``runserver``, but not the commands that report it or help to fix it.
    """

    def check(self, *args: Any, **kwargs: Any) -> None:
        with stored_tokens_check_skipped():
            super().check(*args, **kwargs)
