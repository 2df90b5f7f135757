"""System checks, ids ``cc_sync.E0xx`` (errors) and ``cc_sync.W0xx`` (warnings); one function per concern.

A setting the signup path would trip over (a CAPTCHA provider cc_sync does not know, a list id that is
not a UUID, a ``LIST_CHOOSER`` that cannot be imported) is an error here, at ``manage.py check`` (run by
``migrate``, ``runserver`` and deploy scripts), instead of a 500 on the public form or signups that CC
refuses one by one. The ids are stable: docs/settings.md lists them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ValidationError
from django.db import connections as databases
from django.db import router
from django.utils.module_loading import import_string

from . import crypto
from .conf import DEFAULTS, get_setting, list_setting, unknown_keys, user_settings
from .exceptions import CCSyncConfigurationError

FLOWS = ("authorization_code", "pkce", "device")
UNSHARED_CACHES = ("LocMemCache", "DummyCache", "FileBasedCache", "DatabaseCache")
URL_SETTINGS = ("AUTHORIZE_URL", "TOKEN_URL", "DEVICE_AUTHORIZE_URL", "API_URL")
#: Numbers that must be above 0 (a rate, a timeout, a lease of 0 would stall or spin).
POSITIVE_NUMBERS = (
    "API_RATE",
    "TOKEN_RATE",
    "DAILY_LIMIT",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "LEASE",
    "RETRY_BASE",
    "RETRY_MAX",
    "DEADLINE",
    "SWEEP_BATCH",
    "PUBLISH_TIMEOUT",
    "MAX_REQUEST_BYTES",
    "CONFIRMATION_MAX_AGE",
    "QUOTA_PROBE_INTERVAL",
)
#: Numbers that may be 0.
NON_NEGATIVE_NUMBERS = ("TOKEN_LEEWAY", "KEEPALIVE_INTERVAL", "MAX_COUNTDOWN", "REQUEUE_AFTER")
#: Numbers where None means "off".
OPTIONAL_NUMBERS = ("RETENTION_DAYS", "FAILED_RETENTION_DAYS", "SURGE_THRESHOLD")
CAPTCHA_KEYS = ("site_key", "secret")

Messages = list[CheckMessage]


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (never a bool or a string), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return float(value)


def _plain(err: ValidationError) -> str:
    return " ".join(str(message) for message in err.messages)


@register()
def check_credentials(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E001 no ``CLIENT_ID``; E002 no ``CLIENT_SECRET`` for the authorization-code flow; E004 unknown flow."""
    messages: Messages = []
    configured = user_settings()
    flow = configured.get("OAUTH_FLOW", DEFAULTS["OAUTH_FLOW"])
    if not configured.get("CLIENT_ID"):
        messages.append(
            Error(
                "CC_SYNC['CLIENT_ID'] is not set.",
                hint="Use the API key of your application in Constant Contact's developer portal.",
                id="cc_sync.E001",
            )
        )
    if flow == "authorization_code" and not configured.get("CLIENT_SECRET"):
        messages.append(
            Error(
                "CC_SYNC['CLIENT_SECRET'] is not set.",
                hint=(
                    "Generate a client secret for the application, or set OAUTH_FLOW to 'pkce' or "
                    "'device' for an application without one."
                ),
                id="cc_sync.E002",
            )
        )
    if flow not in FLOWS:
        messages.append(Error(f"CC_SYNC['OAUTH_FLOW'] must be one of {', '.join(FLOWS)}.", id="cc_sync.E004"))
    return messages


