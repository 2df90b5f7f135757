"""CC's OAuth2 server: the authorization endpoint (consent page, code, PKCE), the token endpoint (the
authorization-code, refresh-token and device-code grants) and the device flow (``/device``).

Where CC documents nothing (error bodies of the token endpoint, device-flow poll errors) it follows RFC 6749 /
RFC 8628 and Okta, which runs CC's authorization server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from . import pages
from .config import DEFAULT_SCOPE
from .faults import PROCESSED_FAULTS, draw_fault, fault_reply, garble
from .replies import (
    _THROTTLED,
    _b64url,
    _html,
    _json,
    _media_type,
    _oauth_error,
    _redirect,
    _Reply,
    _Request,
    _with_query,
)
from .state import SandboxState, _AccessToken, _Account, _Code, _Device, _Grant

AUTHORIZE_PATH = "/oauth2/default/v1/authorize"
TOKEN_PATH = "/oauth2/default/v1/token"
DEVICE_AUTHORIZE_PATH = "/oauth2/default/v1/device/authorize"
DEVICE_PAGE_PATH = "/device"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
KNOWN_SCOPES = frozenset(pages.SCOPE_DESCRIPTIONS)
_GRANTS_BY_FLOW = {
    "authorization_code": frozenset({"authorization_code", "refresh_token"}),
    "pkce": frozenset({"authorization_code", "refresh_token"}),
    "device": frozenset({DEVICE_CODE_GRANT, "refresh_token"}),
}
_SUPPORTED_GRANTS = frozenset().union(*_GRANTS_BY_FLOW.values())
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels or look-alikes, as Okta does

# Messages are Okta's (CC's authorization server) where known.
_INVALID_CLIENT = "Client authentication failed. Either the client or the client credentials are invalid."
_INVALID_CODE = "The authorization code is invalid or has expired."
_INVALID_REFRESH = "The refresh token is invalid or expired."
_INVALID_REDIRECT = "The 'redirect_uri' parameter must be a Login redirect URI in the client app settings."


def _seconds(value: float) -> int:
    # Fractional lifetimes are for fast tests; the wire format carries whole seconds.
    return max(1, math.ceil(value))


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


class OAuthServerMixin(SandboxState):
    """CC's authorization server, mixed into ``Sandbox``: codes, grants, access tokens, device codes."""

    port: int

    @property
    def base_url(self) -> str:  # provided by Sandbox
        raise NotImplementedError

    # -- test helpers ------------------------------------------------------------------------------

    def expire_access_tokens(self, *, account: str | None = None, client_id: str | None = None) -> int:
        """Expire the issued access tokens (the API answers 401), all of them or only those of ``account``
        and/or application ``client_id``; return how many were expired."""
        with self._lock:
            tokens = [
                token
                for token in self._access_tokens.values()
                if (account is None or token.account.account_id == account)
                and (client_id is None or token.client_id == client_id)
            ]
            for token in tokens:
                token.expires_at = float("-inf")
            return len(tokens)

    def approve_device(self, user_code: str, account: str | None = None) -> None:
        """Approve a pending device authorization, as the user would on ``/device``, for ``account``
        (default: the account signed in, see :meth:`sign_in`).

        Raises LookupError if the code is unknown, expired or already decided, or the account unknown.
        """
        with self._lock:
            chosen = self._signed_in if account is None else self._find_account(account)
            self._decide_device(user_code, approve=True, account=chosen)

    def deny_device(self, user_code: str) -> None:
        """Deny a pending device authorization (the next poll gets ``access_denied``)."""
        with self._lock:
            self._decide_device(user_code, approve=False)

    def issue_tokens(
        self, client_id: str | None = None, scope: str = DEFAULT_SCOPE, account: str | None = None
    ) -> dict[str, Any]:
        """Mint a token pair as if a user of ``account`` (default: the default account) had just connected
        application ``client_id`` (default: the first); returns the token-endpoint response.

        Not counted as a token call and not logged. Raises LookupError for an unknown account.
        """
        with self._lock:
            app = self._app(client_id) if client_id else self._config["apps"][0]
            if app is None:
                raise ValueError(f"no app with client_id {client_id!r}")
            problem = self._scope_problem(scope)
            if problem:
                raise ValueError(problem)
            owner = self._find_account(account)
            grant = self._new_grant(app["client_id"], " ".join(scope.split()), owner)
            return self._issue(grant, grant.scope)

    @staticmethod
    def _scope_problem(scope: str | None) -> str | None:
        names = (scope or "").split()
        if not names:
            return "The authorization request must contain a scope."
        if any(name not in KNOWN_SCOPES for name in names):
            return "One or more scopes are not configured for the authorization server resource."
        return None

    # -- authorization endpoint --------------------------------------------------------------------

    def _authorize(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        if request.method == "GET":
            params = request.query
        elif request.method == "POST":
            params = {**request.query, **request.form()}
        else:
            return _html(405, pages.error_page("Method not allowed", "Use GET or POST."))
        entry["client_id"] = params.get("client_id")
        # Client and redirect URI problems are shown, never redirected: the redirect target is untrusted.
        app = self._app(params.get("client_id"))
        if app is None:
            return _html(
                400, pages.error_page("invalid_client", "Unknown client_id."), error="invalid_client"
            )
        if app["flow"] == "device":
            return _html(
                400,
                pages.error_page(
                    "unauthorized_client", "This application is configured for the device flow."
                ),
                error="unauthorized_client",
            )
        redirect_uri = params.get("redirect_uri")
        # CC staff: the redirect URI must match a registered one exactly.
        if redirect_uri is None or redirect_uri not in app["redirect_uris"]:
            return _html(400, pages.error_page("invalid_request", _INVALID_REDIRECT), error="invalid_request")

        state = params.get("state")

        def refuse(error: str, description: str) -> _Reply:
            location = _with_query(
                redirect_uri, {"error": error, "error_description": description, "state": state}
            )
            return _redirect(location, error=error)

        if params.get("response_type") != "code":
            return refuse(
                "unsupported_response_type", "The response type is not supported by the authorization server."
            )
        scope_problem = self._scope_problem(params.get("scope"))
        if scope_problem:
            return refuse("invalid_scope", scope_problem)
        scope = " ".join(params["scope"].split())
        challenge = params.get("code_challenge") or None
        if app["flow"] == "pkce" and not challenge:
            return refuse("invalid_request", "PKCE code challenge is required for this application.")
        if challenge and params.get("code_challenge_method") != "S256":
            return refuse("invalid_request", "'code_challenge_method' must be S256.")
        if challenge and not 43 <= len(challenge) <= 128:
            return refuse("invalid_request", "'code_challenge' must be 43 to 128 characters.")

        if request.method == "GET":
            fields = {
                name: params[name]
                for name in (
                    "client_id",
                    "redirect_uri",
                    "response_type",
                    "scope",
                    "state",
                    "code_challenge",
                    "code_challenge_method",
                )
                if params.get(name) is not None
            }
            return _html(
                200,
                pages.consent_page(
                    app_name=app["name"],
                    organization=self._signed_in.summary["organization_name"],
                    scope=scope,
                    action=AUTHORIZE_PATH,
                    fields=fields,
                    accounts=self._account_choices(),
                ),
            )

        owner, unknown = self._approving_account(params)
        if unknown:
            return unknown
        entry["account"] = owner.account_id
        decision = params.get("decision")
        if decision == "deny":
            return refuse("access_denied", "The resource owner or authorization server denied the request.")
        if decision != "allow":
            return _html(400, pages.error_page("invalid_request", "decision must be allow or deny."))
        now = time.monotonic()
        lifetime = self._config["code_lifetime"]
        for stale in [code for code, rec in self._codes.items() if now - rec.created > lifetime]:
            del self._codes[stale]
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(app["client_id"], redirect_uri, scope, challenge, now, owner)
        return _redirect(_with_query(redirect_uri, {"code": code, "state": state}))

    def _account_choices(self) -> list[tuple[str, str, bool]]:
        """(account id, organization, signed in?) for the consent pages' account choice."""
        return [
            (
                account.account_id,
                str(account.summary.get("organization_name", "")),
                account is self._signed_in,
            )
            for account in self._accounts
        ]

    def _approving_account(self, params: Mapping[str, str]) -> tuple[_Account, _Reply | None]:
        """The account a consent form approves for: its ``account`` field (a sandbox-only choice, as if
        another CC user signed in), else the account signed in (:meth:`sign_in`)."""
        chosen = params.get("account")
        if not chosen:
            return self._signed_in, None
        try:
            return self._find_account(chosen), None
        except LookupError as exc:
            page = pages.error_page("invalid_request", str(exc.args[0]))
            return self._signed_in, _html(400, page, error="invalid_request")

    # -- token endpoint ----------------------------------------------------------------------------

    def _oauth_params(self, request: _Request) -> tuple[dict[str, str], _Reply | None]:
        # CC staff examples put the parameters in the query string; clients also use a form body.
        params = dict(request.query)
        if request.body.strip():
            if _media_type(request.header("Content-Type")) != "application/x-www-form-urlencoded":
                return params, _oauth_error(
                    400, "invalid_request", "The request body must be application/x-www-form-urlencoded."
                )
            params.update(request.form())
        return params, None

    def _client(
        self, request: _Request, params: Mapping[str, str]
    ) -> tuple[dict[str, Any] | None, _Reply | None]:
        """Authenticate the caller: HTTP Basic for confidential apps, a ``client_id`` for public ones."""
        header = request.header("Authorization") or ""
        scheme, _, credentials = header.partition(" ")
        if header and scheme.lower() == "basic":
            try:
                client_id, _, secret = (
                    base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
                )
            except ValueError:
                return None, _oauth_error(401, "invalid_client", _INVALID_CLIENT)
            app = self._app(client_id)
            if (
                app is None
                or app["client_secret"] is None
                or not hmac.compare_digest(secret.encode(), app["client_secret"].encode())
            ):
                return None, _oauth_error(401, "invalid_client", _INVALID_CLIENT)
            if params.get("client_id") not in (None, client_id):
                return None, _oauth_error(400, "invalid_request", "client_id does not match the credentials.")
            return app, None
        app = self._app(params.get("client_id"))
        if app is None or app["client_secret"] is not None:
            # A confidential app must use HTTP Basic (CC: "on every call to the authorization server").
            return None, _oauth_error(401, "invalid_client", _INVALID_CLIENT)
        return app, None

    def _token(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        if request.method != "POST":
            return _oauth_error(405, "invalid_request", "The token endpoint accepts POST only.")
        params, problem = self._oauth_params(request)
        grant_type = params.get("grant_type")
        entry["grant_type"] = grant_type
        client_id = self._claimed_client_id(request, params)
        entry["client_id"] = client_id
        entry["account"] = self._token_request_account(params)
        self._token_calls[grant_type or ""] += 1
        now = time.monotonic()
        # CC staff: the token endpoint allows 1 request per second, counted per API key (the client_id
        # the request names, checked or not: a throttled call is not authenticated first).
        window = self._token_windows.setdefault(client_id or "", deque())
        if self._over_rate(window, self._config["token_rate"], now):
            return _json(429, _THROTTLED, error="throttled")
        window.append(now)
        fault = draw_fault(self._rng, self._config["token_faults"])
        entry["fault"] = fault
        if fault and fault not in PROCESSED_FAULTS:
            return fault_reply(self._rng, fault, oauth=True)
        reply = problem or self._grant(request, params, grant_type, now)
        timeout = self._config["timeout_seconds"]
        return garble(fault, reply, timeout_seconds=timeout, oauth=True) if fault else reply

    @staticmethod
    def _claimed_client_id(request: _Request, params: Mapping[str, str]) -> str | None:
        """The client_id a token request names (HTTP Basic user, else the ``client_id`` parameter)."""
        scheme, _, credentials = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except ValueError:
                return None
        return params.get("client_id")

    def _token_request_account(self, params: Mapping[str, str]) -> str | None:
        """The account a token request's code, refresh token or device code belongs to, for the log."""
        grant = self._grants.get(self._refresh_tokens.get(params.get("refresh_token") or "", ""))
        code = self._codes.get(params.get("code") or "")
        device = self._devices.get(params.get("device_code") or "")
        owner = (grant and grant.account) or (code and code.account) or (device and device.account)
        return owner.account_id if owner else None

    def _grant(self, request: _Request, params: dict[str, str], grant_type: str | None, now: float) -> _Reply:
        if grant_type not in _SUPPORTED_GRANTS:
            return _oauth_error(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        app, problem = self._client(request, params)
        if problem:
            return problem
        assert app is not None
        if grant_type not in _GRANTS_BY_FLOW[app["flow"]]:
            return _oauth_error(
                400, "unauthorized_client", "The client is not authorized to use the provided grant type."
            )
        if grant_type == "authorization_code":
            return self._code_grant(app, params, now)
        if grant_type == "refresh_token":
            return self._refresh_grant(app, params, now)
        return self._device_grant(app, params, now)

    def _code_grant(self, app: dict[str, Any], params: Mapping[str, str], now: float) -> _Reply:
        code = self._codes.get(params.get("code") or "")
        # CC staff: a code is valid for 5 minutes, once, with the redirect URI used to get it.
        if (
            code is None
            or code.used
            or code.client_id != app["client_id"]
            or now - code.created > self._config["code_lifetime"]
            or params.get("redirect_uri") != code.redirect_uri
        ):
            return _oauth_error(400, "invalid_grant", _INVALID_CODE)
        if code.code_challenge is not None:
            verifier = params.get("code_verifier") or ""
            if not hmac.compare_digest(_s256(verifier).encode(), code.code_challenge.encode()):
                return _oauth_error(400, "invalid_grant", "PKCE verification failed.")
        code.used = True
        grant = self._new_grant(app["client_id"], code.scope, code.account)
        return _json(200, self._issue(grant, grant.scope))

    def _refresh_grant(self, app: dict[str, Any], params: Mapping[str, str], now: float) -> _Reply:
        token = params.get("refresh_token")
        if not token:
            return _oauth_error(400, "invalid_request", "The refresh_token parameter is required.")
        grant = self._grants.get(self._refresh_tokens.get(token, ""))
        idle = self._config["refresh_token_idle_lifetime"]
        if grant is not None and idle is not None and now - grant.last_used > idle:
            # CC staff: either kind of refresh token dies when unused for 180 days.
            self._refresh_tokens.pop(token, None)
            grant = None
        if grant is None or grant.client_id != app["client_id"] or grant.refresh_token != token:
            return _oauth_error(400, "invalid_grant", _INVALID_REFRESH)
        scope = grant.scope
        if params.get("scope"):
            requested = params["scope"].split()
            if not set(requested) <= set(grant.scope.split()):
                return _oauth_error(400, "invalid_scope", "The requested scope exceeds the granted scope.")
            scope = " ".join(requested)
        if self._config["refresh_tokens"] == "rotating":
            # Rotating tokens are single use; only the newest one of a grant is ever valid.
            del self._refresh_tokens[token]
            grant.refresh_token = secrets.token_urlsafe(40)
            self._refresh_tokens[grant.refresh_token] = grant.grant_id
        grant.last_used = now
        return _json(200, self._issue(grant, scope))

    def _device_grant(self, app: dict[str, Any], params: Mapping[str, str], now: float) -> _Reply:
        device = self._devices.get(params.get("device_code") or "")
        if device is None or device.client_id != app["client_id"] or device.status == "consumed":
            return _oauth_error(400, "invalid_grant", "The device code is invalid or has expired.")
        if now >= device.expires_at:
            return _oauth_error(400, "expired_token", "The device code has expired.")
        too_soon = device.last_poll is not None and now - device.last_poll < self._config["device_interval"]
        device.last_poll = now
        if too_soon:
            return _oauth_error(400, "slow_down", "The client is polling too quickly and should back off.")
        if device.status == "pending":
            return _oauth_error(
                400, "authorization_pending", "The device authorization is pending. Please try again later."
            )
        if device.status == "denied":
            return _oauth_error(
                400, "access_denied", "The resource owner or authorization server denied the request."
            )
        device.status = "consumed"
        assert device.account is not None  # set when approved
        grant = self._new_grant(app["client_id"], device.scope, device.account)
        return _json(200, self._issue(grant, grant.scope))

    def _new_grant(self, client_id: str, scope: str, account: _Account) -> _Grant:
        # CC: offline_access is required to get a refresh token.
        refresh = secrets.token_urlsafe(40) if "offline_access" in scope.split() else None
        grant = _Grant(uuid.uuid4().hex, client_id, scope, refresh, time.monotonic(), account)
        self._grants[grant.grant_id] = grant
        if refresh:
            self._refresh_tokens[refresh] = grant.grant_id
        return grant

    def _issue(self, grant: _Grant, scope: str) -> dict[str, Any]:
        lifetime = self._config["token_lifetime"]
        access = self._access_token_value(grant.client_id, scope, lifetime)
        self._access_tokens[access] = _AccessToken(
            grant.client_id, scope, time.monotonic() + lifetime, grant.grant_id, grant.account
        )
        body = {
            "token_type": "Bearer",
            "expires_in": _seconds(lifetime),
            "access_token": access,
            "scope": scope,
        }
        if grant.refresh_token:
            body["refresh_token"] = grant.refresh_token
        return body

    def _access_token_value(self, client_id: str, scope: str, lifetime: float) -> str:
        # CC's access tokens are JWTs; clients may read `exp` without verifying, so mint the same shape.
        # The signature part is random: nothing can verify it, and the sandbox looks tokens up instead.
        now = int(time.time())
        issuer = f"{self.base_url}/oauth2/default" if self.port else "cc-sync-sandbox"
        header = {"kid": "cc-sync-sandbox", "alg": "RS256"}
        claims = {
            "ver": 1,
            "jti": "AT." + secrets.token_urlsafe(24),
            "iss": issuer,
            "aud": "https://api.cc.email/v3",
            "iat": now,
            "exp": now + _seconds(lifetime),
            "cid": client_id,
            "uid": "sandbox-user",
            "scp": scope.split(),
            "sub": "sandbox-user@example.com",
            "platform_user_id": "00000000-0000-4000-8000-000000000000",
        }
        return ".".join(
            (
                _b64url(json.dumps(header, separators=(",", ":")).encode()),
                _b64url(json.dumps(claims, separators=(",", ":")).encode()),
                secrets.token_urlsafe(32),
            )
        )

    # -- device flow -------------------------------------------------------------------------------

    def _device_authorize(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        if request.method != "POST":
            return _oauth_error(
                405, "invalid_request", "The device authorization endpoint accepts POST only."
            )
        # CC: parameters "in the request body or as query parameters".
        params, problem = self._oauth_params(request)
        if problem:
            return problem
        entry["client_id"] = params.get("client_id")
        app = self._app(params.get("client_id"))
        if app is None:
            return _oauth_error(401, "invalid_client", _INVALID_CLIENT)
        if app["flow"] != "device":
            return _oauth_error(
                400, "unauthorized_client", "The client is not configured for the device flow."
            )
        scope_problem = self._scope_problem(params.get("scope"))
        if scope_problem:
            return _oauth_error(400, "invalid_scope", scope_problem)
        now = time.monotonic()
        for code in [code for code, dev in self._devices.items() if now >= dev.expires_at]:
            self._user_codes.pop(self._devices.pop(code).user_code, None)
        user_code = self._new_user_code()
        device = _Device(
            device_code=secrets.token_urlsafe(32),
            user_code=user_code,
            client_id=app["client_id"],
            scope=" ".join(params["scope"].split()),
            expires_at=now + self._config["device_lifetime"],
        )
        self._devices[device.device_code] = device
        self._user_codes[user_code] = device.device_code
        verification_uri = self.base_url + DEVICE_PAGE_PATH
        return _json(
            200,
            {
                "device_code": device.device_code,
                "user_code": user_code,
                "verification_uri": verification_uri,
                "verification_uri_complete": _with_query(verification_uri, {"user_code": user_code}),
                "expires_in": _seconds(self._config["device_lifetime"]),
                "interval": self._config["device_interval"],
            },
        )

    def _new_user_code(self) -> str:
        while True:
            raw = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            code = f"{raw[:4]}-{raw[4:]}"
            if code not in self._user_codes:
                return code

    def _pending_device(self, user_code: str) -> _Device | None:
        raw = "".join(ch for ch in user_code.upper() if ch.isalnum())
        device = self._devices.get(self._user_codes.get(f"{raw[:4]}-{raw[4:]}", ""))
        if device is None or device.status != "pending" or time.monotonic() >= device.expires_at:
            return None
        return device

    def _decide_device(self, user_code: str, *, approve: bool, account: _Account | None = None) -> None:
        device = self._pending_device(user_code)
        if device is None:
            raise LookupError(f"no pending device authorization with user code {user_code!r}")
        device.status = "approved" if approve else "denied"
        device.account = account or self._signed_in

    def _device_page(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        organization = self._signed_in.summary["organization_name"]
        if request.method == "GET":
            user_code = request.query.get("user_code")
            if not user_code:
                return _html(200, pages.device_entry_page(DEVICE_PAGE_PATH))
            device = self._pending_device(user_code)
            if device is None:
                return _html(
                    400,
                    pages.device_entry_page(DEVICE_PAGE_PATH, "That code is invalid or has expired."),
                    error="invalid_user_code",
                )
            app = self._app(device.client_id)
            return _html(
                200,
                pages.device_consent_page(
                    app_name=app["name"] if app else device.client_id,
                    organization=organization,
                    scope=device.scope,
                    user_code=device.user_code,
                    action=DEVICE_PAGE_PATH,
                    accounts=self._account_choices(),
                ),
            )
        if request.method != "POST":
            return _html(405, pages.error_page("Method not allowed", "Use GET or POST."))
        form = request.form()
        decision = form.get("decision")
        if decision not in ("allow", "deny"):
            return _html(400, pages.error_page("invalid_request", "decision must be allow or deny."))
        owner, unknown = self._approving_account(form)
        if unknown:
            return unknown
        try:
            self._decide_device(form.get("user_code", ""), approve=decision == "allow", account=owner)
        except LookupError:
            return _html(
                400,
                pages.device_entry_page(DEVICE_PAGE_PATH, "That code is invalid or has expired."),
                error="invalid_user_code",
            )
        return _html(200, pages.device_done_page(decision == "allow"))
