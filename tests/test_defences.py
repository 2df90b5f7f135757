"""Defences of the public form: honeypot, limits, CAPTCHA, request size, suppression, consent record."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
import redis
import requests
from django.core.cache import cache
from django.core.checks import Warning
from django.db import DatabaseError
from responses import matchers

from cc_sync import checks, defences, privacy
from cc_sync.models import Signup, Suppression
from rig.services import REDIS, REDIS_TEST_URL, reachable, require_service

TURNSTILE = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
RECAPTCHA = "https://www.google.com/recaptcha/api/siteverify"


def form_data(**extra):
    return {"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe", "consent": "on", **extra}


def test_a_filled_honeypot_gets_the_thank_you_and_stores_nothing(client, db, published):
    response = client.post("/signup/", form_data(website="http://spam.example"))
    assert response.status_code == 302
    assert response["Location"] == "/signup/thanks/"
    assert Signup.objects.count() == 0
    assert published == []


def test_the_honeypot_is_in_the_page_but_hidden(client, db):
    page = client.get("/signup/").content.decode()
    assert 'name="website"' in page
    assert 'aria-hidden="true"' in page


def test_one_address_gets_429_past_its_limit(
    client, db, cc_settings, django_capture_on_commit_callbacks, published
):
    cc_settings["LIMIT_PER_IP"] = (5, 60)
    statuses = []
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(20):
            statuses.append(client.post("/signup/", form_data(email=f"p{n}@example.com")).status_code)
    assert statuses == [302] * 5 + [429] * 15
    assert Signup.objects.count() == 5
    limited = client.post("/signup/", form_data(email="late@example.com"))
    assert limited["Retry-After"] == "60"
    assert "Too many signups" in limited.content.decode()


def test_another_address_is_not_limited_by_the_first(client, db, cc_settings):
    cc_settings["LIMIT_PER_IP"] = (1, 60)
    assert client.post("/signup/", form_data(), REMOTE_ADDR="10.0.0.1").status_code == 302
    assert (
        client.post("/signup/", form_data(email="b@example.com"), REMOTE_ADDR="10.0.0.1").status_code == 429
    )
    assert (
        client.post("/signup/", form_data(email="c@example.com"), REMOTE_ADDR="10.0.0.2").status_code == 302
    )


def test_the_same_email_within_the_hour_is_accepted_once_and_thanked_always(client, db, cc_settings):
    cc_settings["LIMIT_PER_EMAIL"] = (1, 3600)
    responses_ = [client.post("/signup/", form_data(email="Jane@EXAMPLE.com")) for _ in range(20)]
    assert {r.status_code for r in responses_} == {302}
    assert Signup.objects.count() == 1


def test_every_spelling_of_one_address_shares_one_email_limit(client, db, cc_settings, published):
    cc_settings["LIMIT_PER_EMAIL"] = (1, 3600)
    spellings = [
        "Victim@Example.com",
        "victim@EXAMPLE.COM",
        "\uff56\uff49\uff43\uff54\uff49\uff4d@example.com",  # full-width "victim"
        "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0ecom",  # full-width domain and full stop
        "victim\uff20example.com",  # full-width @
        "  victim@example.com  ",
    ]
    idn_spellings = ["victim@exämple.de", "victim@xn--exmple-cua.de", "Victim@EXÄMPLE.DE"]
    statuses = [
        client.post("/signup/", form_data(email=email)).status_code for email in spellings + idn_spellings
    ]
    assert statuses == [302] * 9
    assert sorted(Signup.objects.values_list("email", flat=True)) == [
        "Victim@example.com",
        "victim@xn--exmple-cua.de",
    ]


def test_a_retry_after_a_server_error_is_stored_not_just_thanked(
    client, db, cc_settings, published, django_capture_on_commit_callbacks
):
    cc_settings["LIMIT_PER_EMAIL"] = (1, 3600)
    with mock.patch("cc_sync.sync.insert_unless", side_effect=DatabaseError("connection lost")):
        with pytest.raises(DatabaseError):
            client.post("/signup/", form_data())
    assert Signup.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        retried = client.post("/signup/", form_data())
    assert retried.status_code == 302
    signup = Signup.objects.get()
    assert [call["args"] for call in published] == [(signup.pk,)]
    # The allowance is used by the stored signup: a second submission within the hour stores nothing.
    assert client.post("/signup/", form_data(first_name="Other")).status_code == 302
    assert Signup.objects.count() == 1


def test_a_suppressed_email_within_the_limit_is_thanked_and_not_stored(client, db, cc_settings):
    cc_settings["LIMIT_PER_EMAIL"] = (1, 3600)
    privacy.suppress("jane@example.com")
    assert [client.post("/signup/", form_data()).status_code for _ in range(2)] == [302, 302]
    assert Signup.objects.count() == 0


def test_ipv6_clients_share_one_limit_per_64(client, db, cc_settings):
    cc_settings["LIMIT_PER_IP"] = (1, 60)

    def post(ip, n):
        return client.post("/signup/", form_data(email=f"p{n}@example.com"), REMOTE_ADDR=ip).status_code

    assert post("2001:db8:1:2::1", 1) == 302
    assert post("2001:db8:1:2:ffff:ffff:ffff:9", 2) == 429  # same /64, another host address
    assert post("2001:db8:1:3::1", 3) == 302  # the next /64
    assert post("203.0.113.9", 4) == 302
    assert post("::ffff:203.0.113.9", 5) == 429  # IPv4-mapped: the same IPv4 client
    assert post("203.0.113.10", 6) == 302  # IPv4 stays per address


@pytest.mark.parametrize(
    ("ip", "prefix", "key"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::7", 48, "2001:db8:1::/48"),
        ("2001:db8::7", 128, "2001:db8::7/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("::ffff:198.51.100.7", 64, "198.51.100.7"),
        ("198.51.100.7", 64, "198.51.100.7"),
        ("not an ip", 64, "not an ip"),
        ("", 64, ""),
        ("2001:db8:1:2::1", "sixty-four", "2001:db8:1:2::/64"),  # a bad setting falls back to /64
        ("2001:db8:1:2::1", 129, "2001:db8:1:2::/64"),
    ],
)
def test_the_ip_limit_key_is_the_ipv4_address_or_the_ipv6_network(cc_settings, ip, prefix, key):
    cc_settings["IPV6_PREFIX"] = prefix
    assert defences.ip_limit_key(ip) == key


def test_an_oversized_body_gets_413_and_stores_nothing(client, db, cc_settings):
    cc_settings["MAX_REQUEST_BYTES"] = 2048
    response = client.post("/signup/", form_data(first_name="x" * 5000))
    assert response.status_code == 413
    assert Signup.objects.count() == 0


def test_extra_fields_are_ignored(client, db):
    response = client.post("/signup/", form_data(status="synced", contact_id="forged", list_ids="x"))
    assert response.status_code == 302
    signup = Signup.objects.get()
    assert (signup.status, signup.contact_id) == (Signup.Status.PENDING, "")


@pytest.fixture
def turnstile(cc_settings):
    cc_settings["CAPTCHA"] = {
        "provider": "turnstile",
        "site_key": "1x00000000000000000000AA",
        "secret": "sec-1",
    }


def test_the_captcha_widget_is_rendered_when_configured(client, db, turnstile):
    page = client.get("/signup/").content.decode()
    assert 'class="cf-turnstile"' in page
    assert 'data-sitekey="1x00000000000000000000AA"' in page


def test_a_valid_captcha_answer_is_verified_on_the_server(client, db, turnstile, cc_api):
    cc_api.post(
        TURNSTILE,
        json={"success": True},
        match=[
            matchers.urlencoded_params_matcher(
                {"secret": "sec-1", "response": "tok-1", "remoteip": "127.0.0.1"}
            )
        ],
    )
    response = client.post("/signup/", form_data(**{"cf-turnstile-response": "tok-1"}))
    assert response.status_code == 302
    assert Signup.objects.count() == 1


@pytest.mark.parametrize("answer", [{"json": {"success": True}}, {"body": requests.ConnectTimeout("down")}])
def test_the_captcha_verifier_session_is_closed_after_each_check(client, db, turnstile, cc_api, answer):
    cc_api.post(TURNSTILE, **answer)
    sessions: list[requests.Session] = []

    def tracked_session() -> requests.Session:
        session = requests.Session()
        session.close = mock.Mock(wraps=session.close)
        sessions.append(session)
        return session

    with mock.patch.object(defences, "create_session", tracked_session):
        client.post("/signup/", form_data(**{"cf-turnstile-response": "tok-1"}))
    assert len(sessions) == 1
    sessions[0].close.assert_called_once_with()


@pytest.mark.parametrize(
    ("token", "answer"),
    [
        ("", None),  # missing: no call to the verifier
        ("x" * 2049, None),  # longer than any real token
        ("bad", {"json": {"success": False, "error-codes": ["invalid-input-response"]}}),
        ("replayed", {"json": {"success": False, "error-codes": ["timeout-or-duplicate"]}}),
        ("tok", {"body": requests.ConnectTimeout("unreachable")}),  # fail closed
        ("tok", {"body": "<html>oops</html>", "status": 502}),  # fail closed
    ],
    ids=["missing", "too-long", "invalid", "replayed", "verifier-unreachable", "verifier-html"],
)
def test_a_failed_captcha_is_refused_with_a_form_error(client, db, turnstile, cc_api, token, answer):
    if answer is not None:
        cc_api.post(TURNSTILE, **answer)
    response = client.post("/signup/", form_data(**{"cf-turnstile-response": token}))
    assert response.status_code == 200
    assert "not a robot" in response.content.decode()
    assert Signup.objects.count() == 0


def test_recaptcha_uses_its_own_field_and_verifier(client, db, cc_settings, cc_api):
    cc_settings["CAPTCHA"] = {"provider": "recaptcha", "site_key": "site", "secret": "sec-2"}
    cc_api.post(
        RECAPTCHA,
        json={"success": True},
        match=[
            matchers.urlencoded_params_matcher(
                {"secret": "sec-2", "response": "g-tok", "remoteip": "127.0.0.1"}
            )
        ],
    )
    assert client.post("/signup/", form_data(**{"g-recaptcha-response": "g-tok"})).status_code == 302
    assert Signup.objects.count() == 1


@pytest.mark.parametrize(
    "captcha",
    [
        {"provider": "hcaptcha", "site_key": "k", "secret": "s"},
        {"provider": ["turnstile"], "site_key": "k", "secret": "s"},
        {"provider": "turnstile", "site_key": "k"},  # no secret
        {"site_key": "k", "secret": "s"},
    ],
    ids=["unknown-provider", "unhashable-provider", "no-secret", "no-provider"],
)
def test_an_unusable_captcha_setting_fails_closed_without_a_500(client, db, cc_settings, caplog, captcha):
    cc_settings["CAPTCHA"] = captcha
    page = client.get("/signup/")
    assert page.status_code == 200
    with caplog.at_level(logging.ERROR, logger="cc_sync.defences"):
        response = client.post("/signup/", form_data(**{"cf-turnstile-response": "tok"}))
    assert response.status_code == 200
    assert "not a robot" in response.content.decode()
    assert Signup.objects.count() == 0
    assert "CC_SYNC['CAPTCHA'] cannot be used" in caplog.text


def test_a_suppressed_email_is_thanked_but_not_stored(client, db, published):
    privacy.suppress("jane@example.com", Suppression.Reason.UNSUBSCRIBED)
    response = client.post("/signup/", form_data(email="JANE@example.com"))
    assert response.status_code == 302
    assert Signup.objects.count() == 0


def test_the_consent_record_is_stored_with_the_signup(client, db, cc_settings):
    cc_settings.update(CONSENT_TEXT="Send me news.", CONSENT_VERSION="2026-11")
    client.post("/signup/", form_data(), HTTP_USER_AGENT="TestBrowser/1.0", REMOTE_ADDR="203.0.113.9")
    signup = Signup.objects.get()
    assert (signup.consent_text, signup.consent_version) == ("Send me news.", "2026-11")
    assert signup.consent_given_at is not None
    assert signup.source_url == "http://testserver/signup/"
    assert signup.consent_user_agent == "TestBrowser/1.0"
    assert signup.consent_ip_hash == privacy.keyed_hash("203.0.113.9")
    assert "203.0.113.9" not in signup.consent_ip_hash
    assert signup.email_hash == privacy.email_hash("jane@example.com")


def test_limits_on_an_unshared_cache_warn_in_production(settings, cc_settings):
    settings.DEBUG = False
    cc_settings["LIMIT_PER_IP"] = (5, 60)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert "cc_sync.W004" in [m.id for m in checks.check_settings() if isinstance(m, Warning)]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}
    }
    assert "cc_sync.W004" not in [m.id for m in checks.check_settings()]


# -- the counters, in each kind of cache ------------------------------------------------------------


@pytest.fixture
def redis_cache(settings) -> Iterator[str]:
    """Django's Redis cache on the test Redis database (emptied before and after)."""
    require_service("Redis", reachable(*REDIS))
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_TEST_URL}
    }
    yield REDIS_TEST_URL
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()


