"""Defences of the public signup form: submission limits and CAPTCHA verification.

Limits count in Django's cache, so they need a cache shared by every web process with atomic increments
(Redis or Memcached; not the local-memory, file or database caches) to hold across processes.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.core.cache import cache
from django.http import HttpRequest

from .client import create_session
from .conf import get_setting, timeout
from .privacy import keyed_hash

logger = logging.getLogger("cc_sync.defences")

# https://developers.cloudflare.com/turnstile/get-started/server-side-validation/ and
# https://developers.google.com/recaptcha/docs/verify
CAPTCHA_PROVIDERS = {
    "turnstile": {
        "verify_url": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "field": "cf-turnstile-response",
        "script": "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "widget_class": "cf-turnstile",
    },
    "recaptcha": {
        "verify_url": "https://www.google.com/recaptcha/api/siteverify",
        "field": "g-recaptcha-response",
        "script": "https://www.google.com/recaptcha/api.js",
        "widget_class": "g-recaptcha",
    },
}
# Turnstile tokens are at most 2048 characters; anything longer is not a token.
CAPTCHA_TOKEN_MAX = 2048


def within_limit(scope: str, key: str, limit: tuple[int, int] | None) -> bool:
    """Count one event for ``key`` in ``scope``; False once more than ``limit = (count, seconds)`` happened."""
    if not limit:
        return True
    count, seconds = limit
    cache_key = f"cc_sync:limit:{scope}:{keyed_hash(key)[:40]}"
    if cache.add(cache_key, 1, timeout=seconds):
        return count >= 1
    try:
        used = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=seconds)
        used = 1
    return used <= count


def captcha_config() -> dict[str, Any] | None:
    """The configured CAPTCHA with its provider's details, or None."""
    config = get_setting("CAPTCHA")
    if not config:
        return None
    return {**CAPTCHA_PROVIDERS[config["provider"]], **config}


def verify_captcha(request: HttpRequest, client_ip: str) -> bool:
    """Verify the CAPTCHA answer with the provider; fail closed when the provider cannot be asked."""
    config = captcha_config()
    if config is None:
        return True
    token = request.POST.get(config["field"], "")
    if not token or len(token) > CAPTCHA_TOKEN_MAX:
        return False
    data = {"secret": config["secret"], "response": token}
    if client_ip:
        data["remoteip"] = client_ip
    try:
        response = create_session().post(config["verify_url"], data=data, timeout=timeout())
        body = response.json()
    except (requests.RequestException, ValueError) as err:
        logger.warning("CAPTCHA verification unavailable (%s); refusing the submission.", type(err).__name__)
        return False
    return response.status_code == 200 and isinstance(body, dict) and body.get("success") is True