@register()
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E003: ``ENCRYPTION_KEYS`` missing or not Fernet keys."""
    try:
        crypto.check_keys()
    except CCSyncConfigurationError as err:
        return [
            Error(
                "CC_SYNC['ENCRYPTION_KEYS'] is missing or invalid.",
                hint=f"{err} Keys are read from settings or the environment, never the database.",
                id="cc_sync.E003",
            )
        ]
    return []


_stored_tokens_exempt: ContextVar[bool] = ContextVar("cc_sync_stored_tokens_exempt", default=False)


@contextmanager
def stored_tokens_check_skipped() -> Iterator[None]:
    """Run Django's checks without E007: cc_sync's own commands are how unreadable tokens get reported
    (``cc_sync_status``) or fixed (``cc_sync_generate_key``, ``cc_sync_connect``), and erasing a person must
    not wait for a key either."""
    token = _stored_tokens_exempt.set(True)
    try:
        yield
    finally:
        _stored_tokens_exempt.reset(token)


@register()
def check_stored_tokens(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E007: stored tokens that none of the configured keys decrypts (a dropped key, a foreign fixture).

    Silent when there is nothing to read: no database configured or reachable, or no table yet (before
    ``migrate``, which runs the checks first). Missing or malformed keys are E003's to report.
    """
    from .fields import unreadable_fields
    from .models import Connection

    if _stored_tokens_exempt.get():
        return []
    try:
        crypto.check_keys()
    except CCSyncConfigurationError:
        return []
    try:
        alias = router.db_for_read(Connection)
        if Connection._meta.db_table not in databases[alias].introspection.table_names():
            return []
        stored = list(Connection.objects.using(alias).order_by("pk"))
    except Exception:  # no database (dummy backend, server down, tests without one): nothing to check
        return []
    return [
        Error(
            f"The stored Constant Contact {' and '.join(unreadable)} of the connection {connection.slug!r} "
            "cannot be decrypted with any key in CC_SYNC['ENCRYPTION_KEYS'].",
            hint=(
                "Restore the old key (after the new one) and run `manage.py cc_sync_rotate_keys`, or click "
                "Reconnect on the admin's Constant Contact connection page. Signups are kept meanwhile."
            ),
            id="cc_sync.E007",
        )
        for connection in stored
        if (unreadable := unreadable_fields(connection))
    ]


