"""Connecting to CC and keeping the tokens alive.

The only module that changes tokens. Every change happens inside ``transaction.atomic()`` on the locked
connection row (:func:`cc_sync.db.lock_row`), and a new token pair is saved before anything uses it, so
however many workers find the token stale at once, exactly one refresh call is made: the others wait for
the lock, re-read, and find a fresh token.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, MutableMapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from itertools import zip_longest
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from . import ratelimit
from .client import get_client
from .conf import app_settings
from .db import lock_row
from .exceptions import (
    AccessTokenRejected,
    AuthorizationFailed,
    CCSyncError,
    ReconnectRequired,
    Rejected,
    RetryLater,
)
from .models import Connection
from .signals import connection_established, connection_needs_reconnect

logger = logging.getLogger("cc_sync.oauth")
T = TypeVar("T")
#: A connection, or ``None`` for the default one: what every function here takes.
ConnectionArg = Connection | None

SESSION_KEY = "cc_sync_oauth_states"
# CC's authorization code lives 5 minutes; a state older than twice that is refused.
STATE_MAX_AGE = 600
STATES_KEPT = 5
LIST_CHECK_INTERVAL = 24 * 3600
# expires_in above this (ten years of seconds) is an epoch time, not a lifetime; above the second one, in ms.
EPOCH_THRESHOLD = 10 * 365 * 24 * 3600
EPOCH_MS_THRESHOLD = 10**11
FALLBACK_LIFETIME = 3600
# How often a process waiting for its token slot looks whether another process has refreshed meanwhile.
TOKEN_WAIT_POLL = 0.1


# -- the authorization request ------------------------------------------------------------------


@sensitive_variables()
def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` pair for ``code_challenge_method=S256`` (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@sensitive_variables()
def authorization_request(redirect_uri: str, connection: ConnectionArg = None) -> tuple[str, dict[str, Any]]:
    """The authorize URL to send the admin to, and the record to keep until the callback.

    The record holds a fresh random ``state``, the connection being connected (and the PKCE verifier for
    PKCE applications); it must be kept server-side (the session) and used once.
    """
    connection = connection or Connection.load()
    if app_settings.OAUTH_FLOW == "device":
        # A device-flow application has no redirect URI: CC cannot send the browser back here.
        raise AuthorizationFailed(
            _(
                "This Constant Contact application uses the device flow: connect it with "
                "`manage.py cc_sync_connect --device`."
            )
        )
    record: dict[str, Any] = {
        "state": secrets.token_urlsafe(32),
        "created": time.time(),
        "redirect_uri": redirect_uri,
        "connection": connection.pk,
    }
    params = {
        "client_id": connection.application().client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": app_settings.SCOPES,
        "state": record["state"],
    }
    if app_settings.OAUTH_FLOW == "pkce":
        record["code_verifier"], params["code_challenge"] = pkce_pair()
        params["code_challenge_method"] = "S256"
    # quote_via default (quote_plus) sends spaces as "+", which CC accepts; a literal %2B would not be.
    return f"{app_settings.AUTHORIZE_URL}?{urlencode(params)}", record


def _same(a: str, b: str) -> bool:
    # Constant-time, and bytes so that a forged non-ASCII state is refused rather than raising TypeError.
    return secrets.compare_digest(a.encode(), b.encode())


@sensitive_variables()
def remember_state(session: MutableMapping[str, Any], record: dict[str, Any]) -> None:
    """Keep ``record`` in the admin's session (at most a few, oldest dropped)."""
    fresh = [r for r in session.get(SESSION_KEY, []) if time.time() - r["created"] < STATE_MAX_AGE]
    session[SESSION_KEY] = [*fresh[-(STATES_KEPT - 1) :], record]


@sensitive_variables()
def pop_state(session: MutableMapping[str, Any], state: str | None) -> dict[str, Any]:
    """Remove and return the record for ``state``; refuse a missing, unknown, reused or expired one."""
    if not state:
        raise AuthorizationFailed(_("The answer from Constant Contact carried no state; nothing was stored."))
    records = session.get(SESSION_KEY, [])
    match = next((r for r in records if _same(r["state"], state)), None)
    if match is None:
        raise AuthorizationFailed(
            _(
                "The state in the answer from Constant Contact is unknown or was already used; nothing was "
                "stored. Start again with Connect Constant Contact."
            )
        )
    session[SESSION_KEY] = [r for r in records if r is not match]
    if time.time() - match["created"] >= STATE_MAX_AGE:
        raise AuthorizationFailed(
            _("The connection attempt took too long and expired; nothing was stored. Start again.")
        )
    return match