@pytest.fixture(params=["locmem", pytest.param("redis", marks=pytest.mark.services)])
def limit_cache(request, settings) -> str:
    """Django's local-memory cache, or its Redis cache."""
    if request.param == "redis":
        request.getfixturevalue("redis_cache")
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return request.param


@pytest.fixture
def sent_to_redis(monkeypatch) -> list[bytes]:
    """What this process sends to Redis, one item per round trip (a pipeline is one)."""
    from redis.connection import AbstractConnection

    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    def send(self, command, *args, **kwargs):
        sent.append(command)
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    return sent


def test_requests_at_once_never_share_the_last_place(limit_cache):
    visitors = 24
    start = threading.Barrier(visitors)

    def visitor() -> bool:
        start.wait()
        return defences.within_limit("ip", "203.0.113.7", (5, 60))

    with ThreadPoolExecutor(max_workers=visitors) as pool:
        answers = list(pool.map(lambda _n: visitor(), range(visitors)))
    assert answers.count(True) == 5
    assert cache.get(defences._cache_key("ip", "203.0.113.7")) == visitors


def test_a_released_place_can_be_taken_again_and_the_count_expires(limit_cache, monkeypatch):
    assert [defences.within_limit("email", "h", (2, 60)) for _ in range(3)] == [True, True, False]
    defences.release("email", "h", (2, 60))
    defences.release("email", "h", (2, 60))
    assert defences.within_limit("email", "h", (2, 60))
    assert not defences.within_limit("email", "h", (2, 60))
    # The window ends: the counter is gone, and a new window starts.
    cache.delete(defences._cache_key("email", "h"))
    assert defences.within_limit("email", "h", (2, 60))