@register()
def check_unknown_keys(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E005: keys in ``CC_SYNC`` that cc_sync does not know (typos)."""
    if unknown_keys():
        return [
            Error(
                f"CC_SYNC has unknown keys: {', '.join(unknown_keys())}.",
                hint="Check the spelling against the settings documentation.",
                id="cc_sync.E005",
            )
        ]
    return []


@register()
def check_numbers(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E006: a numeric setting that is not a number, or out of its range."""
    configured = user_settings()
    messages: Messages = []

    def bad(name: str, what: str) -> None:
        messages.append(
            Error(
                f"CC_SYNC['{name}'] must be {what}; it is {configured.get(name, DEFAULTS[name])!r}.",
                hint=f"Write a number (not a string), for example the default {DEFAULTS[name]!r}.",
                id="cc_sync.E006",
            )
        )

    for name in POSITIVE_NUMBERS + NON_NEGATIVE_NUMBERS + OPTIONAL_NUMBERS + ("IPV6_PREFIX",):
        if name not in DEFAULTS:
            continue
        value = configured.get(name, DEFAULTS[name])
        number = _number(value)
        if name in OPTIONAL_NUMBERS and value is None:
            continue
        if name == "IPV6_PREFIX":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 128:
                bad(name, "a whole number of bits from 1 to 128")
        elif name in POSITIVE_NUMBERS and (number is None or number <= 0):
            bad(name, "a positive number")
        elif name not in POSITIVE_NUMBERS and (number is None or number < 0):
            bad(name, "a number of at least 0" + (" (or None)" if name in OPTIONAL_NUMBERS else ""))
    return messages


@register()
def check_captcha(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E008: ``CAPTCHA`` is not a dict or names an unknown provider; E009: its keys are missing."""
    from .defences import CAPTCHA_PROVIDERS

    config = user_settings().get("CAPTCHA")
    if not config:
        return []
    providers = ", ".join(repr(name) for name in CAPTCHA_PROVIDERS)
    example = '{"provider": "turnstile", "site_key": "...", "secret": "..."}'
    if not isinstance(config, dict) or config.get("provider") not in CAPTCHA_PROVIDERS:
        provider = config.get("provider") if isinstance(config, dict) else config
        return [
            Error(
                f"CC_SYNC['CAPTCHA'] names no CAPTCHA provider cc_sync knows ({provider!r}).",
                hint=f"Set it to a dict such as {example}, with provider one of {providers}; or None.",
                id="cc_sync.E008",
            )
        ]
    missing = [key for key in CAPTCHA_KEYS if not isinstance(config.get(key), str) or not config[key].strip()]
    if missing:
        return [
            Error(
                f"CC_SYNC['CAPTCHA'] has no {' and no '.join(missing)}.",
                hint=(
                    f"Copy the site key and the secret key from your {config['provider']} dashboard into "
                    "'site_key' and 'secret' (the secret from the environment, not the code)."
                ),
                id="cc_sync.E009",
            )
        ]
    return []


def _dotted_callable(name: str, hint: str, check_id: str) -> Messages:
    """An error when ``CC_SYNC[name]`` is set but is not the dotted path of an importable callable."""
    path = user_settings().get(name) or ""
    if not path:
        return []
    if not isinstance(path, str):
        return [Error(f"CC_SYNC[{name!r}] must be a dotted path, not {path!r}.", hint=hint, id=check_id)]
    try:
        chooser = import_string(path)
    except ImportError as err:
        return [Error(f"CC_SYNC[{name!r}] {path!r} cannot be imported: {err}", hint=hint, id=check_id)]
    if not callable(chooser):
        return [Error(f"CC_SYNC[{name!r}] {path!r} is not callable.", hint=hint, id=check_id)]
    return []


@register()
def check_list_chooser(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E010: ``LIST_CHOOSER`` is not the dotted path of an importable callable."""
    hint = (
        "Set it to the dotted path of a function taking (request, cleaned_data) and returning a list of "
        "list ids, for example 'myproject.signups.choose_lists'; or ''."
    )
    return _dotted_callable("LIST_CHOOSER", hint, "cc_sync.E010")


@register()
def check_connection_chooser(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E015: ``CONNECTION_CHOOSER`` is not the dotted path of an importable callable."""
    hint = (
        "Set it to the dotted path of a function taking the request and returning a Connection, its slug "
        "or None, for example 'cc_sync.routing.connection_for_site'; or ''."
    )
    return _dotted_callable("CONNECTION_CHOOSER", hint, "cc_sync.E015")


@register()
def check_custom_fields(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E011: ``CUSTOM_FIELDS`` is not a dict of form field name -> CC custom field id (UUID)."""
    from .validators import validate_custom_field_id

    mapping = user_settings().get("CUSTOM_FIELDS", {})
    hint = (
        "CUSTOM_FIELDS maps a form field's name to the custom_field_id (a UUID) that CC shows for it "
        "(GET /v3/contact_custom_fields), e.g. {'favourite_colour': '07936f78-662a-11eb-af0a-fa163e56c9b0'}; "
        "the bulk import's column names are not ids."
    )
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        return [
            Error(
                f"CC_SYNC['CUSTOM_FIELDS'] must be a dict, not {type(mapping).__name__}.",
                hint=hint,
                id="cc_sync.E011",
            )
        ]
    problems = []
    for name, field_id in mapping.items():
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(f"{name!r} is not a form field name")
            continue
        try:
            validate_custom_field_id(field_id)
        except ValidationError:
            problems.append(f"{name!r} maps to {field_id!r}, which is not a custom field id (a UUID)")
    return [
        Error(f"CC_SYNC['CUSTOM_FIELDS']: {problem}.", hint=hint, id="cc_sync.E011") for problem in problems
    ]


@register()
def check_limits(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E012: a ``LIMIT_*`` setting that is neither None nor a (count, seconds) pair of positive whole numbers."""
    messages: Messages = []
    configured = user_settings()
    for name in sorted(key for key in DEFAULTS if key.startswith("LIMIT_")):
        value = configured.get(name, DEFAULTS[name])
        if value is None:
            continue
        valid = (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(part, int) and not isinstance(part, bool) and part > 0 for part in value)
        )
        if not valid:
            messages.append(
                Error(
                    f"CC_SYNC['{name}'] must be None or a (count, seconds) pair of positive whole numbers; "
                    f"it is {value!r}.",
                    hint=f"For example {DEFAULTS[name]!r} (that many submissions per that many seconds), or None "
                    "to turn the limit off.",
                    id="cc_sync.E012",
                )
            )
    return messages


@register()
def check_list_ids(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E013: ``LIST_IDS`` holds something that is not a CC list id, or more than 50 lists."""
    from .validators import validate_list_ids

    if not user_settings().get("LIST_IDS"):
        return []
    try:
        validate_list_ids(list_setting("LIST_IDS"))
    except ValidationError as err:
        return [
            Error(
                f"CC_SYNC['LIST_IDS'] is not valid: {_plain(err)}",
                hint=(
                    "Set 1 to 50 list ids (UUIDs, as GET /v3/contact_lists shows them), or leave it empty "
                    "and choose the lists on the admin's Constant Contact connection page."
                ),
                id="cc_sync.E013",
            )
        ]
    except (TypeError, CCSyncConfigurationError) as err:
        return [Error(f"CC_SYNC['LIST_IDS'] is not valid: {err}", id="cc_sync.E013")]
    return []


#: The extra of cc-sync that installs the client library of a broker transport (kombu's URL schemes).
BROKER_EXTRAS = {
    "redis": "cc-sync[redis]",
    "rediss": "cc-sync[redis]",
    "sentinel": "cc-sync[redis]",
    "amqp": "cc-sync[rabbitmq]",
    "amqps": "cc-sync[rabbitmq]",
    "pyamqp": "cc-sync[rabbitmq]",
    "sqs": "cc-sync[sqs]",
}


def broker_url() -> str:
    """The project's Celery broker URL (``CELERY_BROKER_URL``, the documented ``namespace="CELERY"``), or ''."""
    url = getattr(settings, "CELERY_BROKER_URL", None) or getattr(settings, "BROKER_URL", None) or ""
    if isinstance(url, (list, tuple)):  # failover brokers: the first one is used first
        url = url[0] if url else ""
    return str(url).split(";")[0].strip()


@register()
def check_broker_transport(app_configs: Any = None, **kwargs: Any) -> Messages:
    """E014: the client library of the configured broker is not installed.

    Celery installs no broker client: with ``redis://`` and no ``redis`` package the worker dies at start
    with ``No module named 'packaging'`` (kombu's Redis transport), and web processes cannot publish, while
    everything else looks fine. Loading the transport the way the worker does finds that out here.
    """
    url = broker_url()
    if not url:
        return []
    from kombu import Connection

    scheme = urlsplit(url).scheme.split("+")[0].lower() or url.split(":", 1)[0].lower()
    try:
        _ = Connection(url).transport  # imports the transport module and checks for its client library
    except ImportError as err:
        extra = BROKER_EXTRAS.get(scheme)
        install = f'pip install "{extra}"' if extra else f"install the Celery extra for {scheme}:// brokers"
        return [
            Error(
                f"The client library of the Celery broker in CELERY_BROKER_URL ({scheme}://) is not installed "
                f"({err}).",
                hint=f"Install its client library: {install}. Without it no worker starts and no signup is sent.",
                id="cc_sync.E014",
            )
        ]
    except Exception:  # an unknown scheme or a malformed URL: Celery's own error says more
        return []
    return []


#: Schemes of brokers that redeliver a message a worker holds unacknowledged for longer than a limit.
VISIBILITY_TIMEOUT_SCHEMES = ("redis", "rediss", "sentinel", "sqs")
RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")
#: Celery's visibility timeout on Redis and SQS when the transport options name none, in seconds.
DEFAULT_VISIBILITY_TIMEOUT = 3600
#: RabbitMQ's ``consumer_timeout`` since 3.8.17, in seconds (a server setting cc_sync cannot read).
RABBITMQ_CONSUMER_TIMEOUT = 1800


@register()
def check_broker_holding_time(app_configs: Any = None, **kwargs: Any) -> Messages:
    """W005: a sync message may be held unacknowledged for longer than the broker allows.

    With late acknowledgement a worker holds a message from delivery until its task ends: through its
    countdown (at most ``MAX_COUNTDOWN``) and its run (bounded by ``LEASE``). Redis and SQS hand a message
    held longer than the visibility timeout to another worker, again and again; RabbitMQ closes the worker's
    channel once a delivery is unacknowledged for ``consumer_timeout`` (PRECONDITION_FAILED), and Celery
    stops the worker.
    """
    url = broker_url()
    scheme = urlsplit(url).scheme.split("+")[0].lower()
    countdown, lease = _number(get_setting("MAX_COUNTDOWN")), _number(get_setting("LEASE"))
    if countdown is None or lease is None:
        return []  # E006 reports them
    held = countdown + lease
    if scheme in VISIBILITY_TIMEOUT_SCHEMES:
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
        limit = _number(options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT))
        if limit is not None and limit <= held:
            return [
                Warning(
                    f"The broker's visibility_timeout ({limit:g} s) is not above CC_SYNC['MAX_COUNTDOWN'] + "
                    f"CC_SYNC['LEASE'] ({held:g} s): waiting sync messages are delivered again and again.",
                    hint="Raise CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'] (an hour is fine) or "
                    "lower MAX_COUNTDOWN.",
                    id="cc_sync.W005",
                )
            ]
    if scheme in RABBITMQ_SCHEMES and held >= RABBITMQ_CONSUMER_TIMEOUT:
        return [
            Warning(
                f"CC_SYNC['MAX_COUNTDOWN'] + CC_SYNC['LEASE'] ({held:g} s) reach RabbitMQ's default "
                f"consumer_timeout ({RABBITMQ_CONSUMER_TIMEOUT} s): RabbitMQ would close the channel of a worker "
                "holding a waiting sync message.",
                hint="Lower MAX_COUNTDOWN (longer waits stay in the database for the sweeper), or raise "
                "consumer_timeout in rabbitmq.conf and silence this warning.",
                id="cc_sync.W005",
            )
        ]
    return []


@register(deploy=True)
def check_https(app_configs: Any = None, **kwargs: Any) -> Messages:
    """W001 (``REDIRECT_URI``) and W002 (CC's endpoints): http where tokens or codes travel.

    A deploy check (``manage.py check --deploy``): only the local sandbox should be plain http.
    """
    messages: Messages = []
    configured = user_settings()
    redirect_uri = configured.get("REDIRECT_URI") or ""
    if redirect_uri and urlsplit(str(redirect_uri)).scheme != "https":
        messages.append(
            Warning(
                "CC_SYNC['REDIRECT_URI'] is not https.",
                hint="The authorization code travels in this URL; serve it over https.",
                id="cc_sync.W001",
            )
        )
    plain = [
        name for name in URL_SETTINGS if urlsplit(str(configured.get(name) or "https:")).scheme != "https"
    ]
    if plain:
        messages.append(
            Warning(
                f"CC_SYNC URLs are not https: {', '.join(plain)}.",
                hint="Tokens travel over these URLs; only the local sandbox should use http.",
                id="cc_sync.W002",
            )
        )
    return messages


@register()
def check_limit_cache(app_configs: Any = None, **kwargs: Any) -> Messages:
    """W004: form limits counted in a cache that is not shared between processes or not atomic."""
    limits = []
    for name in ("LIMIT_PER_IP", "LIMIT_PER_EMAIL"):
        try:
            if get_setting(name):
                limits.append(name)
        except CCSyncConfigurationError:
            continue
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if limits and not settings.DEBUG and backend.rsplit(".", 1)[-1] in UNSHARED_CACHES:
        return [
            Warning(
                f"cc_sync's form limits ({', '.join(limits)}) count in a cache that is not shared or not atomic.",
                hint="Use Redis or Memcached as the default cache, so limits hold across web processes.",
                id="cc_sync.W004",
            )
        ]
    return []


@register()
def check_installed_apps(app_configs: Any = None, **kwargs: Any) -> Messages:
    """W003: the admin banner needs cc_sync's templates before the admin's."""
    apps = list(settings.INSTALLED_APPS)
    names = [app.split(".apps.")[0] for app in apps]
    if (
        "django.contrib.admin" in names
        and "cc_sync" in names
        and names.index("cc_sync") > names.index("django.contrib.admin")
    ):
        return [
            Warning(
                "cc_sync is listed after django.contrib.admin in INSTALLED_APPS.",
                hint="Put cc_sync first so the admin shows its 'Connect Constant Contact' banner.",
                id="cc_sync.W003",
            )
        ]
    return []


#: The checks of the ``CC_SYNC`` settings alone (no database, no deploy-only warnings), in id order.
SETTINGS_CHECKS: tuple[Callable[..., Messages], ...] = (
    check_credentials,
    check_encryption_keys,
    check_unknown_keys,
    check_numbers,
    check_captcha,
    check_list_chooser,
    check_custom_fields,
    check_limits,
    check_list_ids,
    check_limit_cache,
    check_broker_transport,
    check_broker_holding_time,
)


def check_settings(app_configs: Any = None, **kwargs: Any) -> Messages:
    """Every check of the ``CC_SYNC`` settings at once (each is also registered on its own with Django)."""
    return [message for check in SETTINGS_CHECKS for message in check(app_configs, **kwargs)]
