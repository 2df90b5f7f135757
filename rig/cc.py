"""A stored connection and CC's token answers, as cc_sync's unit tests set them up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from cc_sync.models import Connection
from rig.constants import ACCESS_TOKEN, REFRESH_TOKEN, SCOPES


def make_connection(expires_in: float = 3600, **fields: Any) -> Connection:
    """Store the connection (an account connected with the test tokens), with ``fields`` changed."""
    defaults = {
        "status": Connection.Status.CONNECTED,
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "expires_at": timezone.now() + timedelta(seconds=expires_in),
        "scopes": SCOPES,
        "account_name": "Acme Inc",
        "last_refreshed_at": timezone.now(),
        "connected_at": timezone.now(),
    }
    defaults.update(fields)
    Connection.objects.update_or_create(slug=Connection.DEFAULT_SLUG, defaults=defaults)
    return Connection.load()


def token_body(access: str, refresh: str, expires_in: int = 86400) -> dict[str, Any]:
    """A token endpoint's success body, as CC answers it."""
    return {
        "token_type": "Bearer",
        "expires_in": expires_in,
        "access_token": access,
        "refresh_token": refresh,
        "scope": SCOPES,
    }


def no_authorization_header(request: Any) -> tuple[bool, str]:
    """A ``responses`` matcher: public (PKCE, device) clients send no HTTP Basic credentials."""
    if "Authorization" in request.headers:
        return False, "the request carries an Authorization header"
    return True, ""