@pytest.mark.services
def test_with_redis_a_limit_check_is_one_round_trip_that_starts_the_window(redis_cache, sent_to_redis):
    defences.within_limit("ip", "198.51.100.1", (5, 60))  # the pool's connection is set up
    for _ in range(2):
        sent_to_redis.clear()
        defences.within_limit("ip", "198.51.100.1", (5, 60))
        assert len(sent_to_redis) == 1, sent_to_redis
    client = redis.Redis.from_url(redis_cache)
    key = cache.make_and_validate_key(defences._cache_key("ip", "198.51.100.1"))
    assert (int(client.get(key)), 0 < client.pttl(key) <= 60_000) == (3, True)
    # A counter left without an expiry (a release racing the expiry) gets one back on the next check.
    client.persist(key)
    defences.within_limit("ip", "198.51.100.1", (5, 60))
    assert 0 < client.pttl(key) <= 60_000


@pytest.mark.services
def test_with_the_redis_cache_one_address_gets_429_past_its_limit(
    client, db, cc_settings, published, redis_cache
):
    cc_settings.update(LIMIT_PER_IP=(3, 60), LIMIT_PER_EMAIL=(1, 3600))
    statuses = [client.post("/signup/", form_data(email=f"r{n}@example.com")).status_code for n in range(5)]
    assert statuses == [302] * 3 + [429] * 2
    assert Signup.objects.count() == 3