@sensitive_variables()
def complete_authorization(
    session: MutableMapping[str, Any], params: MutableMapping[str, Any], user: Any = None
) -> Connection:
    """Handle the redirect back from CC: check ``state``, exchange ``code``, store the connection."""
    record = pop_state(session, params.get("state"))
    if params.get("error"):
        if params["error"] == "access_denied":
            raise AuthorizationFailed(_("Access was denied at Constant Contact; nothing was stored."))
        raise AuthorizationFailed(
            _("Constant Contact answered with an error (%(error)s); nothing was stored.")
            % {"error": params["error"][:100]}
        )
    code = params.get("code")
    if not code:
        raise AuthorizationFailed(
            _("The answer from Constant Contact carried no authorization code; nothing was stored.")
        )
    try:
        connection = Connection.for_id(record.get("connection"))
    except Connection.DoesNotExist:
        raise AuthorizationFailed(
            _("The connection being connected was deleted; nothing was stored.")
        ) from None
    return connect_with_code(
        code, record["redirect_uri"], record.get("code_verifier"), user=user, connection=connection
    )


@sensitive_variables()
def code_from_pasted(text: str, record: dict[str, Any]) -> str:
    """The authorization code from a pasted redirect URL (state checked) or a bare pasted code."""
    text = text.strip()
    if "?" not in text and "=" not in text:
        return text
    query = parse_qs(urlsplit(text).query) if "?" in text else parse_qs(text)
    state = (query.get("state") or [""])[0]
    if not state or not _same(state, record["state"]):
        raise AuthorizationFailed(
            _("The pasted URL carries a different state than the one issued; nothing was stored.")
        )
    if query.get("error"):
        raise AuthorizationFailed(
            _("Constant Contact answered with an error (%(error)s); nothing was stored.")
            % {"error": query["error"][0][:100]}
        )
    if not query.get("code"):
        raise AuthorizationFailed(_("The pasted URL carries no authorization code; nothing was stored."))
    return query["code"][0]


@sensitive_variables()
def connect_with_code(
    code: str,
    redirect_uri: str,
    code_verifier: str | None = None,
    user: Any = None,
    connection: ConnectionArg = None,
) -> Connection:
    """Exchange an authorization code and store the resulting grant on ``connection``."""
    connection = connection or Connection.load()
    try:
        tokens = get_client(connection.application()).exchange_code(code, redirect_uri, code_verifier)
    except CCSyncError as err:
        raise AuthorizationFailed(
            f"The authorization code could not be exchanged ({err}); nothing was stored."
        ) from None
    return store_grant(tokens, user=user, connection=connection)


# -- the device flow ----------------------------------------------------------------------------


@sensitive_variables()
def start_device_flow(connection: ConnectionArg = None) -> dict[str, Any]:
    """Start CC's device flow; show the returned ``verification_uri`` and ``user_code`` to a person."""
    application = (connection or Connection.load()).application()
    try:
        return get_client(application).start_device_authorization(app_settings.SCOPES)
    except CCSyncError as err:
        raise AuthorizationFailed(f"The device flow could not be started: {err}") from None


@sensitive_variables()
def finish_device_flow(
    device: dict[str, Any],
    user: Any = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    connection: ConnectionArg = None,
) -> Connection:
    """Poll the token endpoint at the interval CC asked for until the person approves (RFC 8628 section 3.5)."""
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    interval = float(device.get("interval") or 5)
    deadline = clock() + float(device.get("expires_in") or 600)
    connection = connection or Connection.load()
    client = get_client(connection.application())
    while clock() < deadline:
        sleep(interval)
        try:
            tokens = client.poll_device_token(device["device_code"])
        except ReconnectRequired as err:
            raise AuthorizationFailed(f"The device authorization failed: {err}") from None
        except CCSyncError as err:
            if err.error_key == "authorization_pending":
                continue
            if err.error_key == "slow_down":
                interval += 5
                continue
            if err.error_key in ("access_denied", "expired_token"):
                raise AuthorizationFailed(f"The device authorization ended: {err.error_key}.") from None
            if getattr(err, "retry_after", None) is not None:  # transient: keep polling
                continue
            raise AuthorizationFailed(f"The device authorization failed: {err}") from None
        return store_grant(tokens, user=user, connection=connection)
    raise AuthorizationFailed("Nobody approved the device in time; start again.")


