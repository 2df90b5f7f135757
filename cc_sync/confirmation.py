"""Confirmation by email: the person's own word before anything that needs it.

A form submission proves nothing about who typed the address. Before cc_sync re-subscribes a contact that
unsubscribed at CC (CC's spec calls opting someone back in "without his or her own action and consent" a
violation of anti-spam law and of its terms), or before any signup when ``DOUBLE_OPT_IN`` is on, the
person gets an email with a signed, expiring link. The link opens a page that confirms on POST only: mail
scanners follow links with GET, and must not confirm for the person.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from django.core import signing
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .conf import app_settings
from .models import Signup, default_deadline

logger = logging.getLogger("cc_sync.confirmation")

SALT = "cc_sync.confirmation"


class CannotConfirm(Exception):
    """No link can be built for this signup (no ``CONFIRM_URL_BASE`` and no page it came from)."""


class InvalidLink(Exception):
    """The link is forged, for another signup, or expired."""


def make_token(signup: Signup) -> str:
    """A signed token naming the signup and its email hash, so a link cannot be reused for another row."""
    return signing.dumps({"s": signup.pk, "h": signup.email_hash[:16]}, salt=SALT, compress=True)


def link_for(signup: Signup) -> str:
    """The absolute URL of the confirmation page for this signup."""
    base = app_settings.CONFIRM_URL_BASE or _origin(signup.source_url)
    if not base:
        raise CannotConfirm(
            "The person must confirm by email, but no link can be built: set CC_SYNC['CONFIRM_URL_BASE']."
        )
    try:
        path = reverse("cc_sync:confirm", args=[make_token(signup)])
    except NoReverseMatch:
        raise CannotConfirm(
            "The person must confirm by email, but the confirmation page is not in your URLconf: "
            "add path('signup/', include('cc_sync.urls'))."
        ) from None
    return base.rstrip("/") + path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def send(signup: Signup) -> None:
    """Email the person the confirmation link (Django's mail; templates ``cc_sync/email/confirm_*.txt``)."""
    context = {
        "signup": signup,
        "link": link_for(signup),
        "days": max(1, round(app_settings.CONFIRMATION_MAX_AGE / 86400)),
    }
    subject = " ".join(render_to_string("cc_sync/email/confirm_subject.txt", context).split())
    body = render_to_string("cc_sync/email/confirm_body.txt", context)
    send_mail(subject, body, None, [signup.email])
    logger.info("Sent the confirmation email of signup %s.", signup.pk)


def signup_for(token: str) -> Signup:
    """The signup a link names; raises :class:`InvalidLink` if it is forged, expired or gone."""
    try:
        max_age = timedelta(seconds=app_settings.CONFIRMATION_MAX_AGE)
        data = signing.loads(token, salt=SALT, max_age=max_age)
        signup = Signup.objects.get(pk=data["s"])
    except (signing.BadSignature, Signup.DoesNotExist, KeyError, TypeError):
        raise InvalidLink() from None
    if signup.email_hash[:16] != data["h"]:
        raise InvalidLink()
    return signup


def confirm(signup: Signup) -> bool:
    """Record the person's confirmation and make the signup due now; False if it was not waiting for it.

    One conditional UPDATE: a second click (or two tabs) confirms once.
    """
    from .publisher import publish_later
    from .sync import Status

    now = timezone.now()
    confirmed = Signup.objects.filter(pk=signup.pk, status=Status.AWAITING_CONFIRMATION).update(
        status=Status.PENDING,
        confirmed_at=now,
        next_attempt_at=now,
        enqueued_at=now,
        deadline_at=default_deadline(),
        last_error="",
        last_error_key="",
        updated_at=now,
    )
    if confirmed:
        publish_later([signup.pk], marked_at=now)
        logger.info("Signup %s was confirmed by the person.", signup.pk)
    return bool(confirmed)
