"""The only module that speaks HTTP to Constant Contact.

One session factory, explicit (connect, read) timeouts on every call, every request paced through the
shared budget (:mod:`cc_sync.ratelimit`), and every HTTP status mapped to the exception that says what
to do next (:mod:`cc_sync.exceptions`). Nothing here logs or raises a token, secret or code.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, urljoin, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables

from . import __version__, ratelimit
from .conf import app_settings, timeout

if TYPE_CHECKING:
    from .models import Application
from .exceptions import (
    AccessTokenRejected,
    ActivityQueueFull,
    QuotaExceeded,
    ReconnectRequired,
    Rejected,
    RetryLater,
    Throttled,
)

logger = logging.getLogger("cc_sync.client")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Token-endpoint errors that mean the grant or the client itself is refused: retrying cannot help,
# an admin must act (RFC 6749 section 5.2; CC answers invalid_grant for a used or expired refresh token).
_REFUSED_GRANT_ERRORS = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}
_SECRET_KEYS = {
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "code_verifier",
    "client_secret",
    "device_code",
}
_MIN_SECRET_LENGTH = 4  # shorter values are no real secret, and masking them would garble the message
_SCRUB_CHARS = 20_000  # of an error body, scrubbed before the first 200 are kept
# A request CC throttled is sent once more in a later slot before the caller hears of the 429.
THROTTLED_RESENDS = 1
# A connection that answered less than this many seconds ago is taken to be still open (servers commonly
# close idle keep-alive connections after 5 s or more); an older or unused one may need a new TCP and TLS
# handshake before the request reaches CC, so its slot gets ratelimit.NEW_CONNECTION_HEADROOM.
KEPT_ALIVE_FOR = 4.0
_KEYS = "|".join(sorted(_SECRET_KEYS, key=len, reverse=True))
_FORM_SECRET = re.compile(rf"(?i)\b({_KEYS})=[A-Za-z0-9%._~+/=-]{{4,}}")
_JSON_SECRET = re.compile(rf'(?i)"({_KEYS})"\s*:\s*"[^"]{{4,}}"')
# Basic credentials are scrubbed by value (request_secrets); a generic "Basic <word>" would hit prose.
_CREDENTIALS = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}")


def create_session() -> requests.Session:
    """A ``requests.Session`` that names cc_sync in its User-Agent; each client makes one (see :func:`get_client`)."""
    session = requests.Session()
    session.headers.update({"User-Agent": f"cc-sync/{__version__}", "Accept": "application/json"})
    return session


def redact(value: Any) -> Any:
    """A copy of a decoded JSON value with every secret-bearing key masked."""
    if isinstance(value, dict):
        return {k: ("***" if k in _SECRET_KEYS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@sensitive_variables()
def request_secrets(request: requests.PreparedRequest | None) -> set[str]:
    """Every secret value a request carried: token-endpoint form fields and the Authorization credentials."""
    found: set[str] = set()
    if request is None:
        return found
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and not body.lstrip().startswith(("{", "[")):
        found.update(value for key, value in parse_qsl(body) if key in _SECRET_KEYS)
    scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
    if credentials.strip():
        found.add(credentials.strip())
        if scheme.lower() == "basic":  # "client_id:client_secret"; the id is not secret, the rest is
            try:
                found.add(base64.b64decode(credentials.strip()).decode("utf-8").partition(":")[2])
            except ValueError:
                pass
    return {value for value in found if len(value) >= _MIN_SECRET_LENGTH}


@sensitive_variables()
def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each secret masked by value (raw, URL-encoded, JSON- or HTML-escaped), and any
    credential-looking parameter (``refresh_token=...``, ``"code": "..."``, ``Bearer ...``) masked too.

    A proxy or gateway that echoes the request into its error page must not carry the live refresh token,
    code, verifier or client secret into ``last_error``, the logs or the admins' mail.
    """
    variants: set[str] = set()
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LENGTH:
            variants |= {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
            variants.add(html.escape(secret))
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, "***")
    text = _FORM_SECRET.sub(r"\1=***", text)
    text = _JSON_SECRET.sub(r'"\1": "***"', text)
    return _CREDENTIALS.sub(r"\1 ***", text)


