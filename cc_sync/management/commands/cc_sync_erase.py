from typing import Any

from cc_sync import privacy
from cc_sync.management.commands._base import CCSyncCommand


class Command(CCSyncCommand):
    help = (
        "Erase people locally: delete their signups and put their email on the suppression list, so no later "
        "submission reaches Constant Contact. CC keeps its own contact: delete it there (a soft delete) or ask "
        "CC support for a permanent one."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("emails", nargs="+", help="Email addresses to erase.")

    def handle(self, *args: Any, emails: list[str], **options: Any) -> None:
        for email in emails:
            deleted = privacy.erase(email)
            self.stdout.write(
                f"{privacy.email_hash(email)[:12]}…: {deleted} signups deleted, email suppressed."
            )