# -- storing and refreshing ---------------------------------------------------------------------


def token_expiry(expires_in: Any, now: datetime) -> datetime:
    """When an access token expires, from the token response's ``expires_in`` received at ``now``.

    RFC 6749 (section 5.1) and CC's staff make ``expires_in`` a lifetime in seconds (CC's access tokens:
    86400); CC's own spec (``TokenResponse``, build 3.0.161) calls it a "timestamp that the token will expire
    in seconds after the UNIX epoch". Both are accepted: no lifetime is ten years long, so a larger value is
    the expiry time itself (in milliseconds when it is larger still). A missing, unreadable or past value
    gets an hour: a token that seems expired at once would be refreshed before every request, and a 401
    refreshes it anyway if it expires sooner.
    """
    try:
        value = float(expires_in)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        logger.warning("The token response has no usable expires_in (%r); assuming an hour.", expires_in)
        return now + timedelta(seconds=FALLBACK_LIFETIME)
    if value <= EPOCH_THRESHOLD:
        return now + timedelta(seconds=value)
    if value > EPOCH_MS_THRESHOLD:
        value /= 1000
    expiry = datetime.fromtimestamp(value, tz=dt_timezone.utc)
    if expiry <= now:
        logger.warning(
            "The token response's expires_in (%r) is a time already past; assuming an hour.", expires_in
        )
        return now + timedelta(seconds=FALLBACK_LIFETIME)
    return expiry


@sensitive_variables()
def _apply_tokens(connection: Connection, tokens: dict[str, Any]) -> None:
    now = timezone.now()
    connection.access_token = tokens["access_token"]
    # Long-lived refresh tokens may come back unchanged or not at all: keep the one we have.
    connection.refresh_token = tokens.get("refresh_token") or connection.refresh_token
    connection.expires_at = token_expiry(tokens.get("expires_in"), now)
    connection.scopes = tokens.get("scope", connection.scopes) or ""
    connection.last_refreshed_at = now
    connection.last_error = ""
    connection.last_error_at = None


@sensitive_variables()
def store_grant(tokens: dict[str, Any], user: Any = None, connection: ConnectionArg = None) -> Connection:
    """Save a new grant on ``connection`` from any connect flow, fetch the account name and lists, release
    its held signups."""
    connection = connection or Connection.load()
    pk = connection.pk
    client = get_client(connection.application())
    account: dict[str, Any] = {}
    if "account_read" in (tokens.get("scope") or app_settings.SCOPES).split():
        try:
            account = client.account_summary(tokens["access_token"])
        except CCSyncError as err:
            logger.warning("Could not read the Constant Contact account summary: %s", err)
    with transaction.atomic():
        connection = lock_row(Connection, pk)
        _apply_tokens(connection, tokens)
        connection.status = Connection.Status.CONNECTED
        connection.connected_at = connection.last_refreshed_at
        connection.connected_by = user if getattr(user, "pk", None) else None
        connection.account_name = str(account.get("organization_name") or "")
        connection.account_id = str(account.get("encoded_account_id") or "")
        connection.save()
    logger.info(
        "Connection %r: connected to Constant Contact account %r.",
        connection.slug,
        connection.account_name or connection.account_id,
    )
    try:
        refresh_lists(connection, tokens["access_token"])
    except CCSyncError as err:
        logger.warning("Could not fetch the Constant Contact lists: %s", err)
    connection_established.send(sender=Connection, connection=connection)
    return connection


