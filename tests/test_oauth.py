"""Keeping the tokens alive: refresh when stale, under the row lock, once; reconnect handling."""

from __future__ import annotations

import base64
import logging
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import parse_qs

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone
from responses import matchers

from cc_sync import oauth, ratelimit
from cc_sync.exceptions import ReconnectRequired, RetryLater, Throttled
from cc_sync.models import Connection, RateLimitState, Signup
from rig.cc import make_connection, no_authorization_header, token_body
from rig.constants import ACCESS_TOKEN, API_URL, BASIC, CLIENT_ID, REFRESH_TOKEN, TOKEN_URL


def expect_refresh(cc_api, refresh_token=REFRESH_TOKEN, status=200, body=None, **kwargs):
    body = (
        body
        if body is not None
        else {
            "token_type": "Bearer",
            "expires_in": 86400,
            "access_token": "new-access-token-xyz",
            "refresh_token": "new-refresh-token-xyz",
            "scope": "contact_data offline_access account_read",
        }
    )
    return cc_api.post(
        TOKEN_URL,
        status=status,
        json=body,
        match=[
            matchers.header_matcher(BASIC),
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": refresh_token}
            ),
        ],
        **kwargs,
    )


def test_fresh_token_is_returned_without_any_request(connection, cc_api):
    assert oauth.get_access_token() == ACCESS_TOKEN


def test_token_within_leeway_is_refreshed_and_saved_before_use(db, cc_api):
    make_connection(expires_in=200)  # inside the default 300 s leeway
    call = expect_refresh(cc_api)
    assert oauth.get_access_token() == "new-access-token-xyz"
    assert call.call_count == 1
    stored = Connection.load()
    assert stored.access_token == "new-access-token-xyz"
    assert stored.refresh_token == "new-refresh-token-xyz"
    assert timedelta(seconds=86390) < stored.expires_at - timezone.now() <= timedelta(seconds=86400)
    assert stored.last_refreshed_at is not None


def test_leeway_is_a_setting(db, cc_api, cc_settings):
    cc_settings["TOKEN_LEEWAY"] = 60
    make_connection(expires_in=200)
    assert oauth.get_access_token() == ACCESS_TOKEN


def test_expired_token_is_refreshed(db, cc_api):
    make_connection(expires_in=-10)
    expect_refresh(cc_api)
    assert oauth.get_access_token() == "new-access-token-xyz"


def test_refresh_response_without_refresh_token_keeps_the_old_one(db, cc_api):
    make_connection(expires_in=-10)
    expect_refresh(cc_api, body={"access_token": "only-access", "expires_in": 86400, "token_type": "Bearer"})
    assert oauth.get_access_token() == "only-access"
    assert Connection.load().refresh_token == REFRESH_TOKEN


def test_invalid_grant_marks_needs_reconnect_and_mails_admins_once(
    db, cc_api, django_capture_on_commit_callbacks
):
    make_connection(expires_in=-10)
    expect_refresh(
        cc_api,
        status=400,
        body={"error": "invalid_grant", "error_description": "The refresh token is invalid or expired."},
    )
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconnectRequired):
        oauth.get_access_token()
    connection = Connection.load()
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert "invalid_grant" in connection.last_error
    assert len(mail.outbox) == 1
    assert "reconnect" in mail.outbox[0].subject.lower()
    # Never retried in a loop: the next call refuses without asking CC again (cc_api has no more responses).
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconnectRequired):
        oauth.get_access_token()
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, {"error_key": "throttled"}, Throttled),
        (500, {"error": "server_error"}, RetryLater),
        (503, None, RetryLater),
    ],
)
def test_transient_token_endpoint_errors_are_retried_later_without_reconnect(db, cc_api, status, body, error):
    make_connection(expires_in=-10)
    expect_refresh(cc_api, status=status, body=body or {})
    with pytest.raises(error):
        oauth.get_access_token()
    connection = Connection.load()
    assert connection.status == Connection.Status.CONNECTED
    assert connection.refresh_token == REFRESH_TOKEN
    assert connection.last_error


