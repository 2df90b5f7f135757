"""The ``CC_SYNC`` settings dict: defaults, lazy reads, one accessor.

Nothing else in cc_sync reads ``django.conf.settings`` for its own options. Every call reads
``settings.CC_SYNC`` afresh, so ``override_settings`` and pytest-django's ``settings`` fixture just work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.conf import settings

from .exceptions import CCSyncConfigurationError

# CC's production endpoints: https://developer.constantcontact.com/api_guide/server_flow.html
# (authorize/token) and https://developer.constantcontact.com/api_guide/v3_technical_overview.html (API).
_CC_AUTH_BASE = "https://authz.constantcontact.com/oauth2/default/v1"

REQUIRED = object()

DEFAULTS: dict[str, Any] = {
    # The CC application ("API key" in CC's developer portal is the OAuth client id).
    "CLIENT_ID": REQUIRED,
    "CLIENT_SECRET": "",
    # "authorization_code" (client secret, HTTP Basic) or "pkce" (no secret, S256 challenge).
    "OAUTH_FLOW": "authorization_code",
    # Must match a redirect URI registered on the CC application exactly. Empty: built from the
    # request as the admin callback URL.
    "REDIRECT_URI": "",
    "SCOPES": "contact_data offline_access account_read",
    "AUTHORIZE_URL": f"{_CC_AUTH_BASE}/authorize",
    "TOKEN_URL": f"{_CC_AUTH_BASE}/token",
    "DEVICE_AUTHORIZE_URL": f"{_CC_AUTH_BASE}/device/authorize",
    "API_URL": "https://api.cc.email/v3",
    # Fernet keys, newest first; older keys only decrypt. A comma-separated string is accepted too.
    "ENCRYPTION_KEYS": REQUIRED,
    # List ids every signup goes to; when empty, the lists chosen on the admin connection page.
    "LIST_IDS": [],
    # HTTP timeouts (seconds) for every call to CC.
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 20.0,
    # Refresh the access token when it expires within this many seconds.
    "TOKEN_LEEWAY": 300,
    # Refresh at least this often even when nobody signs up (refresh tokens die after 180 idle days).
    "KEEPALIVE_INTERVAL": 7 * 24 * 3600,
    # Request budgets shared by every process (CC counts per API key, not per worker).
    "API_RATE": 4.0,
    "TOKEN_RATE": 1.0,
    "DAILY_LIMIT": 10_000,
    # Once CC's daily quota is believed spent, one request per this many seconds checks whether it is back.
    "QUOTA_PROBE_INTERVAL": 3600,
    # Retries of transient failures: capped exponential backoff with full jitter.
    "RETRY_BASE": 2.0,
    "RETRY_MAX": 600.0,
    # A signup still failing transiently this long after it was submitted is marked failed.
    "DEADLINE": 3 * 24 * 3600,
    # A row claimed by a worker that died becomes due again after this many seconds.
    "LEASE": 120,
    # Waits up to this long ride on a Celery countdown; longer ones only on the sweeper.
    "MAX_COUNTDOWN": 300,
    # The sweeper re-publishes a due row whose last publish is older than this.
    "REQUEUE_AFTER": 300,
    "SWEEP_BATCH": 500,
    # The longest a web process waits at exit for its queued publishes (requests never wait for the broker).
    "PUBLISH_TIMEOUT": 1.0,
    # Celery queue for cc_sync's tasks (None: the default queue).
    "QUEUE": None,
    # Surge mode: when more signups are due than this (None: a minute of sending at API_RATE), or than the
    # day's remaining DAILY_LIMIT, they go to CC in bulk imports instead of one request each (docs/signups.md).
    "SURGE_IMPORT": True,
    "SURGE_THRESHOLD": None,
    # Privacy: key of the email hashes (default: SECRET_KEY; set it so hashes survive a SECRET_KEY rotation),
    # and days after which synced / failed signups lose their personal fields (None: keep).
    "HASH_KEY": "",
    "RETENTION_DAYS": 30,
    "FAILED_RETENTION_DAYS": 90,
    # The public form's defences. Limits are (count, seconds) through Django's cache: use a shared cache
    # with atomic increments (Redis, Memcached) when more than one process serves the site. None: off.
    "LIMIT_PER_IP": (5, 60),
    "LIMIT_PER_EMAIL": (1, 3600),
    # LIMIT_PER_IP counts an IPv6 client per network of this many bits (one host often owns a whole /64).
    "IPV6_PREFIX": 64,
    "HONEYPOT_FIELD": "website",
    "MAX_REQUEST_BYTES": 16 * 1024,
    # {"provider": "turnstile" | "recaptcha", "site_key": ..., "secret": ...}; None: no CAPTCHA.
    "CAPTCHA": None,
    # Contact safety. A stranger's submission never re-subscribes an unsubscribed contact: the person gets an
    # email with a signed link first. DOUBLE_OPT_IN sends that email for every new signup too.
    "DOUBLE_OPT_IN": False,
    # Seconds a confirmation link stays valid; an unconfirmed signup is marked failed after that.
    "CONFIRMATION_MAX_AGE": 7 * 24 * 3600,
    # Scheme and host of the confirmation links ("https://www.example.com"); empty: the page the form was on.
    "CONFIRM_URL_BASE": "",
    # The CC account has Confirmed Opt-In on: create new contacts through sign_up_form (a lookup first) so that
    # CC sends its own confirmation email; POST /contacts would not.
    "CONFIRMED_OPT_IN_AT_CC": False,
    # Map form fields to CC custom fields: {"form_field_name": "custom_field_id"}.
    "CUSTOM_FIELDS": {},
    # Dotted path to a callable(request, cleaned_data) -> list of list ids, deciding lists per submission.
    "LIST_CHOOSER": "",
    # Dotted path to a callable(request) -> Connection, its slug, or None (the default connection), deciding
    # which CC account a form's signups go to; "cc_sync.routing.connection_for_site" picks it by the site.
    "CONNECTION_CHOOSER": "",
    # The consent checkbox on the signup form.
    "CONSENT_TEXT": "Yes, send me email updates. I can unsubscribe at any time.",
    "CONSENT_VERSION": "1",
}


def get_setting(name: str) -> Any:
    """Return ``CC_SYNC[name]`` or its default; raise :class:`CCSyncConfigurationError` if it is missing."""
    if name not in DEFAULTS:
        raise CCSyncConfigurationError(f"cc_sync has no setting named {name!r}.")
    value = user_settings().get(name, DEFAULTS[name])
    if value is REQUIRED or (DEFAULTS[name] is REQUIRED and value in ("", None, [], ())):
        raise CCSyncConfigurationError(f"Set CC_SYNC[{name!r}] in your Django settings.")
    return value


def user_settings() -> dict[str, Any]:
    """The project's ``CC_SYNC`` dict (empty if unset)."""
    return getattr(settings, "CC_SYNC", None) or {}


