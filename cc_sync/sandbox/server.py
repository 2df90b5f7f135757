"""A local Constant Contact V3 emulator: CC's OAuth2 server plus the ``/v3`` calls cc_sync makes.

Start one with :class:`Sandbox`, point cc_sync at it with :meth:`Sandbox.cc_sync_settings`, and watch
contacts land at ``GET /``. It runs on the standard library alone (no Django), so it also works with
``python -m cc_sync.sandbox`` and inside any test suite.

What it emulates (paths are CC's own):

* ``GET|POST /oauth2/default/v1/authorize`` - consent page with Allow/Deny, code redirect, PKCE (S256).
* ``POST /oauth2/default/v1/token`` - ``authorization_code``, ``refresh_token`` (rotating or long-lived)
  and the device-code grant; parameters from the form body or the query string; 1 request/s limit.
* ``POST /oauth2/default/v1/device/authorize`` and ``GET|POST /device`` - the device flow.
* ``GET /v3/account/summary``, ``GET /v3/contact_lists`` (cursor paging), ``POST /v3/contacts/sign_up_form``
  (validated upsert keyed on the email or SMS number, with CC's permission rules), ``GET|POST /v3/contacts``
  and ``GET|PUT /v3/contacts/{contact_id}`` (see :mod:`cc_sync.sandbox.contacts`) - Bearer tokens,
  4 requests/s, 10,000 requests per quota day.
* ``POST /v3/activities/contacts_json_import`` (bulk upsert; new contacts get *implicit* permission),
  ``POST /v3/activities/add_list_memberships`` and ``GET /v3/activities/{activity_id}`` (initialized,
  processing, completed over ``import_polls`` polls); 429 past ``activity_queue_limit`` queued activities.
* Fault injection (5xx, timeouts, dropped connections, throttling, broken 200 bodies) with a seeded RNG.
* ``/_sandbox/...`` JSON control endpoints and ``GET /`` (an auto-refreshing HTML overview).

Behaviour follows CC's documentation where it exists - for the V3 API its published OpenAPI contract,
Swagger build 3.0.161 (docs/testing.md lists where the sandbox deliberately differs); where CC documents
nothing (error bodies of the token endpoint, device-flow poll errors) it follows RFC 6749 / RFC 8628 and
Okta, which runs CC's authorization server.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import random
import secrets
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlencode, urlsplit

from . import pages
from .contacts import ADD_LIST_MEMBERSHIPS_PATH, CONTACTS_PATH, SIGN_UP_PATH, ContactsMixin
from .replies import (
    _cc_errors,
    _html,
    _json,
    _media_type,
    _oauth_error,
    _redirect,
    _Reply,
    _Request,
    _with_query,
)
from .validation import (
    NOT_FOUND,
    VALIDATION_ERROR,
    validate_import_contact,
    validate_json_import,
)

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_APP",
    "DEFAULT_LISTS",
    "DEFAULT_SCOPE",
    "FAULTS",
    "Sandbox",
]

AUTHORIZE_PATH = "/oauth2/default/v1/authorize"
TOKEN_PATH = "/oauth2/default/v1/token"
DEVICE_AUTHORIZE_PATH = "/oauth2/default/v1/device/authorize"
DEVICE_PAGE_PATH = "/device"
API_PREFIX = "/v3"
IMPORT_PATH = "/v3/activities/contacts_json_import"
ACTIVITY_PREFIX = "/v3/activities/"
# CC: "If the request body exceeds 4 MB, this method only imports the first 4 MB and drops the remaining
# data" (createImportJSONActivity). Whether CC's megabyte is 10^6 or 2^20 bytes is not documented: the
# sandbox cuts at the smaller.
IMPORT_MAX_BYTES = 4_000_000
LISTS_MAX_LIMIT = 1000
CONTROL_PREFIX = "/_sandbox/"

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FLOWS = ("authorization_code", "pkce", "device")
REFRESH_TOKEN_TYPES = ("rotating", "long_lived")
DEFAULT_SCOPE = "contact_data offline_access account_read"
KNOWN_SCOPES = frozenset(pages.SCOPE_DESCRIPTIONS)

# Checked in this order against one uniform draw, so probabilities add up.
FAULTS = (
    "error_5xx",
    "timeout",
    "drop",
    "throttle",
    "html_200",
    "empty_200",
    "truncated_json",
    "missing_contact_id",
)
# Faults that happen after CC has done the work: only the answer is lost or garbled.
PROCESSED_FAULTS = frozenset({"timeout", "html_200", "empty_200", "truncated_json", "missing_contact_id"})

DEFAULT_APP: dict[str, Any] = {
    "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret",
    "redirect_uris": [
        "http://127.0.0.1:8000/admin/cc_sync/connection/callback/",
        "http://localhost:8000/admin/cc_sync/connection/callback/",
    ],
    "flow": "authorization_code",
    "name": "cc_sync sandbox app",
}
_LIST_TIMESTAMP = "2024-01-15T10:00:00.000Z"
DEFAULT_LISTS: list[dict[str, Any]] = [
    {"list_id": "07936f78-662a-11eb-af0a-fa163e56c9b0", "name": "General Interest"},
    {"list_id": "06526938-56dd-11e9-932a-fa163ea075fa", "name": "Newsletter"},
    {"list_id": "1fb28c36-56dd-11e9-932a-fa163ea075fa", "name": "Events"},
]
DEFAULT_ACCOUNT: dict[str, Any] = {
    "organization_name": "Sandbox Organization",
    "encoded_account_id": "sandbox-account",
}
_DEFAULT_SECRET = DEFAULT_APP["client_secret"]

_DEFAULT_CONFIG: dict[str, Any] = {
    "apps": [DEFAULT_APP],
    "refresh_tokens": "rotating",
    "token_lifetime": 86400,
    "code_lifetime": 300,
    "device_lifetime": 600,
    "device_interval": 5,
    "refresh_token_idle_lifetime": 180 * 86400,
    "token_rate": 1.0,
    "api_rate": 4,
    "daily_quota": 10000,
    "lists": DEFAULT_LISTS,
    "account": DEFAULT_ACCOUNT,
    "faults": {},
    "token_faults": {},
    "seed": 0,
    "timeout_seconds": 30.0,
    "delay": 0.0,
    "import_polls": 2,
    "list_activity_seconds": 1.0,
    "confirmed_opt_in": False,
    "activity_queue_limit": 1000,
    "quota_error_key": "quota_exceeded",
    "quota_reset_hour_utc": 0,
}
_APP_SHORTCUTS = ("client_id", "client_secret", "redirect_uris", "flow")
_APP_KEYS = frozenset({"client_id", "client_secret", "redirect_uris", "flow", "name"})
_LIST_KEYS = frozenset(
    {"list_id", "name", "description", "favorite", "created_at", "updated_at", "deleted_at"}
)
_GRANTS_BY_FLOW = {
    "authorization_code": frozenset({"authorization_code", "refresh_token"}),
    "pkce": frozenset({"authorization_code", "refresh_token"}),
    "device": frozenset({DEVICE_CODE_GRANT, "refresh_token"}),
}
_SUPPORTED_GRANTS = frozenset().union(*_GRANTS_BY_FLOW.values())
_LOG_LIMIT = 100_000
_CONTROL_ACTIONS = frozenset(
    {
        "configure",
        "expire_tokens",
        "reset",
        "reset_quota",
        "approve_device",
        "deny_device",
        "issue_tokens",
        "add_contact",
        "delete_list",
    }
)
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels or look-alikes, as Okta does

# Messages are Okta's (CC's authorization server) where known.
_INVALID_CLIENT = "Client authentication failed. Either the client or the client credentials are invalid."
_INVALID_CODE = "The authorization code is invalid or has expired."
_INVALID_REFRESH = "The refresh token is invalid or expired."
_INVALID_REDIRECT = "The 'redirect_uri' parameter must be a Login redirect URI in the client app settings."
_THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}
# CC's rate-limit page shows `quota_exceeded` / "Limit Exceeded"; no CC source confirms that key, hence the
# `quota_error_key` setting (None: the quota 429 looks exactly like throttling).
_QUOTA_MESSAGE = "Limit Exceeded"
_ACTIVITIES_429 = {
    "error_key": "too_many_requests",
    "error_message": "Too many requests. You exceeded 1,000 queued activities for this user account.",
}
_UNAUTHORIZED = {"error_key": "unauthorized", "error_message": "Unauthorized"}


# --------------------------------------------------------------------------------------------------
# Configuration


def _fail(message: str) -> NoReturn:
    raise ValueError(message)


def _number(config: dict[str, Any], name: str, *, minimum: float = 0.0, optional: bool = False) -> None:
    value = config[name]
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        _fail(f"{name} must be a number >= {minimum}" + (" or None" if optional else "") + f", not {value!r}")


def _rate(config: dict[str, Any], name: str) -> None:
    # 0 and None both switch a limit off.
    if config[name] == 0:
        config[name] = None
    _number(config, name, minimum=0.0, optional=True)


def _normalize_app(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        _fail(f"each app must be a dict, not {raw!r}")
    unknown = set(raw) - _APP_KEYS
    if unknown:
        _fail(f"unknown app key(s): {', '.join(sorted(unknown))}")
    app = {
        "client_id": raw.get("client_id"),
        "client_secret": raw.get("client_secret"),
        "redirect_uris": list(raw.get("redirect_uris") or []),
        "flow": raw.get("flow", "authorization_code"),
        "name": raw.get("name") or f"Sandbox app {raw.get('client_id')}",
    }
    if not isinstance(app["client_id"], str) or not app["client_id"]:
        _fail("each app needs a non-empty client_id")
    if app["flow"] not in FLOWS:
        _fail(f"flow must be one of {', '.join(FLOWS)}, not {app['flow']!r}")
    if not all(isinstance(uri, str) and uri for uri in app["redirect_uris"]):
        _fail("redirect_uris must be a list of URLs")
    if app["flow"] == "authorization_code" and not isinstance(app["client_secret"], str):
        _fail(f"app {app['client_id']!r} uses the authorization_code flow and needs a client_secret")
    if app["flow"] != "authorization_code" and app["client_secret"] is not None:
        _fail(f"app {app['client_id']!r} is a public ({app['flow']}) app: its client_secret must be None")
    return app


def _normalize_list(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        _fail(f"each list must be a dict with list_id and name, not {raw!r}")
    unknown = set(raw) - _LIST_KEYS
    if unknown:
        _fail(f"unknown list key(s): {', '.join(sorted(unknown))}")
    try:
        list_id = str(uuid.UUID(str(raw.get("list_id"))))
    except ValueError:
        _fail(f"list_id must be a UUID (CC's list ids are), not {raw.get('list_id')!r}")
    return {
        "list_id": list_id,
        "name": raw["name"],
        "description": raw.get("description", ""),
        "favorite": bool(raw.get("favorite", False)),
        "created_at": raw.get("created_at", _LIST_TIMESTAMP),
        "updated_at": raw.get("updated_at", raw.get("created_at", _LIST_TIMESTAMP)),
        # A list deleted at CC (Sandbox.delete_list): writes naming it answer 404.
        "deleted_at": raw.get("deleted_at"),
    }


def _normalize_faults(name: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        _fail(f"{name} must be a dict of fault name to probability")
    unknown = set(raw) - set(FAULTS)
    if unknown:
        _fail(f"unknown fault(s) in {name}: {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    faults = {}
    for fault, probability in raw.items():
        if (
            isinstance(probability, bool)
            or not isinstance(probability, (int, float))
            or not 0 <= probability <= 1
        ):
            _fail(f"{name}[{fault!r}] must be a probability from 0 to 1, not {probability!r}")
        if probability:
            faults[fault] = float(probability)
    return faults


def _build_config(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` to ``base`` and return the validated result; raise ValueError if invalid."""
    unknown = set(changes) - set(_DEFAULT_CONFIG) - set(_APP_SHORTCUTS)
    if unknown:
        _fail(
            f"unknown sandbox setting(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join([*_DEFAULT_CONFIG, *_APP_SHORTCUTS])}"
        )
    config = copy.deepcopy(dict(base))
    for name in _DEFAULT_CONFIG:
        if name in changes:
            config[name] = copy.deepcopy(changes[name])

    if not isinstance(config["apps"], list) or not config["apps"]:
        _fail("apps must be a non-empty list")
    apps = [dict(app) if isinstance(app, Mapping) else app for app in config["apps"]]
    shortcuts = {name: changes[name] for name in _APP_SHORTCUTS if name in changes}
    if shortcuts and isinstance(apps[0], dict):
        first = apps[0]
        if "flow" in shortcuts:
            first["flow"] = shortcuts["flow"]
            if "client_secret" not in shortcuts:
                confidential = shortcuts["flow"] == "authorization_code"
                first["client_secret"] = (
                    (first.get("client_secret") or _DEFAULT_SECRET) if confidential else None
                )
        for name in ("client_id", "client_secret", "redirect_uris"):
            if name in shortcuts:
                first[name] = shortcuts[name]
    config["apps"] = [_normalize_app(app) for app in apps]
    client_ids = [app["client_id"] for app in config["apps"]]
    if len(set(client_ids)) != len(client_ids):
        _fail("client_ids must be unique")

    if config["refresh_tokens"] not in REFRESH_TOKEN_TYPES:
        _fail(
            f"refresh_tokens must be one of {', '.join(REFRESH_TOKEN_TYPES)}, "
            f"not {config['refresh_tokens']!r}"
        )
    for name in ("token_lifetime", "code_lifetime", "device_lifetime"):
        _number(config, name, minimum=0.001)
    _number(config, "refresh_token_idle_lifetime", minimum=0.001, optional=True)
    for name in ("device_interval", "timeout_seconds", "delay"):
        _number(config, name)
    _number(config, "list_activity_seconds", optional=True)
    polls = config["import_polls"]
    if isinstance(polls, bool) or not isinstance(polls, int) or polls < 1:
        _fail(f"import_polls must be an integer >= 1, not {polls!r}")
    _rate(config, "token_rate")
    _rate(config, "api_rate")
    limit = config["activity_queue_limit"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        _fail(f"activity_queue_limit must be an integer >= 0 or None, not {limit!r}")
    hour = config["quota_reset_hour_utc"]
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        _fail(f"quota_reset_hour_utc must be an integer from 0 to 23, not {hour!r}")
    key = config["quota_error_key"]
    if key is not None and (not isinstance(key, str) or not key):
        _fail(f"quota_error_key must be a non-empty string or None, not {key!r}")
    if not isinstance(config["confirmed_opt_in"], bool):
        _fail(f"confirmed_opt_in must be True or False, not {config['confirmed_opt_in']!r}")
    quota = config["daily_quota"]
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
        _fail(f"daily_quota must be an integer >= 0 or None, not {quota!r}")

    if not isinstance(config["lists"], list):
        _fail("lists must be a list of {'list_id', 'name'} dicts")
    config["lists"] = [_normalize_list(item) for item in config["lists"]]
    list_ids = [item["list_id"] for item in config["lists"]]
    if len(set(list_ids)) != len(list_ids):
        _fail("list_ids must be unique")
    if not isinstance(config["account"], Mapping):
        _fail("account must be a dict")
    config["account"] = {**DEFAULT_ACCOUNT, **config["account"]}
    config["faults"] = _normalize_faults("faults", config["faults"])
    config["token_faults"] = _normalize_faults("token_faults", config["token_faults"])
    if not isinstance(config["seed"], (int, str, type(None))) or isinstance(config["seed"], bool):
        _fail("seed must be an int, a str or None")
    return config


# --------------------------------------------------------------------------------------------------
# Small helpers


def _iso(timestamp: float) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``, as CC writes timestamps."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(value: float) -> int:
    # Fractional lifetimes are for fast tests; the wire format carries whole seconds.
    return max(1, math.ceil(value))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    created: float
    used: bool = False


@dataclass
class _Grant:
    grant_id: str
    client_id: str
    scope: str
    refresh_token: str | None
    last_used: float


@dataclass
class _AccessToken:
    client_id: str
    scope: str
    expires_at: float
    grant_id: str


@dataclass
class _Device:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    status: str = "pending"  # pending, approved, denied, consumed
    last_poll: float | None = None


# --------------------------------------------------------------------------------------------------
# The sandbox


class Sandbox(ContactsMixin):
    """A Constant Contact emulator serving HTTP from a daemon thread.

    ``Sandbox(host, port, **settings)``; ``port=0`` picks a free port. Use it as a context manager or
    call :meth:`start` / :meth:`stop`. ``verbose=True`` prints one access-log line per request to stderr.

    Settings (constructor keywords, or :meth:`configure` at run time; defaults are CC's values):

    * ``apps`` - registered CC applications: dicts of ``client_id``, ``client_secret`` (None for
      public apps), ``redirect_uris``, ``flow`` (``authorization_code``, ``pkce`` or ``device``) and
      ``name``. Default: one confidential app, see :data:`DEFAULT_APP`. The shortcuts ``client_id``,
      ``client_secret``, ``redirect_uris`` and ``flow`` change the first app; switching it to a
      public flow drops its secret.
    * ``refresh_tokens`` - ``"rotating"`` (single use; only a grant's newest refresh token works) or
      ``"long_lived"`` (the same value comes back on every refresh).
    * ``token_lifetime`` (86400 s), ``code_lifetime`` (300 s), ``device_lifetime`` (600 s),
      ``device_interval`` (5 s), ``refresh_token_idle_lifetime`` (180 days; None = never).
      Fractions of a second are allowed for fast tests; ``expires_in`` is rounded up.
    * ``token_rate`` (1/s on the token endpoint, all clients together), ``api_rate`` (4/s on ``/v3``
      per client_id, sliding one-second window), ``daily_quota`` (10,000 accepted ``/v3`` requests
      per client_id per quota day). None or 0 switches a rate off; None switches the quota off.
    * ``lists`` (``{"list_id": uuid, "name"}`` dicts, default :data:`DEFAULT_LISTS`) and ``account``
      (the ``GET /v3/account/summary`` body, default :data:`DEFAULT_ACCOUNT`).
    * ``faults`` / ``token_faults`` - ``{name: probability}`` for ``/v3`` and the token endpoint; see
      :data:`FAULTS`. One seeded draw (``seed``, default 0) per request picks at most one fault.
      ``error_5xx``, ``drop`` and ``throttle`` stop the request before it is processed, so nothing
      is stored (or rotated). ``timeout``, ``html_200``, ``empty_200``, ``truncated_json`` and
      ``missing_contact_id`` happen after CC did the work: the contact *is* stored (and a refresh
      token rotated), only the answer is lost or garbled, so a retrying client must rely on the
      upsert. ``timeout`` answers normally after sleeping ``timeout_seconds`` (30).
    * ``delay`` - extra seconds before every ``/v3`` answer, to emulate CC's latency.
    * ``import_polls`` (2) - a bulk activity (import, add_list_memberships) is *processing* until it has
      been polled this many times, then it runs and is *completed*: contacts change only then, as with
      CC's background jobs.
    * ``list_activity_seconds`` (1.0) - an ``add_list_memberships`` activity also completes by itself this
      many seconds (of ``clock``) after it was created, polled or not: CC runs activities in the
      background, and cc_sync does not poll the one-contact activities it starts. None: only by polling.
    * ``activity_queue_limit`` (1000) - at most this many activities queued (not completed) at once; the
      next ``POST /v3/activities/...`` answers 429 (CC's Activities429ErrorResponse). None: no limit.
    * ``confirmed_opt_in`` (False) - the account's Confirmed Opt-In setting: when on, ``sign_up_form``
      gives *new* contacts ``pending_confirmation`` instead of ``explicit``.
    * ``quota_error_key`` (``"quota_exceeded"``) - the ``error_key`` of the daily-quota 429, which no CC
      source confirms; None answers exactly like throttling (``throttled``).
    * ``quota_reset_hour_utc`` (0) - the UTC hour at which the quota day rolls over.

    ``clock`` (constructor only) - a callable returning POSIX seconds, the sandbox's "now" for timestamps
    and the quota day (default :func:`time.time`); see :meth:`now`.

    All mutable state lives on this object and is guarded by one lock; handler threads only sleep
    (``delay``, ``timeout`` fault) after releasing it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
        clock: Callable[[], float] | None = None,
        **config: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self.clock: Callable[[], float] = clock or time.time
        self._lock = threading.Lock()
        self._config = _build_config(_DEFAULT_CONFIG, config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._clear()

    def _clear(self) -> None:
        self._contacts: dict[str, dict[str, Any]] = {}  # contact_id -> contact, in creation order
        self._emails: dict[str, str] = {}  # lower-cased address -> contact_id
        self._sms_numbers: dict[str, str] = {}  # digits of the SMS number -> contact_id
        self._activities: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, str] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._devices: dict[str, _Device] = {}
        self._user_codes: dict[str, str] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self._token_calls: Counter[str] = Counter()
        self._token_window: deque[float] = deque()
        self._api_windows: dict[str, deque[float]] = {}
        self._quota: dict[str, list[Any]] = {}
        self._rng = random.Random(self._config["seed"])

    # -- the sandbox's "now" -------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's current time (POSIX seconds) from ``clock``: timestamps and the quota day use it.

        Pass ``Sandbox(clock=...)`` (or set ``sandbox.clock``) to pin time in tests. Token lifetimes and
        rates run on the monotonic clock, unaffected.
        """
        return float(self.clock())

    def _now_iso(self) -> str:
        return _iso(self.now())

    def _quota_day(self) -> str:
        # The quota day rolls over at `quota_reset_hour_utc` (CC documents 00:00 UTC; clients should not
        # rely on it, so tests can move it).
        shifted = self.now() - self._config["quota_reset_hour_utc"] * 3600
        return datetime.fromtimestamp(shifted, timezone.utc).date().isoformat()

    def _quota_reply(self) -> _Reply:
        key = self._config["quota_error_key"]
        if key is None:
            return _json(429, _THROTTLED, error="throttled")
        return _json(429, {"error_key": key, "error_message": _QUOTA_MESSAGE}, error=key)

    def __repr__(self) -> str:
        return f"<Sandbox {self.base_url if self.running or self.port else 'not started'}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind the port and serve from a daemon thread; a stopped sandbox restarts on the same port."""
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"cc-sync-sandbox:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; requests still sleeping (delay, timeout) get no answer."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        shutdown = threading.Thread(target=server.shutdown, daemon=True)
        shutdown.start()
        # serve_forever() only notices the shutdown when select() returns: a throwaway connection
        # wakes it at once instead of after poll_interval, which keeps per-test sandboxes cheap.
        try:
            socket.create_connection((self._loopback_host(), self.port), timeout=1).close()
        except OSError:
            pass
        shutdown.join()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- URLs and settings -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (a wildcard bind address is shown as loopback)."""
        if not self.port:
            raise RuntimeError("the sandbox has no port yet: call start() first")
        host = self._loopback_host()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def _loopback_host(self) -> str:
        return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def authorize_url(self) -> str:
        """CC's authorization endpoint on this sandbox."""
        return self.base_url + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        """CC's token endpoint on this sandbox."""
        return self.base_url + TOKEN_PATH

    @property
    def device_authorize_url(self) -> str:
        """CC's device authorization endpoint on this sandbox."""
        return self.base_url + DEVICE_AUTHORIZE_PATH

    @property
    def api_url(self) -> str:
        """The V3 API base on this sandbox (CC's ``https://api.cc.email/v3``)."""
        return self.base_url + API_PREFIX

    def cc_sync_settings(self, client_id: str | None = None) -> dict[str, Any]:
        """The ``CC_SYNC`` entries that point cc_sync at this sandbox, for the default (or given) app.

        ``CLIENT_SECRET`` is ``""`` for public (pkce/device) apps, matching cc_sync's default.
        """
        with self._lock:
            app = self._app(client_id) if client_id else self._config["apps"][0]
            if app is None:
                raise ValueError(f"no app with client_id {client_id!r}")
            return {
                "AUTHORIZE_URL": self.authorize_url,
                "TOKEN_URL": self.token_url,
                "DEVICE_AUTHORIZE_URL": self.device_authorize_url,
                "API_URL": self.api_url,
                "CLIENT_ID": app["client_id"],
                "CLIENT_SECRET": app["client_secret"] or "",
            }

    # -- configuration and inspection --------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change settings at run time (validated first; ``faults`` dicts are replaced, not merged).

        Changing ``seed`` re-seeds the fault RNG. Raises ValueError for unknown or invalid settings.
        """
        with self._lock:
            config = _build_config(self._config, changes)
            self._config = config
            if "seed" in changes:
                self._rng = random.Random(config["seed"])

    def config(self) -> dict[str, Any]:
        """The current settings, client secrets included (a deep copy)."""
        with self._lock:
            return copy.deepcopy(self._config)

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: contacts, lists, request log, token-call counts, quota use and
        the settings without client secrets. ``GET /_sandbox/state`` returns the same."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        config = copy.deepcopy(self._config)
        for app in config["apps"]:
            app["confidential"] = app.pop("client_secret") is not None
        day = self._quota_day()
        return {
            "contacts": copy.deepcopy(list(self._contacts.values())),
            "activities": [copy.deepcopy(record["activity"]) for record in self._activities.values()],
            "lists": copy.deepcopy(self._config["lists"]),
            "requests": copy.deepcopy(list(self._log)),
            "token_calls": dict(self._token_calls),
            "quota": {client: used for client, (d, used) in self._quota.items() if d == day},
            "config": config,
        }

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (control calls and ``GET /`` are not logged)."""
        with self._lock:
            return copy.deepcopy(list(self._log))

    def contacts(self) -> list[dict[str, Any]]:
        """Stored contacts, in creation order."""
        with self._lock:
            self._settle_activities()
            return copy.deepcopy(list(self._contacts.values()))

    def activities(self) -> list[dict[str, Any]]:
        """Bulk activities (imports) as ``GET /v3/activities/{id}`` shows them, oldest first."""
        with self._lock:
            self._settle_activities()
            return [copy.deepcopy(record["activity"]) for record in self._activities.values()]

    def lists(self) -> list[dict[str, Any]]:
        """The account's contact lists."""
        with self._lock:
            return copy.deepcopy(self._config["lists"])

    def token_calls(self, grant_type: str | None = None) -> int:
        """How many token-endpoint calls arrived (rejected ones included), optionally of one grant type."""
        with self._lock:
            if grant_type is None:
                return sum(self._token_calls.values())
            return self._token_calls[grant_type]

    # -- test helpers ------------------------------------------------------------------------------

    def expire_access_tokens(self) -> int:
        """Expire every issued access token (the API answers 401); return how many there were."""
        with self._lock:
            for token in self._access_tokens.values():
                token.expires_at = float("-inf")
            return len(self._access_tokens)

    def approve_device(self, user_code: str) -> None:
        """Approve a pending device authorization, as the user would on ``/device``.

        Raises LookupError if the code is unknown, expired or already decided.
        """
        with self._lock:
            self._decide_device(user_code, approve=True)

    def deny_device(self, user_code: str) -> None:
        """Deny a pending device authorization (the next poll gets ``access_denied``)."""
        with self._lock:
            self._decide_device(user_code, approve=False)

    def issue_tokens(self, client_id: str | None = None, scope: str = DEFAULT_SCOPE) -> dict[str, Any]:
        """Mint a token pair as if the user had just connected; returns the token-endpoint response.

        Not counted as a token call and not logged.
        """
        with self._lock:
            app = self._app(client_id) if client_id else self._config["apps"][0]
            if app is None:
                raise ValueError(f"no app with client_id {client_id!r}")
            problem = self._scope_problem(scope)
            if problem:
                raise ValueError(problem)
            grant = self._new_grant(app["client_id"], " ".join(scope.split()))
            return self._issue(grant, grant.scope)

    def reset(self) -> None:
        """Forget contacts, codes, tokens, device authorizations, logs, counters and quota use.

        Settings and lists stay; the fault RNG is re-seeded so a reset sandbox replays the same faults.
        """
        with self._lock:
            self._clear()

    def reset_quota(self) -> None:
        """Start a new quota day now (the day also rolls over at ``quota_reset_hour_utc``, default 00:00 UTC)."""
        with self._lock:
            self._quota.clear()

    # -- request dispatch (called from handler threads) --------------------------------------------

    def _dispatch(self, request: _Request) -> _Reply:
        try:
            path = request.path
            if path == "/":
                if request.method != "GET":
                    return _json(405, {"error": "method_not_allowed"})
                with self._lock:
                    return _html(200, pages.index_page(self._snapshot(), self.base_url))
            if path.startswith(CONTROL_PREFIX):
                return self._control(request)
            route = self._route(path)
            if route is None:
                return _json(
                    404, {"error": "not_found", "error_description": f"No sandbox endpoint at {path}"}
                )
            kind, handler = route
            with self._lock:
                entry = {
                    "time": request.arrived,
                    "method": request.method,
                    "path": path,
                    "kind": kind,
                    "status": None,
                    "grant_type": None,
                    "email": None,
                    "detail": None,
                    "fault": None,
                    "error": None,
                }
                self._log.append(entry)
                self._settle_activities()
                reply = handler(request, entry)
                entry["status"] = None if reply.drop else reply.status
                entry["error"] = reply.error
                return reply
        except Exception:  # a sandbox bug must surface as a visible 500, not a hung client
            traceback.print_exc()
            return _json(500, {"error": "sandbox_error", "error_description": "Internal sandbox error"})

    def _route(self, path: str) -> tuple[str, Callable[[_Request, dict[str, Any]], _Reply]] | None:
        if path == AUTHORIZE_PATH:
            return "authorize", self._authorize
        if path == TOKEN_PATH:
            return "token", self._token
        if path == DEVICE_AUTHORIZE_PATH:
            return "device", self._device_authorize
        if path == DEVICE_PAGE_PATH:
            return "device", self._device_page
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return "api", self._api
        return None

    def _app(self, client_id: str | None) -> dict[str, Any] | None:
        for app in self._config["apps"]:
            if app["client_id"] == client_id:
                return app
        return None

    @staticmethod
    def _scope_problem(scope: str | None) -> str | None:
        names = (scope or "").split()
        if not names:
            return "The authorization request must contain a scope."
        if any(name not in KNOWN_SCOPES for name in names):
            return "One or more scopes are not configured for the authorization server resource."
        return None

    @staticmethod
    def _over_rate(window: deque[float], rate: float | None, now: float) -> bool:
        """Would one more request exceed ``rate`` in the sliding window of accepted ``window`` times?

        The window is one second, widened to ``1/rate`` seconds for rates below one per second.
        """
        if rate is None:
            return False
        span = max(1.0, 1.0 / rate)
        while window and window[0] <= now - span:
            window.popleft()
        return len(window) >= max(1, int(rate * span))

    def _draw_fault(self, faults: Mapping[str, float]) -> str | None:
        if not faults:
            return None
        draw, total = self._rng.random(), 0.0
        for name in FAULTS:
            total += faults.get(name, 0.0)
            if draw < total:
                return name
        return None

    def _fault_reply(self, fault: str, *, oauth: bool) -> _Reply:
        """The answer for a fault that stops the request before it is processed."""
        if fault == "drop":
            return _Reply(0, drop=True)
        if fault == "throttle":
            return _json(429, _THROTTLED, error="throttled")
        status = self._rng.choice((500, 502, 503))
        if status == 500:
            if oauth:
                return _oauth_error(500, "server_error", "The server encountered an internal error.")
            return _cc_errors(500, "server_error", "An internal server error occurred.")
        title = "502 Bad Gateway" if status == 502 else "503 Service Temporarily Unavailable"
        return _html(status, f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>")

    def _garble(self, fault: str, reply: _Reply, *, sign_up: bool = False, oauth: bool = False) -> _Reply:
        """Apply a fault that happens after processing to the real ``reply``."""
        if fault == "timeout":
            reply.wait += self._config["timeout_seconds"]
            return reply
        if fault == "html_200":
            return _html(
                200, "<html><body><h1>Constant Contact</h1><p>Please try again later.</p></body></html>"
            )
        if fault == "empty_200":
            return _Reply(200, b"")
        if fault == "truncated_json":
            return _Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        # missing_contact_id: a success answer, well-formed, without the field the client needs.
        if reply.status not in (200, 201):
            return reply
        body = json.loads(reply.body)
        if sign_up:
            return _json(reply.status, {"action": body["action"]})
        if oauth:
            return _json(200, {k: v for k, v in body.items() if k not in ("access_token", "refresh_token")})
        return _json(reply.status, {})

    # -- control endpoints -------------------------------------------------------------------------

    def _control(self, request: _Request) -> _Reply:
        name = request.path[len(CONTROL_PREFIX) :]
        if name == "state":
            if request.method != "GET":
                return _json(405, {"error": "use GET"})
            return _json(200, self.state())
        if name not in _CONTROL_ACTIONS:
            return _json(404, {"error": f"unknown control endpoint {request.path}"})
        if request.method != "POST":
            return _json(405, {"error": "use POST"})
        try:
            data = json.loads(request.body) if request.body.strip() else {}
        except ValueError:
            return _json(400, {"error": "the body must be JSON"})
        if not isinstance(data, dict):
            return _json(400, {"error": "the body must be a JSON object"})
        try:
            return _json(200, self._control_action(name, data))
        except LookupError as exc:
            return _json(404, {"error": str(exc.args[0] if exc.args else exc)})
        except (TypeError, ValueError) as exc:
            return _json(400, {"error": str(exc)})

    def _control_action(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        if name == "configure":
            self.configure(**data)
            return {"config": self.state()["config"]}
        if name == "expire_tokens":
            return {"expired": self.expire_access_tokens()}
        if name == "reset":
            self.reset()
        elif name == "reset_quota":
            self.reset_quota()
        elif name == "approve_device":
            self.approve_device(str(data.get("user_code", "")))
        elif name == "deny_device":
            self.deny_device(str(data.get("user_code", "")))
        elif name == "issue_tokens":
            return self.issue_tokens(data.get("client_id"), str(data.get("scope", DEFAULT_SCOPE)))
        elif name == "add_contact":
            fields = dict(data)
            email = fields.pop("email", None)
            if not isinstance(email, str):
                raise ValueError("add_contact needs an 'email'")
            return self.add_contact(email, **fields)
        elif name == "delete_list":
            return self.delete_list(str(data.get("list_id", "")))
        return {"ok": True}

    # -- authorization endpoint --------------------------------------------------------------------

    def _authorize(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        if request.method == "GET":
            params = request.query
        elif request.method == "POST":
            params = {**request.query, **request.form()}
        else:
            return _html(405, pages.error_page("Method not allowed", "Use GET or POST."))
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
        if redirect_uri not in app["redirect_uris"]:
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
                    organization=self._config["account"]["organization_name"],
                    scope=scope,
                    action=AUTHORIZE_PATH,
                    fields=fields,
                ),
            )

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
        self._codes[code] = _Code(app["client_id"], redirect_uri, scope, challenge, now)
        return _redirect(_with_query(redirect_uri, {"code": code, "state": state}))

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
        self._token_calls[grant_type or ""] += 1
        now = time.monotonic()
        # CC staff: the token endpoint allows 1 request per second.
        if self._over_rate(self._token_window, self._config["token_rate"], now):
            return _json(429, _THROTTLED, error="throttled")
        self._token_window.append(now)
        fault = self._draw_fault(self._config["token_faults"])
        entry["fault"] = fault
        if fault and fault not in PROCESSED_FAULTS:
            return self._fault_reply(fault, oauth=True)
        reply = problem or self._grant(request, params, grant_type, now)
        return self._garble(fault, reply, oauth=True) if fault else reply

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
        grant = self._new_grant(app["client_id"], code.scope)
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
        grant = self._new_grant(app["client_id"], device.scope)
        return _json(200, self._issue(grant, grant.scope))

    def _new_grant(self, client_id: str, scope: str) -> _Grant:
        # CC: offline_access is required to get a refresh token.
        refresh = secrets.token_urlsafe(40) if "offline_access" in scope.split() else None
        grant = _Grant(uuid.uuid4().hex, client_id, scope, refresh, time.monotonic())
        self._grants[grant.grant_id] = grant
        if refresh:
            self._refresh_tokens[refresh] = grant.grant_id
        return grant

    def _issue(self, grant: _Grant, scope: str) -> dict[str, Any]:
        lifetime = self._config["token_lifetime"]
        access = self._access_token_value(grant.client_id, scope, lifetime)
        self._access_tokens[access] = _AccessToken(
            grant.client_id, scope, time.monotonic() + lifetime, grant.grant_id
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

    def _decide_device(self, user_code: str, *, approve: bool) -> None:
        device = self._pending_device(user_code)
        if device is None:
            raise LookupError(f"no pending device authorization with user code {user_code!r}")
        device.status = "approved" if approve else "denied"

    def _device_page(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        organization = self._config["account"]["organization_name"]
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
                ),
            )
        if request.method != "POST":
            return _html(405, pages.error_page("Method not allowed", "Use GET or POST."))
        form = request.form()
        decision = form.get("decision")
        if decision not in ("allow", "deny"):
            return _html(400, pages.error_page("invalid_request", "decision must be allow or deny."))
        try:
            self._decide_device(form.get("user_code", ""), approve=decision == "allow")
        except LookupError:
            return _html(
                400,
                pages.device_entry_page(DEVICE_PAGE_PATH, "That code is invalid or has expired."),
                error="invalid_user_code",
            )
        return _html(200, pages.device_done_page(decision == "allow"))

    # -- the V3 API --------------------------------------------------------------------------------

    def _api(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        sign_up = request.path == SIGN_UP_PATH
        self._describe_api_request(request, entry)
        reply = self._api_checked(request, entry, sign_up)
        # `delay` emulates CC's latency on every /v3 answer, errors included.
        reply.wait += self._config["delay"]
        return reply

    @staticmethod
    def _describe_api_request(request: _Request, entry: dict[str, Any]) -> None:
        """Fill the log entry's ``email`` / ``detail`` so tests can tell requests apart."""
        if request.method == "GET" and request.path == CONTACTS_PATH:
            entry["email"] = request.query.get("email")
            return
        if request.method not in ("POST", "PUT"):
            return
        try:
            body = json.loads(request.body)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        email = body.get("email_address")
        if isinstance(email, dict):  # POST/PUT /v3/contacts: an EmailAddress object
            email = email.get("address")
        entry["email"] = email if isinstance(email, str) else None
        try:
            if request.path == IMPORT_PATH:
                entry["detail"] = f"{len(body['import_data'])} contacts"
            elif request.path == ADD_LIST_MEMBERSHIPS_PATH:
                source = body["source"]
                what = next(name for name in ("contact_ids", "list_ids") if source.get(name))
                entry["detail"] = f"{len(source[what])} {what} -> {len(body['list_ids'])} lists"
        except (KeyError, TypeError, StopIteration, AttributeError):
            pass

    def _api_checked(self, request: _Request, entry: dict[str, Any], sign_up: bool) -> _Reply:
        header = request.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        token = self._access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        now = time.monotonic()
        if token is None or now >= token.expires_at:
            return _json(401, _UNAUTHORIZED, error="unauthorized")

        # CC's limits are per API key (client_id), not per token or account.
        client_id = token.client_id
        day = self._quota_day()
        usage = self._quota.get(client_id)
        if usage is None or usage[0] != day:
            usage = self._quota[client_id] = [day, 0]
        quota = self._config["daily_quota"]
        if quota is not None and usage[1] >= quota:
            return self._quota_reply()
        window = self._api_windows.setdefault(client_id, deque())
        if self._over_rate(window, self._config["api_rate"], now):
            return _json(429, _THROTTLED, error="throttled")
        fault = self._draw_fault(self._config["faults"])
        entry["fault"] = fault
        if fault == "throttle":  # a throttled request is not an accepted one
            return self._fault_reply(fault, oauth=False)
        window.append(now)
        usage[1] += 1
        if fault and fault not in PROCESSED_FAULTS:
            return self._fault_reply(fault, oauth=False)
        reply = self._api_call(request, token, sign_up)
        return self._garble(fault, reply, sign_up=sign_up) if fault else reply

    def _api_route(self, path: str) -> tuple[tuple[str, ...], str, Callable[[_Request], _Reply]] | None:
        routes: dict[str, tuple[tuple[str, ...], str, Callable[[_Request], _Reply]]] = {
            "/v3/account/summary": (("GET",), "account_read", self._account_summary),
            "/v3/contact_lists": (("GET",), "contact_data", self._contact_lists),
            SIGN_UP_PATH: (("POST",), "contact_data", self._sign_up_form),
            CONTACTS_PATH: (("GET", "POST"), "contact_data", self._contacts_collection),
            IMPORT_PATH: (("POST",), "contact_data", self._contacts_json_import),
            ADD_LIST_MEMBERSHIPS_PATH: (("POST",), "contact_data", self._add_list_memberships),
        }
        if path in routes:
            return routes[path]
        if path.startswith(ACTIVITY_PREFIX):
            return ("GET",), "contact_data", self._activity
        if path.startswith(CONTACTS_PATH + "/") and "/" not in path[len(CONTACTS_PATH) + 1 :]:
            return ("GET", "PUT"), "contact_data", self._contact_item
        return None

    def _api_call(self, request: _Request, token: _AccessToken, sign_up: bool) -> _Reply:
        route = self._api_route(request.path)
        if route is None:
            return _cc_errors(404, "not_found", f"No resource at {request.path}.")
        methods, scope, handler = route
        if request.method not in methods:
            return _cc_errors(
                405, "method_not_allowed", f"{request.method} is not allowed on {request.path}."
            )
        if scope not in token.scope.split():
            return _cc_errors(403, "forbidden", f"The access token does not include the '{scope}' scope.")
        if request.method == "POST" and request.path.startswith(ACTIVITY_PREFIX):
            limit = self._config["activity_queue_limit"]
            if limit is not None and self._queued_activities() >= limit:
                # Activities429ErrorResponse: "You exceeded 1,000 queued activities for this user account."
                # The spec gives that response no body schema; the sandbox answers with the single-object
                # shape of CC's other 429s.
                return _json(429, _ACTIVITIES_429, error=_ACTIVITIES_429["error_key"])
        return handler(request)

    def _queued_activities(self) -> int:
        return sum(
            record["activity"]["state"] in ("initialized", "processing")
            for record in self._activities.values()
        )

    def _account_summary(self, request: _Request) -> _Reply:
        return _json(200, dict(self._config["account"]))

    def _contact_lists(self, request: _Request) -> _Reply:
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 0
        # The spec's text says 1-500 but its schema says `maximum: 1000` (build 3.0.161, getAllLists): the
        # schema is the contract a generated client enforces, so the sandbox accepts up to 1000.
        if not 1 <= limit <= LISTS_MAX_LIMIT:
            return _cc_errors(
                400, VALIDATION_ERROR, f"'limit' must be an integer from 1 to {LISTS_MAX_LIMIT}."
            )
        # "Accepts comma-separated status values": all, active, deleted.
        statuses = {value.strip() for value in query.get("status", "active").split(",")}
        if not statuses or not statuses <= {"all", "active", "deleted"}:
            return _cc_errors(400, VALIDATION_ERROR, "'status' must be one or more of all, active, deleted.")
        offset = 0
        if query.get("cursor"):
            try:
                prefix, _, number = base64.urlsafe_b64decode(query["cursor"] + "==").decode().partition(":")
                offset = int(number)
                if prefix != "offset" or offset < 0:
                    raise ValueError(query["cursor"])
            except ValueError:
                return _cc_errors(400, VALIDATION_ERROR, "'cursor' is invalid.")
        lists = [
            item
            for item in self._config["lists"]
            if "all" in statuses or ("deleted" if item.get("deleted_at") else "active") in statuses
        ]
        if "name" in query:
            lists = [item for item in lists if item["name"] == query["name"]]
        membership = query.get("include_membership_count")
        items = []
        for item in lists[offset : offset + limit]:
            entry = {
                key: item[key]
                for key in ("list_id", "name", "description", "favorite", "created_at", "updated_at")
            }
            if item.get("deleted_at"):
                entry["deleted_at"] = item["deleted_at"]
            if membership in ("all", "active"):
                entry["membership_count"] = sum(
                    item["list_id"] in contact["list_memberships"] for contact in self._contacts.values()
                )
            items.append(entry)
        body: dict[str, Any] = {"lists": items}
        if query.get("include_count", "").lower() == "true":
            body["lists_count"] = len(lists)
        if offset + limit < len(lists):
            cursor = _b64url(f"offset:{offset + limit}".encode())
            kept = [
                (name, query[name])
                for name in ("include_count", "include_membership_count", "name", "status")
                if name in query
            ]
            # CC's `next` href is a path starting with /v3/: clients prefix the server root.
            body["_links"] = {
                "next": {
                    "href": "/v3/contact_lists?" + urlencode([("cursor", cursor), ("limit", limit), *kept])
                }
            }
        return _json(200, body)

    # -- bulk import -------------------------------------------------------------------------------

    def _contacts_json_import(self, request: _Request) -> _Reply:
        media_type = _media_type(request.header("Content-Type"))
        if media_type != "application/json":
            return _cc_errors(
                415, "unsupported_media_type", f"Content type '{media_type or 'none'}' is not supported."
            )
        try:
            data = json.loads(request.body)
        except ValueError:
            return _cc_errors(400, "malformed_json", "The request body is not valid JSON.")
        errors = validate_json_import(data)
        if errors:
            return _cc_errors(400, VALIDATION_ERROR, *errors)
        missing = self._missing_lists(data["list_ids"])
        if missing:
            return missing
        dropped = 0
        if len(request.body) > IMPORT_MAX_BYTES:
            # CC: "If the request body exceeds 4 MB, this method only imports the first 4 MB and drops the
            # remaining data." Emulated as: only the contacts wholly inside the first 4 MB are imported.
            kept = _contacts_within(request.body, IMPORT_MAX_BYTES)
            dropped = len(data["import_data"]) - kept
            data["import_data"] = data["import_data"][:kept]
        now = self._now_iso()
        activity_id = str(uuid.uuid4())
        count = len(data["import_data"])
        activity = {
            "activity_id": activity_id,
            "state": "initialized",
            "created_at": now,
            "updated_at": now,
            "percent_done": 0,
            "activity_errors": [],
            "status": {
                "items_total_count": count,
                "person_count": count,
                "error_count": 0,
                "correctable_count": 0,
                "cannot_add_to_list_count": 0,
            },
            "_links": {"self": {"href": f"{ACTIVITY_PREFIX}{activity_id}"}},
        }
        self._activities[activity_id] = {
            "activity": activity,
            "data": data,
            "polls": 0,
            "kind": "contacts_json_import",
            "dropped": dropped,
        }
        return _json(201, activity)

    def _activity(self, request: _Request) -> _Reply:
        record = self._activities.get(request.path[len(ACTIVITY_PREFIX) :].lower())
        if record is None:
            return _cc_errors(404, NOT_FOUND, "Resource not found for the activity_id provided.")
        activity = record["activity"]
        if activity["state"] in ("initialized", "processing"):
            record["polls"] += 1
            needed = self._config["import_polls"]
            now = self._now_iso()
            if record["polls"] >= needed:
                self._complete_activity(record, now)
            else:
                activity["state"] = "processing"
                activity["started_at"] = activity.get("started_at") or now
                activity["percent_done"] = 100 * record["polls"] // needed
                activity["updated_at"] = now
        return _json(200, activity)

    def _complete_activity(self, record: dict[str, Any], now: str) -> None:
        activity = record["activity"]
        if record["kind"] == "add_list_memberships":
            self._run_add_list_memberships(record, now)
        else:
            self._run_import(record, now)
        activity.update(state="completed", percent_done=100, updated_at=now, completed_at=now)
        activity.setdefault("started_at", now)

    def _settle_activities(self) -> None:
        """Complete the list activities whose background time has passed (caller holds the lock)."""
        seconds = self._config["list_activity_seconds"]
        if seconds is None:
            return
        now = self.now()
        for record in self._activities.values():
            if (
                record["kind"] == "add_list_memberships"
                and record["activity"]["state"] in ("initialized", "processing")
                and record.get("created", now) + seconds <= now
            ):
                self._complete_activity(record, _iso(now))

    def _run_import(self, record: dict[str, Any], now: str) -> None:
        activity, data = record["activity"], record.pop("data")
        errors = []
        if record.get("dropped"):
            # CC drops the data silently; the sandbox says so, to make the cut visible in tests.
            errors.append(
                f"The request body exceeded 4 MB: {record['dropped']} contacts after the first 4 MB "
                "were not imported."
            )
        refused = 0
        permission = data.get("sms_permission_to_send") or "not_set"
        for line, item in enumerate(data["import_data"], start=1):
            problems = validate_import_contact(item)
            if problems:
                # CC's activity_errors are plain strings (spec build 3.0.161); its v2 API wrote "Line 2: ...".
                errors.append(f"Line {line}: {' '.join(problems)}")
                continue
            if not self._import_contact(item, data["list_ids"], permission, now):
                refused += 1
        activity["activity_errors"] = errors
        problems_count = len(errors) - bool(record.get("dropped"))
        activity["status"]["error_count"] = problems_count
        activity["status"]["correctable_count"] = problems_count
        activity["status"]["cannot_add_to_list_count"] = refused


def _contacts_within(body: bytes, limit: int) -> int:
    """How many items of the body's ``import_data`` end within its first ``limit`` bytes."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()

    def skip(position: int) -> int:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        return position

    position = skip(0) + 1  # past "{"
    while True:
        position = skip(position)
        key, position = decoder.raw_decode(text, position)
        position = skip(skip(position) + 1)  # past ":"
        if key != "import_data":
            _, position = decoder.raw_decode(text, position)
            position = skip(position) + 1  # past "," (or "}")
            continue
        position = skip(position + 1)  # past "["
        kept, used, mark = 0, 0, 0
        while text[position] != "]":
            _, end = decoder.raw_decode(text, position)
            used += len(text[mark:end].encode("utf-8"))
            mark = end
            if used > limit:
                return kept
            kept += 1
            position = skip(skip(end) + (text[skip(end)] == ","))
        return kept


# --------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes bursts of concurrent clients wait for SYN retries.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients giving up (read timeouts, the drop fault) are expected here, not errors.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two send() calls: with Nagle's algorithm on, a client that keeps the
    # connection alive (cc_sync reuses its session) would wait for its delayed ACK, ~40 ms per answer.
    disable_nagle_algorithm = True
    server_version = "cc-sync-sandbox"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        sandbox = self.server.sandbox
        with sandbox._lock:
            sandbox._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        sandbox = self.server.sandbox
        with sandbox._lock:
            sandbox._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        arrived = time.time()
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._write(
                _json(411, {"error": "length_required", "error_description": "Send a Content-Length."})
            )
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(_json(400, {"error": "invalid_request", "error_description": "Bad Content-Length."}))
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        sandbox = self.server.sandbox
        reply = sandbox._dispatch(_Request(self.command, url.path, query, self.headers, body, arrived))
        if reply.wait > 0 and sandbox._stopping.wait(reply.wait):
            reply.drop = True  # the sandbox stopped meanwhile: a stopped server answers nothing
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            # The client is gone (it timed out, or the sandbox is stopping).
            self.close_connection = True