@sensitive_variables()
def refresh_tokens_if(should_refresh: Callable[[Connection], bool], connection: ConnectionArg = None) -> str:
    """Under ``connection``'s row lock, refresh if ``should_refresh(connection)`` still holds; return a valid
    access token.

    The lock is the connection's own row: one account's refresh never waits for another's. Raises
    :class:`ReconnectRequired` when not connected or CC refuses the grant (the connection is then marked
    *needs reconnect* and admins are told once), :class:`RetryLater` for transient failures.
    """
    peek = Connection.for_id(connection.pk) if connection is not None else Connection.load()
    pk, application = peek.pk, peek.application()
    reserved = False
    for attempt in range(ratelimit.LATE_RESERVATIONS + 1):
        slot = None
        if peek.status == Connection.Status.CONNECTED and should_refresh(peek):
            last = attempt == ratelimit.LATE_RESERVATIONS
            fresh, slot = _await_token_slot(should_refresh, peek, again=reserved, last=last)
            if fresh is not None:
                return fresh
            reserved = True
        with transaction.atomic():
            connection = lock_row(Connection, pk)
            if connection.status != Connection.Status.CONNECTED:
                raise ReconnectRequired(_not_connected(connection))
            if not should_refresh(connection):
                return connection.access_token
            # Sent only in a slot of the application's token budget that it could keep: one left behind (a late
            # wake-up, the wait for this lock) could put this refresh within a second of the next slot's, maybe
            # another connection's through the same application. A later slot is then reserved, outside this
            # transaction; after LATE_RESERVATIONS the refresh goes late all the same, as API requests do.
            late = slot is None or time.monotonic() - slot > ratelimit.TOKEN_PACING_TOLERANCE
            if late and attempt < ratelimit.LATE_RESERVATIONS:
                peek = connection
                continue
            try:
                tokens = get_client(application).refresh(
                    connection.refresh_token, slot_reserved=slot is not None
                )
            except (ReconnectRequired, Rejected) as err:
                # Any other 4xx to a refresh (not just invalid_grant) means this grant cannot be used as it
                # is: hold the signups for a reconnect rather than fail them.
                _needs_reconnect(connection, str(err))
                failure: CCSyncError = ReconnectRequired(
                    err.message, status_code=err.status_code, error_key=err.error_key, errors=err.errors
                )
            except CCSyncError as err:
                connection.last_error, connection.last_error_at = str(err)[:1000], timezone.now()
                connection.save(update_fields=["last_error", "last_error_at", "updated_at"])
                failure = err
            else:
                _apply_tokens(connection, tokens)
                connection.save()
                logger.info(
                    "Connection %r: refreshed the Constant Contact access token; it expires at %s.",
                    connection.slug,
                    connection.expires_at,
                )
                return connection.access_token
        break
    # Raised outside the atomic block so that the recorded status and error are committed.
    logger.warning("Connection %r: refreshing the Constant Contact token failed: %s", peek.slug, failure)
    raise failure


def _not_connected(connection: Connection) -> str:
    if connection.is_default:
        return "Constant Contact is not connected."
    return f"Constant Contact connection {connection.slug!r} is not connected."


@sensitive_variables()
def _await_token_slot(
    should_refresh: Callable[[Connection], bool], peek: Connection, again: bool = False, last: bool = False
) -> tuple[str | None, float]:
    """Reserve a token-endpoint slot in its own committed transaction and wait for it; return ``(token,
    slot)``: the slot's time (``time.monotonic()``), and a fresh token if another process refreshed meanwhile.
    ``again``: a later slot for a refresh whose slot passed unused (not counted again); ``last``: the slot
    the refresh is sent in even if late, so it gets ``ratelimit.LATE_HEADROOM``.

    The slot is taken before the connection row is locked: inside that transaction it would be a
    savepoint, rolled back if the process died after CC had seen the call, and the next refresh could then
    break CC's 1 request/s limit. While waiting, another process may refresh first: its fresh token is
    returned at once and the slot goes unused.
    """
    # A connection refreshes hours apart, so its request to the token endpoint nearly always opens a new
    # connection: the slot gets the headroom for a TCP and TLS handshake.
    headroom = max(ratelimit.NEW_CONNECTION_HEADROOM, ratelimit.LATE_HEADROOM if last else 0.0)
    deadline = time.monotonic() + ratelimit.reserve(
        peek.budget("token"), app_settings.TOKEN_RATE, again=again, headroom=headroom
    )
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, TOKEN_WAIT_POLL))
        connection = Connection.for_id(peek.pk)
        if connection.status != Connection.Status.CONNECTED:
            return None, deadline
        if not should_refresh(connection):
            return connection.access_token, deadline
    return None, deadline


