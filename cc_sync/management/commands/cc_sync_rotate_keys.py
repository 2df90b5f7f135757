from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from cc_sync.db import lock_row
from cc_sync.models import Connection


class Command(BaseCommand):
    help = "Re-encrypt the stored tokens with the newest key in CC_SYNC['ENCRYPTION_KEYS']."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            # Reading decrypts with whichever key fits; saving encrypts with the first.
            lock_row(Connection, Connection.SINGLETON_PK).save()
        self.stdout.write(
            self.style.SUCCESS("Tokens re-encrypted with the newest key; older keys can now be removed.")
        )
