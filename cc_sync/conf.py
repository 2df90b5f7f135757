"""The ``CC_SYNC`` settings dict: defaults, lazy reads, one accessor.

Nothing else in cc_sync reads ``django.conf.settings`` for its own options. Every call reads
``settings.CC_SYNC`` afresh, so ``override_settings`` and pytest-django's ``settings`` fixture just work.
"""

from __future__ import annotations

from typing import Any

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
    # The longest a web request waits for the broker to take a publish (the sweeper catches up on the rest).
    "PUBLISH_TIMEOUT": 1.0,
    # Celery queue for cc_sync's tasks (None: the default queue).
    "QUEUE": None,
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
    return (float(get_setting("CONNECT_TIMEOUT")), float(get_setting("READ_TIMEOUT")))


def list_setting(name: str) -> list[str]:
    """A list setting that may also be given as a comma-separated string (from the environment)."""
    value = get_setting(name)
    if isinstance(value, str):
        value = value.split(",")
    return [item.strip() for item in value if item and item.strip()]  # bytes items (Fernet keys) work too
