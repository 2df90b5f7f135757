"""Defences of the public signup form: submission limits and CAPTCHA verification.

Limits count in Django's cache, so they need a cache shared by every web process with atomic increments
(Redis or Memcached; not the local-memory, file or database caches) to hold across processes. With Django's
Redis cache each check is one round trip.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import requests
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest

from .client import create_session
from .conf import DEFAULTS, app_settings, get_setting, timeout
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


def _cache_key(scope: str, key: str) -> str:
    return f"cc_sync:limit:{scope}:{keyed_hash(key)[:40]}"


Limit = tuple[int, int]


def within_limit(scope: str, key: str, limit: Limit | None) -> bool:
    """Count one event for ``key`` in ``scope``; False once more than ``limit = (count, seconds)`` happened.

    Counting first and checking the result is atomic, so two requests at once cannot both get the last
    place; :func:`release` gives a place back when what it was taken for did not happen.
    """
    [within] = within_limits((scope, key, limit))
    return within


def within_limits(*checks: tuple[str, str, Limit | None]) -> list[bool]:
    """:func:`within_limit` for several ``(scope, key, limit)`` at once, one answer each.

    With Django's Redis cache all of them are counted in one round trip (:func:`_count_in_redis`); other
    caches count one by one with ``add``, then ``incr`` when the counter exists.
    """
    active = [(_cache_key(scope, key), limit) for scope, key, limit in checks if limit]
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        counts = _count_in_redis(backend, [(cache_key, limit[1]) for cache_key, limit in active])
    else:
        counts = [_count_in_cache(cache_key, limit[1]) for cache_key, limit in active]
    answers = iter(used <= limit[0] for used, (_key, limit) in zip(counts, active, strict=True))
    return [next(answers) if limit else True for _scope, _key, limit in checks]


def _count_in_cache(cache_key: str, seconds: int) -> int:
    if cache.add(cache_key, 1, timeout=seconds):
        return 1
    try:
        return cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=seconds)
        return 1


def _count_in_redis(backend: RedisCache, counters: list[tuple[str, int]]) -> list[int]:
    """Add one to each ``(cache_key, seconds)`` counter and return them, in one MULTI/EXEC round trip.

    Atomic, like ``add``/``incr``: ``SET NX PX`` creates a counter at 0 with its expiry only when it is
    missing, ``INCR`` counts (and keeps the expiry). The integers are stored as Django's Redis cache stores
    integers, so ``cache.get``/``decr`` (and :func:`release`) read them as usual.
    """
    if not counters:
        return []
    keys = [
        (backend.make_and_validate_key(cache_key), max(1, int(seconds * 1000)))
        for cache_key, seconds in counters
    ]
    client = backend._cache.get_client(keys[0][0], write=True)
    with client.pipeline(transaction=True) as pipe:
        for key, milliseconds in keys:
            pipe.set(key, 0, px=milliseconds, nx=True)
            pipe.incr(key)
            pipe.pttl(key)
        replies = pipe.execute()
    for (key, milliseconds), expires_in in zip(keys, replies[2::3], strict=True):
        if expires_in == -1:
            # No expiry: a DECR by release() raced the counter's expiry and created it anew. Give it one,
            # or it would count for good.
            client.pexpire(key, milliseconds)
    return [int(used) for used in replies[1::3]]


def release(scope: str, key: str, limit: Limit | None) -> None:
    """Give back one event counted by :func:`within_limit` (the signup it was counted for was not stored)."""
    if not limit:
        return
    try:
        cache.decr(_cache_key(scope, key))
    except ValueError:  # expired meanwhile: nothing left to give back
        pass


def ip_limit_key(ip: str) -> str:
    """The key of the per-IP limit: an IPv4 address, or the IPv6 network of ``IPV6_PREFIX`` bits (/64).

    One IPv6 host usually owns a whole /64 (SLAAC, privacy addresses), so counting single IPv6 addresses
    would give it 2**64 allowances. IPv4-mapped IPv6 addresses count as the IPv4 address. Text that is no
    IP address is keyed as given.
    """
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    prefix = get_setting("IPV6_PREFIX")  # the raw value: a wrong one is logged, never a 500
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix <= 128:
        logger.error("CC_SYNC['IPV6_PREFIX'] must be a whole number from 0 to 128, not %r.", prefix)
        prefix = DEFAULTS["IPV6_PREFIX"]
    # The integer drops any zone id ("fe80::1%eth0"), which ip_network would refuse.
    return str(ipaddress.IPv6Network((int(address), prefix), strict=False))


def captcha_config() -> dict[str, Any] | None:
    """The configured CAPTCHA with its provider's details, or None (none, or one cc_sync cannot use).

    A CAPTCHA setting cc_sync cannot use (an unknown provider, no secret) shows no widget, and
    :func:`verify_captcha` refuses every submission: failing open would drop the defence unnoticed
    (``manage.py check`` reports the setting).
    """
    config = app_settings.CAPTCHA
    if not config or not isinstance(config, dict):
        return None
    provider = config.get("provider")
    details = CAPTCHA_PROVIDERS.get(provider) if isinstance(provider, str) else None
    if details is None or not config.get("secret"):
        return None
    return {**details, **config}


def verify_captcha(request: HttpRequest, client_ip: str) -> bool:
    """Verify the CAPTCHA answer with the provider; fail closed when the provider cannot be asked."""
    if not app_settings.CAPTCHA:
        return True
    config = captcha_config()
    if config is None:
        setting = app_settings.CAPTCHA
        provider = setting.get("provider") if isinstance(setting, dict) else None
        logger.error(
            "CC_SYNC['CAPTCHA'] cannot be used (provider %r; known: %s; a secret is required); "
            "refusing the submission until it is fixed.",
            provider,
            ", ".join(CAPTCHA_PROVIDERS),
        )
        return False
    token = request.POST.get(config["field"], "")
    if not token or len(token) > CAPTCHA_TOKEN_MAX:
        return False
    data = {"secret": config["secret"], "response": token}
    if client_ip:
        data["remoteip"] = client_ip
    try:
        # Closed when done: a session per call would otherwise keep its pooled socket until garbage collection.
        with create_session() as session:
            response = session.post(config["verify_url"], data=data, timeout=timeout())
        body = response.json()
    except (requests.RequestException, ValueError) as err:
        logger.warning("CAPTCHA verification unavailable (%s); refusing the submission.", type(err).__name__)
        return False
    return response.status_code == 200 and isinstance(body, dict) and body.get("success") is True