def test_an_address_over_its_limit_gives_back_the_email_allowance_it_counted(
    client, db, cc_settings, published, limit_cache
):
    cc_settings.update(LIMIT_PER_IP=(1, 60), LIMIT_PER_EMAIL=(1, 3600))
    assert client.post("/signup/", form_data(), REMOTE_ADDR="10.0.0.1").status_code == 302
    other = form_data(email="other@example.com")
    assert client.post("/signup/", other, REMOTE_ADDR="10.0.0.1").status_code == 429
    # The 429 did not use up other@example.com's one signup an hour.
    assert client.post("/signup/", other, REMOTE_ADDR="10.0.0.2").status_code == 302
    assert sorted(Signup.objects.values_list("email", flat=True)) == ["jane@example.com", "other@example.com"]


@pytest.mark.services
def test_with_redis_both_limits_of_a_signup_cost_one_round_trip(
    client, db, cc_settings, published, redis_cache, sent_to_redis
):
    cc_settings.update(LIMIT_PER_IP=(5, 60), LIMIT_PER_EMAIL=(1, 3600))
    client.post("/signup/", form_data(email="first@example.com"))  # the pool's connection is set up
    sent_to_redis.clear()
    assert client.post("/signup/", form_data()).status_code == 302
    assert len(sent_to_redis) == 1, sent_to_redis
    assert Signup.objects.filter(email="jane@example.com").exists()