def unknown_keys() -> list[str]:
    """Keys in ``CC_SYNC`` that cc_sync does not know (likely typos)."""
    return sorted(set(user_settings()) - set(DEFAULTS))


def timeout() -> tuple[float, float]:
    """The (connect, read) timeout pair passed to every HTTP call."""
    return (app_settings.CONNECT_TIMEOUT, app_settings.READ_TIMEOUT)


def list_setting(name: str) -> list[str]:
    """A list setting that may also be given as a comma-separated string (from the environment)."""
    return _split_list(get_setting(name))


T = TypeVar("T")


def _split_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [item.strip() for item in value if item and item.strip()]  # bytes items (Fernet keys) work too


def _optional(cast: Callable[[Any], T]) -> Callable[[Any], T | None]:
    return lambda value: None if value is None else cast(value)


def _as_is(value: Any) -> Any:
    # For settings whose users check the shape themselves and must fail closed, never with a 500.
    return value


def _pair(value: Any) -> tuple[int, int] | None:
    return None if not value else (int(value[0]), int(value[1]))


class _Setting(Generic[T]):
    """A typed, always-fresh accessor of one ``CC_SYNC`` key (``override_settings`` keeps working)."""

    def __init__(self, cast: Callable[[Any], T]) -> None:
        self.cast = cast

    def __set_name__(self, owner: type, name: str) -> None:
        if name not in DEFAULTS:
            raise TypeError(f"cc_sync has no setting named {name!r}.")
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> T:
        return self.cast(get_setting(self.name))


class AppSettings:
    """One typed accessor per setting, as django-allauth's ``app_settings``: ``app_settings.API_RATE`` is a float.

    Every access reads ``settings.CC_SYNC`` afresh. The system checks read the raw values with
    :func:`get_setting`, so that a wrong type is reported there, with an id, rather than at first use.
    """

    CLIENT_ID = _Setting(str)
    CLIENT_SECRET = _Setting(str)
    OAUTH_FLOW = _Setting(str)
    REDIRECT_URI = _Setting(str)
    SCOPES = _Setting(str)
    AUTHORIZE_URL = _Setting(str)
    TOKEN_URL = _Setting(str)
    DEVICE_AUTHORIZE_URL = _Setting(str)
    API_URL = _Setting(str)
    ENCRYPTION_KEYS = _Setting(_split_list)
    LIST_IDS = _Setting(_split_list)
    CONNECT_TIMEOUT = _Setting(float)
    READ_TIMEOUT = _Setting(float)
    TOKEN_LEEWAY = _Setting(float)
    KEEPALIVE_INTERVAL = _Setting(float)
    API_RATE = _Setting(float)
    TOKEN_RATE = _Setting(float)
    DAILY_LIMIT = _Setting(int)
    QUOTA_PROBE_INTERVAL = _Setting(float)
    RETRY_BASE = _Setting(float)
    RETRY_MAX = _Setting(float)
    DEADLINE = _Setting(float)
    LEASE = _Setting(float)
    MAX_COUNTDOWN = _Setting(float)
    REQUEUE_AFTER = _Setting(float)
    SWEEP_BATCH = _Setting(int)
    PUBLISH_TIMEOUT = _Setting(float)
    SURGE_IMPORT = _Setting(bool)
    SURGE_THRESHOLD = _Setting(_optional(int))
    QUEUE = _Setting(_optional(str))
    HASH_KEY = _Setting(str)
    RETENTION_DAYS = _Setting(_optional(float))
    FAILED_RETENTION_DAYS = _Setting(_optional(float))
    LIMIT_PER_IP = _Setting(_pair)
    LIMIT_PER_EMAIL = _Setting(_pair)
    IPV6_PREFIX = _Setting(int)
    HONEYPOT_FIELD = _Setting(str)
    MAX_REQUEST_BYTES = _Setting(int)
    CAPTCHA = _Setting(_as_is)  # checked by defences.captcha_config(), which fails closed
    DOUBLE_OPT_IN = _Setting(bool)
    CONFIRMATION_MAX_AGE = _Setting(float)
    CONFIRM_URL_BASE = _Setting(str)
    CONFIRMED_OPT_IN_AT_CC = _Setting(bool)
    CUSTOM_FIELDS = _Setting(dict)
    LIST_CHOOSER = _Setting(str)
    CONNECTION_CHOOSER = _Setting(str)
    CONSENT_TEXT = _Setting(str)
    CONSENT_VERSION = _Setting(str)


#: ``from cc_sync.conf import app_settings``; ``app_settings.LEASE`` is the lease in seconds, as a float.
app_settings = AppSettings()
