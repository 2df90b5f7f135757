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
  and ``GET|PUT /v3/contacts/{contact_id}`` - Bearer tokens, 4 requests/s, 10,000 requests per quota day.
* ``POST /v3/activities/contacts_json_import`` (bulk upsert; new contacts get *implicit* permission),
  ``POST /v3/activities/add_list_memberships`` and ``GET /v3/activities/{activity_id}`` (initialized,
  processing, completed over ``import_polls`` polls); 429 past ``activity_queue_limit`` queued activities.
* Several accounts and applications: each account has its own lists, contacts and activities, each token
  is bound to the application that asked and the account that approved, and the limits are counted per
  application (CC counts per API key).
* Fault injection (5xx, timeouts, dropped connections, throttling, broken 200 bodies) with a seeded RNG.
* ``/_sandbox/...`` JSON control endpoints and ``GET /`` (an auto-refreshing HTML overview).

Behaviour follows CC's documentation where it exists - for the V3 API its published OpenAPI contract,
Swagger build 3.0.161 (docs/testing.md lists where the sandbox deliberately differs); where CC documents
nothing (error bodies of the token endpoint, device-flow poll errors) it follows RFC 6749 / RFC 8628 and
Okta, which runs CC's authorization server.

:class:`Sandbox` is composed of one part per concern, each in its own module:

* ``config`` - defaults and validation of the settings; ``state`` - the lock, the stores, the clock, snapshots;
* ``http_server`` and ``replies`` - HTTP plumbing; ``faults`` - fault injection;
* ``oauth_server`` - authorization and token endpoints, PKCE, device flow;
* ``api`` - the ``/v3`` front door (tokens, scopes, limits, routes); ``contacts`` (with ``contact_store``),
  ``lists`` and ``activities`` - the ``/v3`` endpoints; ``validation`` - CC's request schemas;
* ``accounts`` - adding accounts and applications, the account that approves, targeted faults;
* ``control`` - ``/_sandbox/...``; ``pages`` - the HTML pages.
"""

from __future__ import annotations

import socket
import threading
import traceback
from collections.abc import Callable
from typing import Any

# `X as X`: a name this module defined before the sandbox was split, still importable from here.
from . import control, pages
from .accounts import AccountsMixin
from .activities import ACTIVITY_PREFIX as ACTIVITY_PREFIX
from .activities import ADD_LIST_MEMBERSHIPS_PATH as ADD_LIST_MEMBERSHIPS_PATH
from .activities import IMPORT_MAX_BYTES as IMPORT_MAX_BYTES
from .activities import IMPORT_PATH as IMPORT_PATH
from .activities import ActivitiesMixin
from .api import API_PREFIX, ApiMixin
from .config import DEFAULT_ACCOUNT, DEFAULT_APP, DEFAULT_LISTS, DEFAULT_SCOPE
from .config import FLOWS as FLOWS
from .config import REFRESH_TOKEN_TYPES as REFRESH_TOKEN_TYPES
from .contacts import CONTACTS_PATH as CONTACTS_PATH
from .contacts import SIGN_UP_PATH as SIGN_UP_PATH
from .contacts import ContactsMixin
from .control import CONTROL_PREFIX
from .faults import FAULTS
from .faults import PROCESSED_FAULTS as PROCESSED_FAULTS
from .http_server import _Server
from .lists import LISTS_MAX_LIMIT as LISTS_MAX_LIMIT
from .lists import ListsMixin
from .oauth_server import (
    AUTHORIZE_PATH,
    DEVICE_AUTHORIZE_PATH,
    DEVICE_PAGE_PATH,
    TOKEN_PATH,
    OAuthServerMixin,
)
from .oauth_server import DEVICE_CODE_GRANT as DEVICE_CODE_GRANT
from .oauth_server import KNOWN_SCOPES as KNOWN_SCOPES
from .replies import _html, _json, _Reply, _Request
from .state import SandboxState

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_APP",
    "DEFAULT_LISTS",
    "DEFAULT_SCOPE",
    "FAULTS",
    "Sandbox",
]


class Sandbox(
    AccountsMixin, ApiMixin, ContactsMixin, ActivitiesMixin, ListsMixin, OAuthServerMixin, SandboxState
):
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
    * ``token_rate`` (1/s on the token endpoint per client_id), ``api_rate`` (4/s on ``/v3``
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

    Accounts and applications: the settings above describe the *default* ones (``apps[0]``, ``account``,
    ``lists``). :meth:`add_account` and :meth:`add_app` add more; :meth:`sign_in` (or the consent form's
    ``account`` field) picks the account that approves; :meth:`issue_tokens`, :meth:`contacts`,
    :meth:`lists`, :meth:`activities`, :meth:`add_contact`, :meth:`delete_list` and
    :meth:`approve_device` take ``account=``; :meth:`requests` filters by ``account`` / ``client_id``;
    :meth:`revoke_grant`, :meth:`expire_access_tokens`, :meth:`spend_quota` and :meth:`reset_quota` can
    hit one account or application.

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
        super().__init__(clock=clock, **config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

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
                return control.control_reply(self, request)
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
                    "client_id": None,
                    "account": None,
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