def _scrub_json(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {scrub(str(k), secrets): _scrub_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_json(v, secrets) for v in value]
    return scrub(value, secrets) if isinstance(value, str) else value


@sensitive_variables()
def describe_error(
    response: requests.Response, secrets: Iterable[str] = ()
) -> tuple[str, str, list[dict[str, Any]]]:
    """``(error_key, message, errors)`` from a CC error response, whatever its shape.

    CC documents error bodies as a JSON array of ``{error_key, error_message}``
    (https://developer.constantcontact.com/api_guide/glossary_responses.html), but 429s are a single
    object, the token endpoint uses OAuth's ``{error, error_description}``, and gateways answer HTML.
    Every secret the request carried (see :func:`request_secrets`), and ``secrets``, are scrubbed from
    the text before anything is cut or described.
    """
    hidden = request_secrets(getattr(response, "request", None)) | set(secrets)
    try:
        body = response.json()
    except ValueError:
        text = scrub(response.text[:_SCRUB_CHARS], hidden)
        snippet = " ".join(text.split())[:200]
        content_type = response.headers.get("Content-Type", "no content type")
        return "", f"HTTP {response.status_code} ({content_type}): {snippet or 'empty body'}", []
    body = _scrub_json(redact(body), hidden)
    items = body if isinstance(body, list) else [body]
    errors = [item for item in items if isinstance(item, dict)]
    for item in errors:
        if "error" in item:  # OAuth shape
            item.setdefault("error_key", item["error"])
            item.setdefault("error_message", item.get("error_description", ""))
    error_key = next((str(e["error_key"]) for e in errors if e.get("error_key")), "")
    # Objects without an error field (a success body lacking ``contact_id``) fall back to the JSON itself.
    described = [
        str(e.get("error_message") or e["error_key"])
        for e in errors
        if e.get("error_message") or e.get("error_key")
    ]
    message = "; ".join(described) or json.dumps(body)[:200]
    return error_key, message, errors


def _activity_post(method: str, path: str) -> bool:
    """A bulk-activity POST, whose 429 means CC's queue of activities is full, not the request rate."""
    return method != "GET" and path.removeprefix("/v3").startswith("/activities/")


def _retry_after(response: requests.Response, minimum: float) -> float:
    # CC does not document Retry-After; honour it when present, but never retry sooner than `minimum`.
    try:
        return max(minimum, float(response.headers.get("Retry-After", minimum)))
    except ValueError:
        return minimum


class ConstantContactClient:
    """Calls to CC's token endpoint and V3 API, each mapped to cc_sync's exceptions."""

    def __init__(
        self, session: requests.Session | None = None, application: Application | None = None
    ) -> None:
        # No subclass hook: get_client() always builds this class. A session given here (tests) is used as is.
        self.session = session or create_session()
        self._application = application

    @property
    def application(self) -> Application:
        """The CC application this client speaks for: its own, or the settings' one (read at each use)."""
        from .models import Application

        return self._application or Application(app_settings.CLIENT_ID, app_settings.CLIENT_SECRET)

    # -- token endpoint -------------------------------------------------------------------------

    @sensitive_variables()
    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> dict[str, Any]:
        """Exchange an authorization code for a token response (``access_token``, ``refresh_token``...)."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            data["code_verifier"] = code_verifier
        return self._token_request(data)

    @sensitive_variables()
    def refresh(self, refresh_token: str, slot_reserved: bool = False) -> dict[str, Any]:
        """Spend ``refresh_token`` for a new token response.

        ``slot_reserved``: the caller already holds a committed slot of the token budget.
        """
        return self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, slot_reserved=slot_reserved
        )

    @sensitive_variables()
    def poll_device_token(self, device_code: str) -> dict[str, Any]:
        """One poll of the device grant; pending states raise :class:`ReconnectRequired` with their error key."""
        return self._token_request({"grant_type": DEVICE_GRANT, "device_code": device_code}, public=True)

    @sensitive_variables()
    def start_device_authorization(self, scopes: str) -> dict[str, Any]:
        """Start CC's device flow: ``device_code``, ``user_code``, ``verification_uri(_complete)``, ``interval``."""
        data = {"client_id": self.application.client_id, "scope": scopes}
        response = self._send("token", "POST", app_settings.DEVICE_AUTHORIZE_URL, data=data)
        return self._token_payload(response, required="device_code")

    @sensitive_variables()
    def _token_request(
        self, data: dict[str, str], public: bool = False, slot_reserved: bool = False
    ) -> dict[str, Any]:
        auth = None
        application = self.application
        if public or app_settings.OAUTH_FLOW != "authorization_code":
            # PKCE and device-flow applications have no secret; they identify with client_id.
            data = {**data, "client_id": application.client_id}
        else:
            auth = (application.client_id, application.client_secret)
        response = self._send(
            "token", "POST", app_settings.TOKEN_URL, slot_reserved=slot_reserved, data=data, auth=auth
        )
        # Named here as well as read back from response.request: a custom session may not keep the request.
        sent = [value for key, value in data.items() if key in _SECRET_KEYS]
        return self._token_payload(response, required="access_token", secrets=[*sent, *(auth or ())[1:]])

    @sensitive_variables()
    def _token_payload(
        self, response: requests.Response, required: str, secrets: Iterable[str] = ()
    ) -> dict[str, Any]:
        status = response.status_code
        if status == 429:
            raise Throttled(
                "The token endpoint is rate limited.",
                retry_after=_retry_after(response, 1.0),
                status_code=status,
                error_key="throttled",
            )
        if status >= 500 or status == 408:
            raise RetryLater("The token endpoint is unavailable.", status_code=status)
        if status >= 400:
            error_key, message, errors = describe_error(response, secrets)
            cls = (
                ReconnectRequired if error_key in _REFUSED_GRANT_ERRORS or status in (401, 403) else Rejected
            )
            raise cls(
                f"Constant Contact refused the token request: {error_key or 'error'}: {message}",
                status_code=status,
                error_key=error_key,
                errors=errors,
            )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not payload.get(required):
            raise RetryLater("The token endpoint answered without the expected JSON.", status_code=status)
        return payload

    # -- API ------------------------------------------------------------------------------------

    @sensitive_variables("access_token")
    def account_summary(self, access_token: str) -> dict[str, Any]:
        """``GET /account/summary`` (needs the ``account_read`` scope)."""
        return self._api_json("GET", "/account/summary", access_token)

    @sensitive_variables("access_token")
    def contact_lists(self, access_token: str) -> list[dict[str, Any]]:
        """Every contact list in the account, following ``_links.next`` pagination."""
        lists: list[dict[str, Any]] = []
        url: str | None = "/contact_lists"
        params: dict[str, Any] | None = {"limit": 500}
        while url:
            page = self._api_json("GET", url, access_token, params=params)
            lists.extend(page.get("lists", []))
            url = ((page.get("_links") or {}).get("next") or {}).get("href")
            params = None  # the next link carries its own query
        return lists

    @sensitive_variables("access_token")
    def sign_up_form(self, access_token: str, payload: dict[str, Any]) -> tuple[str, bool]:
        """``POST /contacts/sign_up_form``: create or update a contact; return ``(contact_id, created)``.

        Success means 200 (updated) or 201 (created) *and* a JSON body with a ``contact_id``: CC has
        answered 200 with an HTML maintenance page before, and that must never count as synced.
        """
        response = self._api("POST", "/contacts/sign_up_form", access_token, json_body=payload)
        try:
            body = response.json()
        except ValueError:
            body = None
        contact_id = body.get("contact_id") if isinstance(body, dict) else None
        if response.status_code not in (200, 201) or not isinstance(contact_id, str) or not contact_id:
            _key, message, _errors = describe_error(response)
            raise RetryLater(
                f"Unexpected answer to sign_up_form: {message}", status_code=response.status_code
            )
        return contact_id, response.status_code == 201

    @sensitive_variables("access_token")
    def create_contact(self, access_token: str, body: dict[str, Any]) -> str | None:
        """``POST /contacts``: create a new contact; return its id, or ``None`` if the email already exists.

        Unlike ``sign_up_form``, this never touches an existing contact: CC answers 409 for any address
        it knows, unsubscribed and deleted contacts included
        (https://developer.constantcontact.com/api_guide/contacts_create.html).
        """
        try:
            response = self._api("POST", "/contacts", access_token, json_body=body)
        except RetryLater as err:
            if err.status_code == 409:
                return None
            raise
        try:
            created = response.json()
        except ValueError:
            created = None
        contact_id = created.get("contact_id") if isinstance(created, dict) else None
        if response.status_code != 201 or not isinstance(contact_id, str) or not contact_id:
            # A gateway's HTML page with 200 must never count as a created contact.
            _key, message, _errors = describe_error(response)
            raise RetryLater(
                f"Unexpected answer to POST /contacts: {message}", status_code=response.status_code
            )
        return contact_id

    @sensitive_variables("access_token")
    def find_contact(self, access_token: str, email: str) -> dict[str, Any] | None:
        """The contact with this email (``GET /contacts?email=…&status=all``), deleted ones included, or None."""
        page = self._api_json(
            "GET",
            "/contacts",
            access_token,
            params={"email": email, "status": "all", "include": "list_memberships"},
        )
        contacts = page.get("contacts")
        if not isinstance(contacts, list):
            # "Not found" must be an empty list: an answer without one proves nothing, and reading it as
            # "no such contact" would send a stranger's details to sign_up_form.
            raise RetryLater(
                f"Constant Contact answered the contact lookup without a contacts list: {json.dumps(page)[:200]}"
            )
        for contact in contacts:
            if not isinstance(contact, dict) or not contact.get("contact_id"):
                continue
            address = (contact.get("email_address") or {}).get("address") or ""
            if address.lower() == email.lower():
                return contact
        return None

    @sensitive_variables("access_token")
    def contacts_page(self, access_token: str, params: dict[str, Any], next_href: str = "") -> dict[str, Any]:
        """One page of ``GET /contacts``: the first with ``params``, a later one from CC's ``_links.next.href``."""
        if next_href:
            if not next_href.startswith("/v3/contacts?"):  # never follow a link elsewhere with the token
                raise Rejected(f"Unexpected pagination link from Constant Contact: {next_href[:200]!r}")
            return self._api_json("GET", next_href, access_token)
        return self._api_json("GET", "/contacts", access_token, params=params)

    @sensitive_variables("access_token")
    def add_list_memberships(self, access_token: str, contact_id: str, list_ids: list[str]) -> dict[str, Any]:
        """``POST /activities/add_list_memberships`` for one contact: lists only, details and permission untouched."""
        return self._api_json(
            "POST",
            "/activities/add_list_memberships",
            access_token,
            json_body={"source": {"contact_ids": [contact_id]}, "list_ids": list_ids},
        )

    @sensitive_variables("access_token")
    def _api_json(self, method: str, path: str, access_token: str, **kwargs: Any) -> dict[str, Any]:
        response = self._api(method, path, access_token, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RetryLater(f"Unexpected answer to {method} {path}.", status_code=response.status_code)
        return body

    @sensitive_variables()
    def _api(
        self,
        method: str,
        path: str,
        access_token: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> requests.Response:
        api_url = app_settings.API_URL.rstrip("/")
        if path.startswith("/v3/"):
            # Pagination links are server-relative ("/v3/contact_lists?cursor=..."): resolve against the host.
            parts = urlsplit(api_url)
            url = urljoin(f"{parts.scheme}://{parts.netloc}", path)
        else:
            url = api_url + path
        headers = {"Authorization": f"Bearer {access_token}"}
        data = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(json_body)
        quota_wait: float | None = None
        budget = self.application.budget("api")
        for attempt in range(THROTTLED_RESENDS + 1):
            response = self._send("api", method, url, params=params, data=data, headers=headers)
            if response.status_code != 429:
                break
            refusal_key = describe_error(response, [access_token])[0]
            if _activity_post(method, path) and refusal_key != "quota_exceeded":
                break  # a full activity queue (below), not a sign of the rate or the quota
            # CC's error key alone does not decide: no CC source confirms `quota_exceeded`, so a run of 429s
            # while our pacing is kept means the quota as well (ratelimit.record_429).
            quota_wait = ratelimit.record_429(refusal_key, name=budget)
            if quota_wait is not None or attempt == THROTTLED_RESENDS:
                break
            # Throttled: the limiter backs off and the request goes out again in a later slot (CC did not
            # process it), so a signup does not pay for a 429 that the pacing let happen.
            logger.info("Constant Contact throttled %s %s; it is sent again in a later slot.", method, path)
        status = response.status_code
        if status < 300 or (400 <= status < 500 and status not in (401, 403, 429)):
            # CC processed this request, so its daily quota is not spent. A 401 or 403 may come from a layer
            # that answers before the quota is counted: it proves nothing either way.
            ratelimit.record_accepted(budget)
        if status < 300:
            return response
        error_key, message, errors = describe_error(response, [access_token])
        context: dict[str, Any] = {"status_code": status, "error_key": error_key, "errors": errors}
        if status == 401:
            raise AccessTokenRejected(f"Constant Contact refused the access token: {message}", **context)
        if status == 403:
            raise ReconnectRequired(
                f"Constant Contact refused access (missing scope or privilege, or the "
                f"application was deactivated): {message}",
                **context,
            )
        if status == 429:
            if _activity_post(method, path) and quota_wait is None:
                # On bulk-activity POSTs CC's spec gives 429 one meaning: more than 1,000 activities are queued
                # (Activities429ErrorResponse in https://developer.constantcontact.com/api_reference/index.html).
                # Minutes, not seconds, and no sign of the daily quota.
                raise ActivityQueueFull(
                    f"Constant Contact has more than 1,000 queued activities for this account: {message}",
                    retry_after=_retry_after(response, 60.0),
                    **context,
                )
            if quota_wait is not None:
                raise QuotaExceeded(
                    f"Constant Contact's daily quota is believed spent: {message}",
                    retry_after=quota_wait,
                    **{**context, "error_key": "quota_exceeded"},
                )
            raise Throttled(
                f"Constant Contact throttled the request: {message}",
                retry_after=_retry_after(response, 1.0),
                **context,
            )
        if status in (408, 409) or status >= 500:
            # 409 on sign_up_form means simultaneous edits of the same contact: try again later.
            raise RetryLater(f"Constant Contact could not take the request now: {message}", **context)
        raise Rejected(f"Constant Contact rejected the request: {message}", **context)

    @sensitive_variables()
    def _send(
        self, budget: str, method: str, url: str, slot_reserved: bool = False, **kwargs: Any
    ) -> requests.Response:
        # Everything that can be done before the slot is (building the request, reading the environment's
        # proxy settings): what happens between the end of the wait and CC's front end is what the pacing's
        # margin has to cover (cc_sync.ratelimit).
        try:
            prepared = self.session.prepare_request(requests.Request(method, url, **kwargs))
            options = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
        except Exception as err:
            raise RetryLater(f"Could not build the request ({type(err).__name__}).") from None
        host = urlsplit(url).netloc
        headroom = 0.0 if self._connection_kept(host) else ratelimit.NEW_CONNECTION_HEADROOM
        if budget == "api":
            ratelimit.wait_for_slot(
                self.application.budget("api"), app_settings.API_RATE, app_settings.DAILY_LIMIT, headroom
            )
        elif not slot_reserved:
            ratelimit.wait_for_slot(
                self.application.budget("token"), app_settings.TOKEN_RATE, headroom=headroom
            )
        try:
            response = self.session.send(prepared, timeout=timeout(), **options)
        # Only the exception's type is kept, and the chain is cut (`from None`): messages and tracebacks
        # of the HTTP stack can carry the request (headers with tokens, bodies with codes and secrets).
        except requests.Timeout as err:
            raise RetryLater(f"Constant Contact did not answer in time ({type(err).__name__}).") from None
        except Exception as err:
            raise RetryLater(f"Could not reach Constant Contact ({type(err).__name__}).") from None
        _answered_at(self.session)[host] = time.monotonic()
        logger.debug("%s %s -> %s", method, urlsplit(url).path, response.status_code)
        return response

    def _connection_kept(self, host: str) -> bool:
        """Whether the session answered from ``host`` recently enough that its connection is likely still open."""
        answered = _answered_at(self.session).get(host)
        return answered is not None and time.monotonic() - answered < KEPT_ALIVE_FOR

    # -- bulk activities (manage.py cc_sync_backfill) ----------------------------------------------

    @sensitive_variables("access_token")
    def import_contacts_json(
        self, access_token: str, contacts: list[dict[str, Any]], list_ids: list[str]
    ) -> dict[str, Any]:
        """``POST /activities/contacts_json_import``: start a bulk import; return CC's activity object.

        At most 40,000 contacts and under 4 MB per request; new contacts get *implicit* permission
        (https://developer.constantcontact.com/api_guide/import_contacts.html).
        """
        body = self._api_json(
            "POST",
            "/activities/contacts_json_import",
            access_token,
            json_body={"import_data": contacts, "list_ids": list_ids},
        )
        if not isinstance(body.get("activity_id"), str) or not body["activity_id"]:
            raise RetryLater("Constant Contact accepted the import without an activity id.")
        return body

    @sensitive_variables("access_token")
    def activity(self, access_token: str, activity_id: str) -> dict[str, Any]:
        """``GET /activities/{activity_id}``: the state, ``percent_done`` and errors of a bulk activity."""
        if not activity_id.replace("-", "").isalnum():  # CC's ids are UUIDs; never build a path from junk
            raise Rejected(f"Not a Constant Contact activity id: {activity_id[:64]!r}")
        return self._api_json("GET", f"/activities/{activity_id}", access_token)


_clients = threading.local()
# The last answer from each host, per session: a connection idle for longer may have been closed by the server.
_answers: weakref.WeakKeyDictionary[requests.Session, dict[str, float]] = weakref.WeakKeyDictionary()


def _answered_at(session: requests.Session) -> dict[str, float]:
    return _answers.setdefault(session, {})


def get_client(application: Application | None = None) -> ConstantContactClient:
    """This process's and thread's client for ``application`` (default: the settings' one), so that its
    session keeps connections to CC alive between tasks.

    A new session per request halved the throughput of a bare loop against the sandbox (docs/benchmarks.md),
    and against CC each new connection adds a TLS handshake. A forked worker child (or another thread) gets
    its own clients: sockets are never shared between processes or threads. Connections with their own
    application get a client each per application (its credentials and its rate-limit budget), sharing the
    default client's session.
    """
    pid = os.getpid()
    if getattr(_clients, "pid", None) != pid:
        _clients.pid, _clients.client, _clients.others = pid, ConstantContactClient(), {}
    if application is None or not application.own:
        return _clients.client
    client = _clients.others.get(application)
    if client is None:
        client = _clients.others[application] = ConstantContactClient(_clients.client.session, application)
    return client