@sensitive_variables()
def get_access_token(connection: ConnectionArg = None) -> str:
    """A valid access token of ``connection``, refreshed first if it expires within ``TOKEN_LEEWAY`` seconds.

    ``connection``: the connection row just loaded by the caller (not read again); default: the default one.
    """
    leeway = app_settings.TOKEN_LEEWAY
    connection = connection or Connection.load()
    if connection.status != Connection.Status.CONNECTED:
        raise ReconnectRequired(_not_connected(connection))
    if not connection.needs_refresh(leeway):
        return connection.access_token
    return refresh_tokens_if(lambda c: c.needs_refresh(leeway), connection)


# Tokens tried after a 401: another process's token (revoked since, perhaps), then this call's own refresh.
TOKEN_REPLACEMENTS = 2


@sensitive_variables()
def replace_rejected_token(rejected_token: str, connection: ConnectionArg = None) -> str:
    """After a 401: refresh, unless another process already replaced ``rejected_token``."""
    return refresh_tokens_if(lambda c: c.access_token == rejected_token, connection)


@sensitive_variables()
@sensitive_variables("token")
def with_access_token(call: Callable[[str], T], connection: ConnectionArg = None) -> T:
    """Run ``call(access_token)``; on a 401, refresh once (unless another process did) and run it once more.

    A 401 to the token this call's own refresh returned means CC no longer accepts the grant: the
    connection is marked for a reconnect and :class:`ReconnectRequired` raised. A 401 to a token another
    process had put in place is not: that token may have been revoked since, so this call refreshes in turn;
    a call that meets only such tokens (:data:`TOKEN_REPLACEMENTS` of them) raises :class:`RetryLater`.
    ``connection``: as for :func:`get_access_token`.
    """
    connection = connection or Connection.load()
    token = get_access_token(connection)
    own_refresh = False
    for replacement in range(TOKEN_REPLACEMENTS + 1):
        try:
            return call(token)
        except AccessTokenRejected as err:
            if own_refresh:
                mark_needs_reconnect(
                    f"Constant Contact refused a freshly refreshed access token: {err}", connection
                )
                raise ReconnectRequired(str(err), status_code=err.status_code) from None
            if replacement == TOKEN_REPLACEMENTS:
                break
            # Nobody has replaced the rejected token yet: the refresh below is this call's own.
            own_refresh = Connection.for_id(connection.pk).access_token == token
            token = replace_rejected_token(token, connection)
    # Only tokens of other processes were refused, each revoked before this call could use it: not a sign
    # that the grant is gone, so the call is tried again later.
    raise RetryLater(
        "Constant Contact refused the access tokens other processes put in place.", status_code=401
    )


def refresh_now(connection: ConnectionArg = None) -> str:
    """Refresh unconditionally (the admin's "Refresh now")."""
    return refresh_tokens_if(lambda c: True, connection)


def _keep_alive_due(connection: Connection, now: datetime) -> bool:
    cutoff = now - timedelta(seconds=app_settings.KEEPALIVE_INTERVAL)
    return (
        connection.needs_refresh(app_settings.TOKEN_LEEWAY, now)
        or connection.last_refreshed_at is None
        or connection.last_refreshed_at <= cutoff
    )


def _applications_in_turn(connections: Iterable[Connection]) -> list[Connection]:
    """The connections with their applications taken in turn: one of each application, then the next of each.

    Each refresh waits for its application's token slot (1 a second per API key). Taken in turn, a connection
    of another application is refreshed while one application's next slot comes, instead of after it: the
    cycle lasts about as long as the application with the most connections needs, not the sum of them all.
    """
    by_application: dict[str, list[Connection]] = {}
    for row in connections:
        # Grouped by token budget, which does not read the secret: a connection whose secret the keys cannot
        # decrypt fails alone, in the loop, like any other failing connection.
        by_application.setdefault(row.budget("token"), []).append(row)
    return [row for turn in zip_longest(*by_application.values()) for row in turn if row is not None]


