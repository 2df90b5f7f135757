"""Keyed email hashes, the suppression list, retention and erasure."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .conf import get_setting
from .models import Signup, Suppression

logger = logging.getLogger("cc_sync.privacy")

PERSONAL_FIELDS = ("email", "first_name", "last_name", "phone_number", "job_title", "company_name")


def _key() -> bytes:
    # A dedicated key keeps hashes stable when SECRET_KEY is rotated; SECRET_KEY is only the fallback.
    return (get_setting("HASH_KEY") or settings.SECRET_KEY).encode()


def keyed_hash(value: str) -> str:
    """HMAC-SHA256 of a value under ``CC_SYNC["HASH_KEY"]`` (hex); for emails use :func:`email_hash`."""
    return hmac.new(_key(), value.encode(), hashlib.sha256).hexdigest()


def email_hash(email: str) -> str:
    """The keyed hash of an email, compared case-insensitively (as CC matches contacts)."""
    return keyed_hash(email.strip().lower())


def is_suppressed(email: str) -> bool:
    """True if this email must never be synced."""
    return Suppression.objects.filter(email_hash=email_hash(email)).exists()


def suppress(email: str, reason: str = Suppression.Reason.UNSUBSCRIBED) -> Suppression:
    """Add an email to the suppression list (idempotent)."""
    suppression, _created = Suppression.objects.get_or_create(
        email_hash=email_hash(email), defaults={"reason": reason}
    )
    return suppression


def erase(email: str) -> int:
    """Delete every local signup of this person and suppress the email; return how many rows went.

    This is local only: CC keeps its own contact (its API deletes softly; a hard delete is a request to
    CC support), which is why the suppression entry matters.
    """
    digest = email_hash(email)
    with transaction.atomic():
        deleted, _per_model = Signup.objects.filter(email_hash=digest).delete()
        Suppression.objects.update_or_create(
            email_hash=digest, defaults={"reason": Suppression.Reason.ERASED}
        )
    logger.info("Erased %s signups of email hash %s and suppressed it.", deleted, digest[:12])
    return deleted


def apply_retention() -> int:
    """Blank the personal fields of signups synced (or failed) longer ago than the retention settings.

    Counted from the row's last change (``updated_at``), which the sync sets when it records the outcome.

    The consent record (time, text, version, page) and the keyed email hash stay, so consent remains
    provable. Returns how many rows were purged.
    """
    now = timezone.now()
    blank = {field: "" for field in PERSONAL_FIELDS}
    blank.update(custom_fields=[], street_address=None, consent_user_agent="", personal_data_purged_at=now)
    purged = 0
    for status, days in (
        (Signup.Status.SYNCED, get_setting("RETENTION_DAYS")),
        (Signup.Status.FAILED, get_setting("FAILED_RETENTION_DAYS")),
    ):
        if days is None:
            continue
        cutoff = now - timedelta(days=float(days))
        rows = Signup.objects.filter(
            status=status, personal_data_purged_at__isnull=True, updated_at__lte=cutoff
        )
        purged += rows.update(**blank)
    if purged:
        logger.info("Removed the personal data of %s signups past retention.", purged)
    return purged
