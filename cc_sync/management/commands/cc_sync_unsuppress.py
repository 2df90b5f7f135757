import getpass
from typing import Any

from django.core.management.base import CommandError
from django.db import transaction

from cc_sync import privacy
from cc_sync.management.commands._base import CCSyncCommand
from cc_sync.models import Suppression, SuppressionLift


class Command(CCSyncCommand):
    help = (
        "Lift the suppression of an email, so that its later signups reach Constant Contact again. Leaves a "
        "record (who, when, why, and why it was suppressed), shown in the admin as a lifted suppression. Only "
        "do this when the person asked for it: a suppressed address was erased or unsubscribed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("email", help="The email address to lift the suppression of (any spelling).")
        parser.add_argument("--reason", required=True, help="Why it is lifted (kept in the record).")
        parser.add_argument(
            "--by", default="", help="Who lifts it (kept in the record); default: the operating-system user."
        )

    def handle(self, *args: Any, email: str, reason: str, by: str, **options: Any) -> None:
        reason = reason.strip()
        if not reason:
            raise CommandError("Say why the suppression is lifted: --reason TEXT.")
        lifted_by = (by.strip() or _os_user())[:150]
        hashes = privacy.email_hashes(email)
        with transaction.atomic():
            entries = list(Suppression.objects.select_for_update().filter(email_hash__in=hashes))
            if not entries:
                raise CommandError(f"{hashes[0][:12]}… is not on the suppression list; nothing was changed.")
            for entry in entries:
                SuppressionLift.objects.create(
                    email_hash=entry.email_hash,
                    original_reason=entry.reason,
                    reason=reason,
                    lifted_by=lifted_by,
                )
            Suppression.objects.filter(pk__in=[entry.pk for entry in entries]).delete()
        reasons = ", ".join(sorted({entry.get_reason_display() for entry in entries}))
        self.stdout.write(
            f"{hashes[0][:12]}…: suppression lifted (was: {reasons}); its later signups are synced again."
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container
        return "manage.py"