@sensitive_variables()
def keep_alive(connection: ConnectionArg = None) -> int:
    """Refresh each connected connection (or only ``connection``) whose token is stale or that was not
    refreshed for ``KEEPALIVE_INTERVAL``, and re-check its lists daily; return how many were refreshed.

    CC's refresh tokens die after 180 days unused, so a site where nobody signs up must still refresh. The
    connections are taken one after another, their applications in turn, each refresh paced by its
    application's token budget (1 request a second per API key, shared by every process), so however many
    connections share an application its token endpoint never sees more than that. One failing connection
    does not stop the others: it is marked for a reconnect, or tried again at the next cycle.
    """
    connected = Connection.objects.filter(status=Connection.Status.CONNECTED)
    if connection is not None:
        connected = connected.filter(pk=connection.pk)
    refreshed = 0
    for row in _applications_in_turn(connected.order_by("pk")):
        before = row.last_refreshed_at
        try:
            refresh_tokens_if(lambda c: _keep_alive_due(c, timezone.now()), row)
            row.refresh_from_db()
            if row.lists_checked_at is None or row.lists_checked_at <= timezone.now() - timedelta(
                seconds=LIST_CHECK_INTERVAL
            ):
                refresh_lists(row)
        except CCSyncError as err:
            if connection is not None:
                raise
            logger.warning("Connection %r: keep-alive failed: %s", row.slug, err)
        if row.last_refreshed_at != before:
            refreshed += 1
    return refreshed


@sensitive_variables()
def refresh_lists(connection: Connection, access_token: str | None = None) -> list[dict[str, str]]:
    """Fetch the account's lists (all pages) and store ``{list_id, name}`` for each."""
    lists = get_client(connection.application()).contact_lists(access_token or get_access_token(connection))
    connection.available_lists = [
        {"list_id": item["list_id"], "name": item.get("name", "")} for item in lists
    ]
    connection.lists_checked_at = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        available_lists=connection.available_lists, lists_checked_at=connection.lists_checked_at
    )
    return connection.available_lists


def mark_needs_reconnect(reason: str, connection: ConnectionArg = None) -> None:
    """Record that CC refused ``connection``'s grant (403, or 401 right after a refresh); tell admins once."""
    pk = (connection or Connection.load()).pk
    with transaction.atomic():
        _needs_reconnect(lock_row(Connection, pk), reason)


def _needs_reconnect(connection: Connection, reason: str) -> None:
    was_connected = connection.status == Connection.Status.CONNECTED
    connection.last_error, connection.last_error_at = reason[:1000], timezone.now()
    if was_connected:
        connection.status = Connection.Status.NEEDS_RECONNECT
    connection.save()
    if was_connected:
        logger.error("Connection %r: Constant Contact needs to be reconnected: %s", connection.slug, reason)
        transaction.on_commit(lambda: _notify_needs_reconnect(connection, reason))


def _notify_needs_reconnect(connection: Connection, reason: str) -> None:
    which = "" if connection.is_default else f" ({connection.name}, {connection.slug})"
    mail_admins(
        f"Constant Contact needs to be reconnected{which}",
        f"Constant Contact refused the stored authorization of the connection {connection.name!r} "
        f"({connection.account_name or connection.slug}), so its signups are being held (none are lost).\n\n"
        f"Reason: {reason}\n\n"
        "Open the Constant Contact connection page in the Django admin and click Reconnect; "
        "held signups are sent as soon as the connection is back.",
        fail_silently=True,
    )
    connection_needs_reconnect.send(sender=Connection, connection=connection, reason=reason)


@sensitive_variables()
def disconnect(connection: ConnectionArg = None) -> None:
    """Forget ``connection``'s stored tokens; its signups are held until the next connect."""
    pk = (connection or Connection.load()).pk
    with transaction.atomic():
        connection = lock_row(Connection, pk)
        connection.access_token = connection.refresh_token = ""
        connection.expires_at = None
        connection.status = Connection.Status.DISCONNECTED
        connection.save()
    logger.info("Connection %r: disconnected from Constant Contact.", connection.slug)
