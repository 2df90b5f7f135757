from typing import Any

from django.core.management.base import CommandError
from django.db import transaction

from cc_sync import crypto
from cc_sync.db import lock_row
from cc_sync.fields import unreadable_fields
from cc_sync.management.commands._base import CCSyncCommand
from cc_sync.models import Connection


class Command(CCSyncCommand):
    help = "Re-encrypt every connection's stored tokens and secret with the newest key in CC_SYNC['ENCRYPTION_KEYS']."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            # Reading decrypts with whichever key fits; saving encrypts with the first. All or nothing.
            pks = list(Connection.objects.order_by("pk").values_list("pk", flat=True)) or [
                Connection.load().pk
            ]
            for pk in pks:
                connection = lock_row(Connection, pk)
                if unreadable_fields(connection):
                    # Saving would only write the same ciphertext back: say so instead of claiming success.
                    raise CommandError(
                        f"{crypto.UNREADABLE_MESSAGE} (connection {connection.slug!r}) Nothing was changed."
                    )
                connection.save()
        self.stdout.write(
            self.style.SUCCESS("Tokens re-encrypted with the newest key; older keys can now be removed.")
        )