def test_any_other_refusal_of_a_refresh_holds_signups_for_a_reconnect_instead_of_failing_them(
    db, cc_api, django_capture_on_commit_callbacks
):
    make_connection(expires_in=-10)
    expect_refresh(cc_api, status=400, body={"error": "invalid_request", "error_description": "Bad."})
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconnectRequired):
        oauth.get_access_token()
    connection = Connection.load()
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert "invalid_request" in connection.last_error
    assert len(mail.outbox) == 1


def test_the_token_slot_of_a_refresh_stays_counted_when_the_refresh_transaction_is_rolled_back(
    db, cc_api, monkeypatch
):
    # A process killed after CC answered loses its transaction; the slot for the call CC saw must not go
    # with it, or the next refresh could break CC's 1 request/s token limit.
    pinned = PINNED.timestamp()
    monkeypatch.setattr(time, "time", lambda: pinned)  # requests_today() must count the same UTC day
    make_connection(expires_in=-10)
    expect_refresh(cc_api)

    class Crash(Exception):
        pass

    def die_before_saving(connection, tokens):
        raise Crash

    monkeypatch.setattr(oauth, "_apply_tokens", die_before_saving)
    with pytest.raises(Crash):
        oauth.get_access_token()
    assert ratelimit.requests_today("token") == 1
    assert Connection.load().refresh_token == REFRESH_TOKEN


def test_a_process_waiting_for_its_token_slot_takes_the_token_another_process_refreshed(
    db, cc_api, cc_settings, monkeypatch
):
    cc_settings["TOKEN_RATE"] = 1
    make_connection(expires_in=-10)
    # Another process holds the current slot: this one must wait about a second for its own ...
    ratelimit.reserve("token", 1.0)
    waits = []

    def other_process_refreshes(seconds):
        waits.append(seconds)
        if len(waits) == 1:
            make_connection(access_token="refreshed-elsewhere", expires_in=86400)

    monkeypatch.setattr(oauth.time, "sleep", other_process_refreshes)
    # ... but sees the new token on its first look and makes no call (cc_api expects none).
    assert oauth.get_access_token() == "refreshed-elsewhere"
    assert waits == [oauth.TOKEN_WAIT_POLL]


def test_a_refreshs_token_slot_is_followed_by_room_for_the_new_connection_it_opens(
    db, cc_api, cc_settings, monkeypatch
):
    cc_settings["TOKEN_RATE"] = 1
    now = datetime(2028, 2, 29, 23, 59, 30, tzinfo=dt_timezone.utc).timestamp()
    monkeypatch.setattr(time, "time", lambda: now)
    make_connection(expires_in=-10)
    cc_api.post(TOKEN_URL, json=token_body("fresh-access", "fresh-refresh"))
    assert oauth.get_access_token() == "fresh-access"
    # Refreshes are hours apart per connection, so the token endpoint is reached on a new connection.
    expected = now + ratelimit.spacing("token", 1.0) + ratelimit.NEW_CONNECTION_HEADROOM
    assert RateLimitState.objects.get(name="token").next_slot == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("flow", ["pkce", "device"])
def test_public_applications_refresh_with_client_id_and_no_basic_auth(db, cc_api, cc_settings, flow):
    cc_settings.update(OAUTH_FLOW=flow, CLIENT_SECRET="")
    make_connection(expires_in=-10)
    cc_api.post(
        TOKEN_URL,
        json=token_body("public-access", "public-refresh"),
        match=[
            no_authorization_header,
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN, "client_id": "test-client-id"}
            ),
        ],
    )
    assert oauth.get_access_token() == "public-access"


def test_token_endpoint_timeout_is_transient(db, cc_api):
    import requests

    make_connection(expires_in=-10)
    cc_api.post(TOKEN_URL, body=requests.ConnectTimeout("timed out"))
    with pytest.raises(RetryLater):
        oauth.get_access_token()
    assert Connection.load().status == Connection.Status.CONNECTED


def test_rejected_token_is_replaced_once_even_if_asked_twice(connection, cc_api):
    expect_refresh(cc_api)
    assert oauth.replace_rejected_token(ACCESS_TOKEN) == "new-access-token-xyz"
    # A second worker that saw the same 401 finds the token already replaced: no second refresh.
    assert oauth.replace_rejected_token(ACCESS_TOKEN) == "new-access-token-xyz"


