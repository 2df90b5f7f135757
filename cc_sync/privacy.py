"""Keyed email hashes, the suppression list, retention and erasure."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta
from typing import Any

import idna
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .conf import app_settings
from .models import Signup, Suppression
from .validators import canonical_email

logger = logging.getLogger("cc_sync.privacy")

PERSONAL_FIELDS = ("email", "first_name", "last_name", "phone_number", "job_title", "company_name")


def _key() -> bytes:
    # A dedicated key keeps hashes stable when SECRET_KEY is rotated; SECRET_KEY is only the fallback.
    return (app_settings.HASH_KEY or settings.SECRET_KEY).encode()


def keyed_hash(value: str) -> str:
    """HMAC-SHA256 of a value under ``CC_SYNC["HASH_KEY"]`` (hex); for emails use :func:`email_hash`."""
    return hmac.new(_key(), value.encode(), hashlib.sha256).hexdigest()


def email_hash(email: str) -> str:
    """The keyed hash of an email's :func:`~cc_sync.validators.canonical_email` form.

    One address gives one hash however it is typed: case (CC matches contacts case-insensitively),
    full-width letters, and the Unicode or ``xn--`` form of its domain. For a plain ASCII address it is the
    hash of ``strip().lower()``, as in earlier versions, so stored hashes keep matching.
    """
    return keyed_hash(canonical_email(email))


def email_hashes(email: str) -> list[str]:
    """:func:`email_hash`, then the hash earlier versions gave the address typed with a Unicode domain.

    Up to cc_sync 0.1 the hash was of the address as typed, lower-cased: ``suppress("anna@bücher.de")`` stored the
    hash of the Unicode form, which :func:`email_hash` no longer gives. Suppression entries made that way
    still match, whichever form is looked up.
    """
    canonical = canonical_email(email)
    hashes = [keyed_hash(canonical)]
    local, sep, domain = canonical.rpartition("@")
    if sep and "xn--" in domain:
        try:
            legacy = f"{local}@{idna.decode(domain)}".lower()
        except (UnicodeError, ValueError):  # not a valid A-label: nothing was stored another way
            legacy = canonical
        if legacy != canonical:
            hashes.append(keyed_hash(legacy))
    return hashes


def is_suppressed(email: str) -> bool:
    """True if this email, in any of its forms, must never be synced."""
    return Suppression.objects.filter(email_hash__in=email_hashes(email)).exists()


def suppress(email: str, reason: str = Suppression.Reason.UNSUBSCRIBED) -> Suppression:
    """Add an email to the suppression list (idempotent)."""
    suppression, _created = Suppression.objects.get_or_create(
        email_hash=email_hash(email), defaults={"reason": reason}
    )
    return suppression


def erase(email: str) -> int:
    """Delete every local signup of this person and suppress the email; return how many rows went.

    Any spelling finds the person's rows (``anna@bücher.de`` and ``anna@xn--bcher-kva.de`` are one address).
    This is local only: CC keeps its own contact (its API deletes softly; a hard delete is a request to
    CC support), which is why the suppression entry matters.
    """
    hashes = email_hashes(email)
    digest = hashes[0]
    with transaction.atomic():
        deleted, _per_model = Signup.objects.filter(email_hash__in=hashes).delete()
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
    blank: dict[str, Any] = {field: "" for field in PERSONAL_FIELDS}
    blank.update(custom_fields=[], street_address=None, consent_user_agent="", personal_data_purged_at=now)
    purged = 0
    for status, days in (
        (Signup.Status.SYNCED, app_settings.RETENTION_DAYS),
        (Signup.Status.FAILED, app_settings.FAILED_RETENTION_DAYS),
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
