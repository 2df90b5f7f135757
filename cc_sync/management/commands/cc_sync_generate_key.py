"""Make the keys cc_sync's settings need: ``ENCRYPTION_KEYS`` (Fernet) and ``HASH_KEY``."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from cc_sync.crypto import generate_key


def generate_hash_key() -> str:
    """A new random ``HASH_KEY``: 48 bytes, URL-safe (any long random string works)."""
    return secrets.token_urlsafe(48)


class Command(BaseCommand):
    help = (
        "Print a new key for CC_SYNC['ENCRYPTION_KEYS'] (put it first; keep older keys after it). "
        "--hash-key prints a HASH_KEY instead; --env prints both as lines for a .env file."
    )
    # These keys are what the settings and the system checks ask for: the command must run before they exist.
    # It reads no setting, so settings that are still incomplete (empty keys, no CC application yet) do not
    # stop it either.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: Any) -> None:
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--hash-key", action="store_true", help="Print a new CC_SYNC['HASH_KEY'].")
        what.add_argument(
            "--env",
            action="store_true",
            help="Print CC_SYNC_ENCRYPTION_KEYS=... and CC_SYNC_HASH_KEY=... (append them to your .env).",
        )

    def handle(self, *args: Any, hash_key: bool = False, env: bool = False, **options: Any) -> None:
        if env:
            self.stdout.write(f"CC_SYNC_ENCRYPTION_KEYS={generate_key()}")
            self.stdout.write(f"CC_SYNC_HASH_KEY={generate_hash_key()}")
        elif hash_key:
            self.stdout.write(generate_hash_key())
        else:
            self.stdout.write(generate_key())