def test_not_connected_refuses_without_calling_cc(db, cc_api):
    with pytest.raises(ReconnectRequired):
        oauth.get_access_token()


def test_keep_alive_refreshes_an_idle_connection_and_rechecks_lists(db, cc_api):
    make_connection(last_refreshed_at=timezone.now() - timedelta(days=8), lists_checked_at=timezone.now())
    expect_refresh(cc_api)
    oauth.keep_alive()
    assert Connection.load().access_token == "new-access-token-xyz"


def test_keep_alive_does_nothing_for_a_recent_refresh(db, cc_api):
    make_connection(lists_checked_at=timezone.now())
    oauth.keep_alive()
    assert Connection.load().access_token == ACCESS_TOKEN


def test_keep_alive_reports_chosen_lists_that_vanished_from_the_account(db, cc_api, cc_settings):
    cc_settings["LIST_IDS"] = []
    make_connection(
        lists_checked_at=timezone.now() - timedelta(days=2),
        list_ids=["gone"],
        available_lists=[{"list_id": "gone", "name": "Old"}],
    )
    cc_api.get(
        "https://api.cc.test/v3/contact_lists",
        json={"lists": [{"list_id": "l1", "name": "New"}]},
        match=[matchers.header_matcher({"Authorization": f"Bearer {ACCESS_TOKEN}"})],
    )
    oauth.keep_alive()
    from cc_sync import status

    assert status.report().missing_list_ids == ["gone"]
    assert any("gone" in problem and "no longer exists" in problem for problem in status.report().problems)
    assert Connection.load().available_lists == [{"list_id": "l1", "name": "New"}]


def test_keep_alive_takes_the_applications_in_turn_so_one_refreshes_while_another_waits(db, cc_api):
    # Two connections on the settings' application, then two on an application of their own: taken in
    # turn, a shop connection is refreshed while the settings' application waits for its next token slot.
    stale = {"expires_at": timezone.now() - timedelta(minutes=1), "lists_checked_at": timezone.now()}
    make_connection(**stale)
    tokens = {"status": Connection.Status.CONNECTED, "access_token": "old-access", **stale}
    Connection.objects.create(slug="branch", refresh_token="branch-refresh", **tokens)
    for shop in ("shop1", "shop2"):
        Connection.objects.create(
            slug=shop,
            client_id="shop-client-id",
            client_secret="shop-client-secret",
            refresh_token=f"{shop}-refresh",
            **tokens,
        )
    for refresh in (REFRESH_TOKEN, "branch-refresh", "shop1-refresh", "shop2-refresh"):
        cc_api.post(
            TOKEN_URL,
            json=token_body(f"new-{refresh}", f"next-{refresh}"),
            match=[
                matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": refresh})
            ],
        )

    assert oauth.keep_alive() == 4

    sent = [parse_qs(call.request.body)["refresh_token"][0] for call in cc_api.calls]
    assert sent == [REFRESH_TOKEN, "shop1-refresh", "branch-refresh", "shop2-refresh"]


