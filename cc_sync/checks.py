"""System checks, ids ``cc_sync.E00x`` (errors) and ``cc_sync.W00x`` (warnings)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import crypto
from .conf import DEFAULTS, get_setting, unknown_keys, user_settings
from .exceptions import CCSyncConfigurationError

FLOWS = ("authorization_code", "pkce", "device")
UNSHARED_CACHES = ("LocMemCache", "DummyCache", "FileBasedCache", "DatabaseCache")
URL_SETTINGS = ("AUTHORIZE_URL", "TOKEN_URL", "DEVICE_AUTHORIZE_URL", "API_URL")


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Missing or invalid ``CC_SYNC`` settings."""
    messages: list[Any] = []
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
    try:
        crypto.check_keys()
    except CCSyncConfigurationError as err:
        messages.append(
            Error(
                "CC_SYNC['ENCRYPTION_KEYS'] is missing or invalid.",
                hint=f"{err} Keys are read from settings or the environment, never the database.",
                id="cc_sync.E003",
            )
        )
    if flow not in FLOWS:
        messages.append(
            Error(
                f"CC_SYNC['OAUTH_FLOW'] must be one of {', '.join(FLOWS)}.",
                id="cc_sync.E004",
            )
        )
    if unknown_keys():
        messages.append(
            Error(
                f"CC_SYNC has unknown keys: {', '.join(unknown_keys())}.",
                hint="Check the spelling against the settings documentation.",
                id="cc_sync.E005",
            )
        )
    for name in ("API_RATE", "TOKEN_RATE", "DAILY_LIMIT", "CONNECT_TIMEOUT", "READ_TIMEOUT", "LEASE"):
        try:
            valid = float(get_setting(name)) > 0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            messages.append(Error(f"CC_SYNC['{name}'] must be a positive number.", id="cc_sync.E006"))
    if not settings.DEBUG:
        redirect_uri = configured.get("REDIRECT_URI") or ""
        if redirect_uri and urlsplit(redirect_uri).scheme != "https":
            messages.append(
                Warning(
                    "CC_SYNC['REDIRECT_URI'] is not https while DEBUG is off.",
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
                    f"CC_SYNC URLs are not https while DEBUG is off: {', '.join(plain)}.",
                    hint="Tokens travel over these URLs; only the local sandbox should use http.",
                    id="cc_sync.W002",
                )
            )
    limits = [name for name in ("LIMIT_PER_IP", "LIMIT_PER_EMAIL") if get_setting(name)]
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if limits and not settings.DEBUG and backend.rsplit(".", 1)[-1] in UNSHARED_CACHES:
        messages.append(
            Warning(
                f"cc_sync's form limits ({', '.join(limits)}) count in a cache that is not shared or not atomic.",
                hint="Use Redis or Memcached as the default cache, so limits hold across web processes.",
                id="cc_sync.W004",
            )
        )
    return messages


@register()
def check_installed_apps(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The admin banner needs cc_sync's templates before the admin's."""
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
