"""A stored connection and CC's token answers, as cc_sync's unit tests set them up; a connection made the
admin's way against the sandbox."""

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


def connect_account(
    sandbox: Any,
    slug: str = Connection.DEFAULT_SLUG,
    *,
    account: str | None = None,
    client_id: str | None = None,
    name: str = "",
    expires_in: float | None = None,
) -> Connection:
    """Connect the connection ``slug`` (made if missing) to the sandbox's ``account`` (default: its default
    account) as an admin does: Allow on the consent page over HTTP, then cc_sync exchanges the code (and
    reads the account's name and lists). Its lists: the account's first one.

    ``client_id``: a sandbox application other than the one in ``CC_SYNC`` becomes the connection's own
    application (its secret is read from the sandbox). ``expires_in`` then rewrites the access token's
    expiry (negative: expired already). ``CC_SYNC`` must point at ``sandbox``.
    """
    from cc_sync import oauth
    from cc_sync.conf import app_settings
    from rig.sandbox import get_code

    app = next(
        item
        for item in sandbox.config()["apps"]
        if item["client_id"] == (client_id or app_settings.CLIENT_ID)
    )
    own = app["client_id"] != app_settings.CLIENT_ID
    fields = {
        "client_id": app["client_id"] if own else "",
        "client_secret": (app["client_secret"] or "") if own else "",
    }
    if name:
        fields["name"] = name
    connection, _created = Connection.objects.update_or_create(slug=slug, defaults=fields)
    redirect_uri = app["redirect_uris"][0]
    extra = {"account": account} if account else {}
    code = get_code(
        sandbox, client_id=app["client_id"], redirect_uri=redirect_uri, scope=app_settings.SCOPES, **extra
    )
    connection = oauth.connect_with_code(code, redirect_uri, connection=connection)
    connection.list_ids = [sandbox.lists(account=account)[0]["list_id"]]
    if expires_in is not None:
        connection.expires_at = timezone.now() + timedelta(seconds=expires_in)
    connection.save()
    return connection