def test_keep_alive_refreshes_the_others_when_a_connections_own_secret_cannot_be_read(
    db, cc_api, cc_settings
):
    keys = cc_settings["ENCRYPTION_KEYS"]
    cc_settings["ENCRYPTION_KEYS"] = [Fernet.generate_key().decode()]  # a key since dropped from the settings
    Connection.objects.create(
        slug="shop",
        client_id="shop-client-id",
        client_secret="shop-client-secret",
        status=Connection.Status.CONNECTED,
        access_token="shop-access",
        refresh_token="shop-refresh",
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    cc_settings["ENCRYPTION_KEYS"] = keys
    make_connection(expires_in=-60, lists_checked_at=timezone.now())
    expect_refresh(cc_api)

    assert oauth.keep_alive() == 1

    assert Connection.load().access_token == "new-access-token-xyz"


def test_reconnect_releases_held_signups(db, cc_api, published, django_capture_on_commit_callbacks):
    make_connection(status=Connection.Status.NEEDS_RECONNECT)
    held = Signup.objects.create(email="held@example.com", status=Signup.Status.WAITING_RECONNECT)
    cc_api.get("https://api.cc.test/v3/account/summary", json={"organization_name": "Acme Inc"})
    cc_api.get("https://api.cc.test/v3/contact_lists", json={"lists": []})
    with django_capture_on_commit_callbacks(execute=True):
        oauth.store_grant(
            {
                "access_token": "a2",
                "refresh_token": "r2",
                "expires_in": 86400,
                "scope": "contact_data offline_access account_read",
            }
        )
    held.refresh_from_db()
    assert held.status == Signup.Status.PENDING
    assert [call["task"] for call in published] == ["cc_sync.sweep_due_signups"]


def test_logs_of_connect_and_refresh_never_contain_tokens(db, cc_api, caplog):
    caplog.set_level(logging.DEBUG)
    cc_api.get("https://api.cc.test/v3/account/summary", json={"organization_name": "Acme Inc"})
    cc_api.get("https://api.cc.test/v3/contact_lists", json={"lists": []})
    oauth.store_grant(
        {
            "access_token": "secret-access-1",
            "refresh_token": "secret-refresh-1",
            "expires_in": 1,
            "scope": "contact_data offline_access account_read",
        }
    )
    expect_refresh(
        cc_api,
        refresh_token="secret-refresh-1",
        body={"access_token": "secret-access-2", "refresh_token": "secret-refresh-2", "expires_in": 86400},
    )
    assert oauth.get_access_token() == "secret-access-2"
    expect_refresh(
        cc_api,
        refresh_token="secret-refresh-2",
        status=400,
        body={"error": "invalid_grant", "error_description": "The refresh token is invalid or expired."},
    )
    with pytest.raises(ReconnectRequired) as excinfo:
        oauth.refresh_now()
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the connect and refresh should have logged something"
    for secret in ("secret-access-1", "secret-refresh-1", "secret-access-2", "secret-refresh-2"):
        assert secret not in logged
        assert secret not in str(excinfo.value)


def test_disconnect_forgets_tokens(connection):
    oauth.disconnect()
    stored = Connection.load()
    assert (stored.status, stored.access_token, stored.refresh_token) == (
        Connection.Status.DISCONNECTED,
        "",
        "",
    )


# -- expires_in: a lifetime (RFC 6749, CC's staff) or an epoch time (CC's spec) -----------------------

PINNED = datetime(2028, 2, 29, 23, 59, 30, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (86400, PINNED + timedelta(days=1)),  # a lifetime, as CC answers today
        ("86400", PINNED + timedelta(days=1)),
        (int((PINNED + timedelta(hours=23)).timestamp()), PINNED + timedelta(hours=23)),  # the spec's epoch
        (int((PINNED + timedelta(hours=23)).timestamp()) * 1000, PINNED + timedelta(hours=23)),  # in ms
        (int((PINNED - timedelta(hours=1)).timestamp()), PINNED + timedelta(hours=1)),  # past: an hour
        (None, PINNED + timedelta(hours=1)),  # missing: an hour, not a refresh before every request
    ],
    ids=["lifetime", "lifetime-as-text", "epoch", "epoch-ms", "epoch-in-the-past", "missing"],
)
def test_expires_in_is_read_as_a_lifetime_or_an_epoch_time(db, cc_api, monkeypatch, expires_in, expected):
    monkeypatch.setattr(timezone, "now", lambda: PINNED)
    make_connection(expires_in=-10)
    body = {
        "access_token": "new-access-token-xyz",
        "refresh_token": "new-refresh-token-xyz",
        "token_type": "Bearer",
    }
    if expires_in is not None:
        body["expires_in"] = expires_in
    expect_refresh(cc_api, body=body)
    assert oauth.get_access_token() == "new-access-token-xyz"
    assert Connection.load().expires_at == expected


# -- several connections ------------------------------------------------------------------------


