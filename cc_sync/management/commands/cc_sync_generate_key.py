from typing import Any

from django.core.management.base import BaseCommand

from cc_sync.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new key for CC_SYNC['ENCRYPTION_KEYS'] (put it first; keep older keys after it)."
    # The key is what a missing-key system check asks for: the command must run before it exists.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(generate_key())