def own_app_connection(slug="shop", **fields):
    """A second connection, with its own CC application, whose token needs a refresh."""
    values = {
        "name": "Shop",
        "client_id": "shop-client-id",
        "client_secret": "shop-client-secret",
        "status": Connection.Status.CONNECTED,
        "access_token": "shop-access",
        "refresh_token": "shop-refresh",
        "expires_at": timezone.now() - timedelta(seconds=10),
        "last_refreshed_at": timezone.now() - timedelta(days=1),
    }
    values.update(fields)
    return Connection.objects.create(slug=slug, **values)


def test_a_connection_with_its_own_application_refreshes_with_its_credentials_and_budget(db, cc_api):
    default = make_connection()
    shop = own_app_connection()
    shop_basic = "Basic " + base64.b64encode(b"shop-client-id:shop-client-secret").decode()
    call = cc_api.post(
        TOKEN_URL,
        json=token_body("shop-new-access", "shop-new-refresh"),
        match=[
            matchers.header_matcher({"Authorization": shop_basic}),
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": "shop-refresh"}
            ),
        ],
    )

    assert oauth.get_access_token(shop) == "shop-new-access"

    assert call.call_count == 1
    shop.refresh_from_db()
    default.refresh_from_db()
    assert (shop.access_token, shop.refresh_token) == ("shop-new-access", "shop-new-refresh")
    assert (default.access_token, default.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    # CC counts its limits per API key: the refresh drew on the shop application's token budget only.
    budget = shop.application().budget("token")
    assert budget.startswith("token:") and budget != "token"
    assert set(RateLimitState.objects.values_list("name", flat=True)) == {budget}


def test_connections_of_the_settings_application_share_its_budget(db, cc_api):
    make_connection()
    other = Connection.objects.create(slug="branch", name="Branch")
    assert other.application() == Connection.load().application()
    assert other.application().budget("api") == "api"
    # The settings' client id typed in as an "own" application is the same API key to CC: the same budget.
    same = Connection.objects.create(slug="same", client_id=CLIENT_ID, client_secret="typed-again")
    assert (same.budget("api"), same.application().budget("token")) == ("api", "token")
    assert own_app_connection().application().budget("api") != own_app_connection("b2").application().budget(
        "token"
    )


def test_a_refused_grant_holds_only_its_own_connection(db, cc_api, django_capture_on_commit_callbacks):
    make_connection()
    shop = own_app_connection()
    cc_api.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconnectRequired):
        oauth.get_access_token(shop)

    shop.refresh_from_db()
    assert shop.status == Connection.Status.NEEDS_RECONNECT
    assert Connection.load().status == Connection.Status.CONNECTED
    assert len(mail.outbox) == 1
    assert "Shop" in mail.outbox[0].subject and "Shop" in mail.outbox[0].body


def test_keep_alive_refreshes_every_stale_connection_and_a_failing_one_does_not_stop_the_others(db, cc_api):
    make_connection()  # refreshed just now: left alone
    broken = own_app_connection("broken", client_id="broken-id", refresh_token="broken-refresh")
    shop = own_app_connection()
    cc_api.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant"},
        match=[
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": "broken-refresh"}
            )
        ],
    )
    cc_api.post(
        TOKEN_URL,
        json=token_body("shop-new-access", "shop-new-refresh"),
        match=[
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": "shop-refresh"}
            )
        ],
    )
    cc_api.get(f"{API_URL}/contact_lists", json={"lists": []})

    assert oauth.keep_alive() == 1

    broken.refresh_from_db()
    shop.refresh_from_db()
    assert broken.status == Connection.Status.NEEDS_RECONNECT
    assert shop.access_token == "shop-new-access"
    assert Connection.load().access_token == ACCESS_TOKEN


def test_the_state_of_an_authorization_request_names_its_connection(db, cc_api):
    shop = own_app_connection()
    url, record = oauth.authorization_request("https://example.com/callback", shop)
    assert record["connection"] == shop.pk
    assert "client_id=shop-client-id" in url


def test_an_own_application_needs_its_secret_with_the_authorization_code_flow(db):
    with pytest.raises(ValidationError) as raised:
        Connection(name="Shop", slug="shop", client_id="shop-client-id").full_clean()
    assert "client_secret" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        Connection(name="Shop", slug="shop", client_secret="orphan").full_clean()
    assert "client_id" in raised.value.message_dict
