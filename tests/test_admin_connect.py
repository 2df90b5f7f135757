"""The admin: the connection page (connect, PKCE, callback, refresh, disconnect, lists), signups, suppressions."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone
from responses import matchers

from cc_sync import oauth
from cc_sync.client import DEVICE_GRANT, ConstantContactClient
from cc_sync.models import Connection, RateLimitState, Signup, Suppression, SuppressionLift, SurgeBatch
from rig.cc import make_connection, no_authorization_header
from rig.cc import token_body as cc_token_body
from rig.constants import (
    ACCESS_TOKEN,
    API_URL,
    AUTHORIZE_URL,
    BASIC,
    DEVICE_URL,
    LIST_ID,
    REDIRECT_URI,
    REFRESH_TOKEN,
    SCOPES,
    TOKEN_URL,
)

PAGE = "/admin/cc_sync/connection/"
CONNECT = PAGE + "connect/"
CALLBACK = PAGE + "callback/"
REFRESH = PAGE + "refresh/"
DISCONNECT = PAGE + "disconnect/"
LISTS = PAGE + "lists/"

NEW_ACCESS = "fresh-access-token-aaaaaaaaaaaaaaaaaaaa"
NEW_REFRESH = "fresh-refresh-token-bbbbbbbbbbbbbbbbbbb"
OTHER_LIST_ID = "2b9c1f2e-662a-11eb-af0a-fa163e56c9b0"


def token_body(access: str = NEW_ACCESS, refresh: str = NEW_REFRESH, expires_in: int = 86400) -> dict:
    return cc_token_body(access, refresh, expires_in)


def expect_code_exchange(cc_api, code: str, **kwargs):
    return cc_api.post(
        TOKEN_URL,
        match=[
            matchers.header_matcher(BASIC),
            matchers.urlencoded_params_matcher(
                {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
            ),
        ],
        **(kwargs if {"json", "body"} & set(kwargs) else {"json": token_body(), **kwargs}),
    )


def expect_account_and_lists(cc_api, access: str = NEW_ACCESS):
    bearer = matchers.header_matcher({"Authorization": f"Bearer {access}"})
    account = cc_api.get(
        f"{API_URL}/account/summary",
        json={"organization_name": "Acme Inc", "encoded_account_id": "acme-123"},
        match=[bearer],
    )
    lists = cc_api.get(
        f"{API_URL}/contact_lists",
        json={
            "lists": [
                {"list_id": LIST_ID, "name": "Newsletter"},
                {"list_id": OTHER_LIST_ID, "name": "Events"},
            ]
        },
        match=[bearer, matchers.query_param_matcher({"limit": "500"})],
    )
    return account, lists


def start_connect(client) -> dict[str, str]:
    response = client.post(CONNECT)
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(AUTHORIZE_URL + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def callback(client, **params: str):
    return client.get(f"{CALLBACK}?{urlencode(params)}")


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def assert_nothing_stored() -> None:
    stored = Connection.objects.filter(slug=Connection.DEFAULT_SLUG).first()
    if stored is not None:
        assert stored.status == Connection.Status.DISCONNECTED
        assert stored.access_token == ""
        assert stored.refresh_token == ""
        assert stored.expires_at is None
        assert stored.account_name == ""


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="staff", password="pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def plain_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="visitor", password="pw")
    client.force_login(user)
    return client


# -- what the pages show --------------------------------------------------------------------------


def test_admin_index_shows_connect_banner_when_not_connected(admin_client):
    content = admin_client.get("/admin/").content.decode()
    assert "Constant Contact is not connected: signups are kept until you connect." in content
    assert "Connect Constant Contact</button>" in content
    assert f'action="{CONNECT}"' in content


def test_admin_index_hides_banner_from_staff_without_change_permission(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == 200
    assert "Connect Constant Contact" not in response.content.decode()


def test_admin_index_hides_banner_once_connected(admin_client, connection):
    content = admin_client.get("/admin/").content.decode()
    assert "Connect Constant Contact" not in content
    assert "Constant Contact is not connected" not in content


def test_admin_index_shows_reconnect_banner_when_connection_needs_reconnect(admin_client, db):
    make_connection(status=Connection.Status.NEEDS_RECONNECT, last_error="invalid_grant")
    content = admin_client.get("/admin/").content.decode()
    assert (
        "Constant Contact refused the stored authorization: signups are held until you reconnect." in content
    )
    assert "Reconnect</button>" in content
    assert "Connect Constant Contact</button>" not in content


def test_connection_page_shows_connect_button_when_not_connected(admin_client):
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'value="Connect Constant Contact"' in content
    assert 'value="Refresh now"' not in content
    assert 'value="Disconnect"' not in content
    assert REDIRECT_URI in content


def test_connection_page_shows_reconnect_refresh_disconnect_and_account_when_connected(
    admin_client, connection
):
    content = admin_client.get(PAGE).content.decode()
    assert 'value="Reconnect"' in content
    assert 'value="Refresh now"' in content
    assert 'value="Disconnect"' in content
    assert 'value="Connect Constant Contact"' not in content
    assert '<td class="cc-sync-account">Acme Inc' in content


def test_connection_page_never_shows_the_tokens(admin_client, connection):
    content = admin_client.get(PAGE).content.decode()
    assert "stored, encrypted" in content
    assert ACCESS_TOKEN not in content
    assert REFRESH_TOKEN not in content
    admin_index = admin_client.get("/admin/").content.decode()
    assert ACCESS_TOKEN not in admin_index
    assert REFRESH_TOKEN not in admin_index


def test_connection_str_does_not_contain_the_tokens(connection):
    assert str(connection) == "Acme Inc (Connected)"
    assert ACCESS_TOKEN not in str(connection)
    assert REFRESH_TOKEN not in str(connection)
    assert ACCESS_TOKEN not in repr(connection)


# -- who may do what --------------------------------------------------------------------------------

ACTIONS = [("post", CONNECT), ("get", CALLBACK), ("post", REFRESH), ("post", DISCONNECT), ("post", LISTS)]


@pytest.mark.parametrize(("method", "url"), ACTIONS)
def test_non_staff_user_is_sent_to_admin_login(plain_client, cc_api, method, url):
    response = getattr(plain_client, method)(url)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={url}"
    assert oauth.SESSION_KEY not in plain_client.session
    assert_nothing_stored()


@pytest.mark.parametrize(("method", "url"), ACTIONS)
def test_anonymous_visitor_is_sent_to_admin_login(client, db, cc_api, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize(("method", "url"), ACTIONS)
def test_staff_without_change_permission_gets_403(staff_client, cc_api, method, url):
    make_connection()
    response = getattr(staff_client, method)(url)
    assert response.status_code == 403
    assert oauth.SESSION_KEY not in staff_client.session
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert stored.access_token == ACCESS_TOKEN


@pytest.mark.parametrize("url", [CONNECT, REFRESH, DISCONNECT, LISTS])
def test_get_on_post_only_views_is_405(admin_client, connection, cc_api, url):
    response = admin_client.get(url)
    assert response.status_code == 405
    assert Connection.load().status == Connection.Status.CONNECTED
    assert oauth.SESSION_KEY not in admin_client.session


def test_post_without_csrf_token_is_refused(db, django_user_model, cc_api):
    admin = django_user_model.objects.create_superuser(
        username="boss", password="pw", email="boss@example.com"
    )
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin)
    response = csrf_client.post(CONNECT)
    assert response.status_code == 403
    assert oauth.SESSION_KEY not in csrf_client.session
    make_connection()
    assert csrf_client.post(DISCONNECT).status_code == 403
    assert Connection.load().status == Connection.Status.CONNECTED


# -- starting the flow ------------------------------------------------------------------------------


def test_connect_redirects_to_authorize_url_with_client_scope_and_state(admin_client, cc_api):
    params = start_connect(admin_client)
    assert params["client_id"] == "test-client-id"
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["response_type"] == "code"
    assert params["scope"] == SCOPES
    assert len(params["state"]) >= 32
    assert "code_challenge" not in params
    records = admin_client.session[oauth.SESSION_KEY]
    assert [record["state"] for record in records] == [params["state"]]
    assert records[0]["redirect_uri"] == REDIRECT_URI


def test_connect_sends_scopes_as_plus_separated_words(admin_client, cc_api):
    location = admin_client.post(CONNECT)["Location"]
    assert "scope=contact_data+offline_access+account_read" in location
    assert "%2B" not in location


def test_two_connects_give_different_states_both_kept_in_session(admin_client, cc_api):
    first = start_connect(admin_client)["state"]
    second = start_connect(admin_client)["state"]
    assert first != second
    assert [record["state"] for record in admin_client.session[oauth.SESSION_KEY]] == [first, second]


def test_connect_without_client_id_shows_error_instead_of_redirecting_to_cc(
    admin_client, cc_settings, cc_api
):
    del cc_settings["CLIENT_ID"]
    response = admin_client.post(CONNECT)
    assert response.status_code == 302
    assert response["Location"] == PAGE
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "CLIENT_ID" in text


def test_pkce_connect_sends_s256_challenge_and_exchange_uses_verifier_without_basic_auth(
    admin_client, cc_api, cc_settings, django_user_model
):
    cc_settings["OAUTH_FLOW"] = "pkce"
    del cc_settings["CLIENT_SECRET"]
    params = start_connect(admin_client)
    assert params["code_challenge_method"] == "S256"
    challenge = params["code_challenge"]
    [record] = admin_client.session[oauth.SESSION_KEY]
    verifier = record["code_verifier"]
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
    assert verifier not in admin_client.post(CONNECT)["Location"]

    token = cc_api.post(
        TOKEN_URL,
        json=token_body(),
        match=[
            no_authorization_header,
            matchers.urlencoded_params_matcher(
                {
                    "grant_type": "authorization_code",
                    "code": "pkce-code",
                    "redirect_uri": REDIRECT_URI,
                    "client_id": "test-client-id",
                    "code_verifier": verifier,
                }
            ),
        ],
    )
    expect_account_and_lists(cc_api)
    response = callback(admin_client, code="pkce-code", state=params["state"])
    assert response.status_code == 302
    assert token.call_count == 1
    sent = parse_qs(cc_api.calls[0].request.body)
    sent_digest = hashlib.sha256(sent["code_verifier"][0].encode("ascii")).digest()
    assert base64.urlsafe_b64encode(sent_digest).rstrip(b"=").decode() == challenge
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert stored.access_token == NEW_ACCESS


# -- the callback -----------------------------------------------------------------------------------


def test_callback_exchanges_code_and_stores_the_connection(admin_client, cc_api, django_user_model):
    state = start_connect(admin_client)["state"]
    token = expect_code_exchange(cc_api, "the-auth-code")
    account, lists = expect_account_and_lists(cc_api)

    before = timezone.now()
    response = callback(admin_client, code="the-auth-code", state=state)
    assert response.status_code == 302
    assert response["Location"] == PAGE
    assert (token.call_count, account.call_count, lists.call_count) == (1, 1, 1)
    assert messages_of(response) == [("success", "Connected to Constant Contact account Acme Inc.")]

    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert stored.access_token == NEW_ACCESS
    assert stored.refresh_token == NEW_REFRESH
    assert (
        before + timedelta(seconds=86400 - 5)
        <= stored.expires_at
        <= timezone.now() + timedelta(seconds=86400)
    )
    assert stored.scopes == SCOPES
    assert stored.account_name == "Acme Inc"
    assert stored.account_id == "acme-123"
    assert stored.connected_by == django_user_model.objects.get(username="admin")
    assert stored.available_lists == [
        {"list_id": LIST_ID, "name": "Newsletter"},
        {"list_id": OTHER_LIST_ID, "name": "Events"},
    ]
    assert admin_client.session[oauth.SESSION_KEY] == []

    with db_connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM cc_sync_connection")
        raw_access, raw_refresh = cursor.fetchone()
    assert NEW_ACCESS not in raw_access
    assert NEW_REFRESH not in raw_refresh

    page = admin_client.get(PAGE).content.decode()
    assert "Acme Inc" in page
    assert "admin" in page
    assert NEW_ACCESS not in page
    assert NEW_REFRESH not in page


def test_callback_success_message_is_shown_on_the_page(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    expect_code_exchange(cc_api, "code-1")
    expect_account_and_lists(cc_api)
    response = admin_client.get(f"{CALLBACK}?{urlencode({'code': 'code-1', 'state': state})}", follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    content = response.content.decode()
    assert "Connected to Constant Contact account Acme Inc." in content
    assert 'value="Refresh now"' in content


def test_callback_without_state_is_refused_without_token_request(admin_client, cc_api):
    start_connect(admin_client)
    response = callback(admin_client, code="some-code")
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "carried no state" in text
    assert_nothing_stored()


def test_callback_with_wrong_state_is_refused_without_token_request(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    response = callback(admin_client, code="some-code", state="not-the-issued-state")
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "unknown or was already used" in text
    assert "some-code" not in text
    assert_nothing_stored()
    assert [record["state"] for record in admin_client.session[oauth.SESSION_KEY]] == [state]


def test_callback_with_state_from_another_session_is_refused(admin_client, client, django_user_model, cc_api):
    state = start_connect(admin_client)["state"]
    other = django_user_model.objects.create_superuser(username="other", password="pw", email="o@example.com")
    client.force_login(other)
    response = callback(client, code="some-code", state=state)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "unknown or was already used" in text
    assert_nothing_stored()


def test_callback_with_non_ascii_state_is_refused_not_a_server_error(admin_client, cc_api):
    start_connect(admin_client)
    response = callback(admin_client, code="some-code", state="é-forged")
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "unknown or was already used" in text
    assert_nothing_stored()


def test_state_that_succeeded_cannot_be_used_again(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    token = expect_code_exchange(cc_api, "first-code")
    expect_account_and_lists(cc_api)
    callback(admin_client, code="first-code", state=state)
    assert Connection.load().access_token == NEW_ACCESS

    response = callback(admin_client, code="first-code", state=state)
    level, text = messages_of(response)[-1]
    assert level == "error"
    assert "unknown or was already used" in text
    assert token.call_count == 1
    assert Connection.load().access_token == NEW_ACCESS


def test_state_used_once_for_a_denial_cannot_be_used_again(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    callback(admin_client, error="access_denied", state=state)
    response = callback(admin_client, code="late-code", state=state)
    level, text = messages_of(response)[-1]
    assert level == "error"
    assert "unknown or was already used" in text
    assert_nothing_stored()


def test_expired_state_is_refused_and_consumed(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    session = admin_client.session
    records = session[oauth.SESSION_KEY]
    records[0]["created"] -= oauth.STATE_MAX_AGE + 1
    session[oauth.SESSION_KEY] = records
    session.save()

    response = callback(admin_client, code="some-code", state=state)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "expired" in text
    assert_nothing_stored()
    assert admin_client.session[oauth.SESSION_KEY] == []


def test_state_just_inside_max_age_is_accepted(admin_client, cc_api, monkeypatch):
    state = start_connect(admin_client)["state"]
    created = admin_client.session[oauth.SESSION_KEY][0]["created"]
    monkeypatch.setattr(oauth, "time", SimpleNamespace(time=lambda: created + oauth.STATE_MAX_AGE - 1))
    expect_code_exchange(cc_api, "in-time")
    expect_account_and_lists(cc_api)
    callback(admin_client, code="in-time", state=state)
    assert Connection.load().status == Connection.Status.CONNECTED


def test_access_denied_is_refused_with_message(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    response = callback(admin_client, error="access_denied", error_description="User denied", state=state)
    assert response.status_code == 302
    assert messages_of(response) == [("error", "Access was denied at Constant Contact; nothing was stored.")]
    assert_nothing_stored()


def test_callback_without_code_is_refused(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    response = callback(admin_client, state=state)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "no authorization code" in text
    assert_nothing_stored()


def test_token_endpoint_invalid_grant_is_refused_and_stores_nothing(admin_client, cc_api):
    state = start_connect(admin_client)["state"]
    token = expect_code_exchange(
        cc_api,
        "stale-code",
        status=400,
        json={
            "error": "invalid_grant",
            "error_description": "The authorization code is invalid or has expired.",
        },
    )
    response = callback(admin_client, code="stale-code", state=state)
    assert token.call_count == 1
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "invalid_grant" in text
    assert "stale-code" not in text
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("response_kwargs", "expected"),
    [
        ({"status": 503, "body": "<html>Service Unavailable</html>"}, "unavailable"),
        ({"status": 500, "json": {"error": "server_error"}}, "unavailable"),
        ({"body": requests.exceptions.ReadTimeout("read timed out")}, "did not answer in time"),
        ({"body": requests.exceptions.ConnectionError("refused")}, "Could not reach Constant Contact"),
    ],
    ids=["503", "500", "timeout", "connection-error"],
)
def test_token_endpoint_failure_is_refused_and_stores_nothing(
    admin_client, cc_api, response_kwargs, expected
):
    state = start_connect(admin_client)["state"]
    token = expect_code_exchange(cc_api, "good-code", **response_kwargs)
    response = callback(admin_client, code="good-code", state=state)
    assert response.status_code == 302
    assert token.call_count == 1
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert expected in text
    assert_nothing_stored()


def test_failed_reconnect_keeps_the_existing_connection(admin_client, connection, cc_api):
    state = start_connect(admin_client)["state"]
    expect_code_exchange(cc_api, "bad", status=400, json={"error": "invalid_grant"})
    callback(admin_client, code="bad", state=state)
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert stored.access_token == ACCESS_TOKEN
    assert stored.refresh_token == REFRESH_TOKEN


# -- refresh, disconnect, lists ---------------------------------------------------------------------


def test_refresh_now_spends_the_refresh_token_and_stores_the_new_pair(admin_client, connection, cc_api):
    token = cc_api.post(
        TOKEN_URL,
        json=token_body(),
        match=[
            matchers.header_matcher(BASIC),
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}
            ),
        ],
    )
    lists = cc_api.get(
        f"{API_URL}/contact_lists",
        json={"lists": [{"list_id": LIST_ID, "name": "Newsletter"}]},
        match=[
            matchers.header_matcher({"Authorization": f"Bearer {NEW_ACCESS}"}),
            matchers.query_param_matcher({"limit": "500"}),
        ],
    )
    response = admin_client.post(REFRESH)
    assert response.status_code == 302
    assert response["Location"] == PAGE
    assert (token.call_count, lists.call_count) == (1, 1)
    assert messages_of(response) == [("success", "The access token and the lists were refreshed.")]
    stored = Connection.load()
    assert stored.access_token == NEW_ACCESS
    assert stored.refresh_token == NEW_REFRESH
    assert stored.expires_at > timezone.now() + timedelta(seconds=86000)
    assert stored.available_lists == [{"list_id": LIST_ID, "name": "Newsletter"}]


def test_refresh_now_refused_grant_shows_error_and_marks_needs_reconnect(admin_client, connection, cc_api):
    cc_api.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "The refresh token is invalid or expired."},
        match=[matchers.header_matcher(BASIC)],
    )
    response = admin_client.post(REFRESH)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text.startswith("Refreshing failed:")
    assert REFRESH_TOKEN not in text
    assert Connection.load().status == Connection.Status.NEEDS_RECONNECT


def test_disconnect_clears_tokens_and_sets_status_disconnected(admin_client, connection, cc_api):
    response = admin_client.post(DISCONNECT)
    assert response.status_code == 302
    [(level, _text)] = messages_of(response)
    assert level == "success"
    stored = Connection.load()
    assert stored.status == Connection.Status.DISCONNECTED
    assert stored.access_token == ""
    assert stored.refresh_token == ""
    assert stored.expires_at is None
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM cc_sync_connection")
        assert cursor.fetchone() == ("", "")
    assert 'value="Connect Constant Contact"' in admin_client.get(PAGE).content.decode()


def test_choosing_lists_saves_only_known_ids_and_releases_held_signups(
    admin_client, cc_api, published, django_capture_on_commit_callbacks
):
    make_connection(
        available_lists=[
            {"list_id": LIST_ID, "name": "Newsletter"},
            {"list_id": OTHER_LIST_ID, "name": "Events"},
        ]
    )
    held = Signup.objects.create(email="held@example.com", status=Signup.Status.WAITING_RECONNECT)
    failed = Signup.objects.create(email="failed@example.com", status=Signup.Status.FAILED)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(LISTS, {"list_ids": [OTHER_LIST_ID, "not-in-the-account", LIST_ID]})
    assert response.status_code == 302
    assert messages_of(response) == [("success", "Signups now go to: Events, Newsletter.")]
    assert Connection.load().list_ids == [OTHER_LIST_ID, LIST_ID]
    held.refresh_from_db()
    failed.refresh_from_db()
    assert held.status == Signup.Status.PENDING
    assert held.enqueued_at is None
    assert failed.status == Signup.Status.FAILED
    assert [call["task"] for call in published] == ["cc_sync.sweep_due_signups"]


def test_choosing_only_unknown_lists_saves_nothing(admin_client, cc_api, published):
    make_connection(available_lists=[{"list_id": LIST_ID, "name": "Newsletter"}], list_ids=[LIST_ID])
    held = Signup.objects.create(email="held@example.com", status=Signup.Status.WAITING_RECONNECT)
    response = admin_client.post(LISTS, {"list_ids": ["forged-id"]})
    assert messages_of(response) == [
        ("error", "Choose at least one Constant Contact list. Nothing was saved.")
    ]
    assert Connection.load().list_ids == [LIST_ID]
    held.refresh_from_db()
    assert held.status == Signup.Status.WAITING_RECONNECT
    assert published == []


def grant(user, codename: str) -> None:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="cc_sync", codename=codename))


def test_staff_with_view_permission_sees_page_without_buttons_and_cannot_connect(
    client, django_user_model, cc_api
):
    viewer = django_user_model.objects.create_user(username="viewer", password="pw", is_staff=True)
    grant(viewer, "view_connection")
    client.force_login(viewer)
    page = client.get(PAGE)
    assert page.status_code == 200
    content = page.content.decode()
    assert "Connect Constant Contact" not in content
    assert client.post(CONNECT).status_code == 403
    assert "Connect Constant Contact" not in client.get("/admin/").content.decode()


def test_staff_with_change_permission_can_connect(client, django_user_model, cc_api):
    editor = django_user_model.objects.create_user(username="editor", password="pw", is_staff=True)
    grant(editor, "change_connection")
    client.force_login(editor)
    assert "Connect Constant Contact</button>" in client.get("/admin/").content.decode()
    state = start_connect(client)["state"]
    expect_code_exchange(cc_api, "editor-code")
    expect_account_and_lists(cc_api)
    callback(client, code="editor-code", state=state)
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert stored.connected_by == editor


DEVICE = {
    "device_code": "device-code-eeeeeeeeeeeeeeee",
    "user_code": "WDJB-MJHT",
    "verification_uri": "https://authz.cc.test/activate",
    "verification_uri_complete": "https://authz.cc.test/activate?user_code=WDJB-MJHT",
    "expires_in": 600,
    "interval": 5,
}
DEVICE_PAGE = PAGE + "device/"


@pytest.fixture
def device_flow(cc_settings, monkeypatch):
    """A device-flow application, and a clock for the admin's polling pace (pinned, moved by the test)."""
    from cc_sync import admin as cc_admin

    cc_settings.update(OAUTH_FLOW="device", CLIENT_SECRET="")
    clock = SimpleNamespace(now=1_800_000_000.0)
    monkeypatch.setattr(cc_admin.time, "time", lambda: clock.now)
    return clock


def expect_device_start(cc_api):
    return cc_api.post(
        DEVICE_URL,
        json=DEVICE,
        match=[
            no_authorization_header,
            matchers.urlencoded_params_matcher({"client_id": "test-client-id", "scope": SCOPES}),
        ],
    )


def expect_device_poll(cc_api, **kwargs):
    grant = {"grant_type": DEVICE_GRANT, "device_code": DEVICE["device_code"], "client_id": "test-client-id"}
    return cc_api.post(
        TOKEN_URL, match=[no_authorization_header, matchers.urlencoded_params_matcher(grant)], **kwargs
    )


def test_the_connection_page_of_a_device_flow_application_shows_no_redirect_uri(admin_client, device_flow):
    content = admin_client.get(PAGE).content.decode()
    assert "Redirect URI to register" not in content
    assert REDIRECT_URI not in content
    assert "Device flow" in content
    assert 'value="Connect Constant Contact"' in content


def test_connect_with_a_device_flow_application_shows_the_link_and_code_and_connects_when_approved(
    admin_client, device_flow, cc_api
):
    expect_device_start(cc_api)
    response = admin_client.post(CONNECT)
    assert (response.status_code, response["Location"]) == (302, DEVICE_PAGE)
    page = admin_client.get(DEVICE_PAGE).content.decode()
    assert DEVICE["verification_uri_complete"] in page
    assert "WDJB-MJHT" in page
    assert "`" not in page.split('id="content-main"')[1]  # no literal Markdown in what the admin reads
    assert DEVICE["device_code"] not in page

    # Too early: CC is not asked (it would answer slow_down).
    assert admin_client.post(DEVICE_PAGE)["Location"] == DEVICE_PAGE
    # Pending: asked once, still waiting.
    device_flow.now += 5
    expect_device_poll(cc_api, status=400, json={"error": "authorization_pending"})
    assert admin_client.post(DEVICE_PAGE)["Location"] == DEVICE_PAGE
    # Approved: stored, back on the connection page.
    device_flow.now += 5
    expect_device_poll(cc_api, json=token_body())
    expect_account_and_lists(cc_api)
    response = admin_client.post(DEVICE_PAGE, follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    assert "Connected to Constant Contact account Acme Inc." in response.content.decode()
    stored = Connection.load()
    assert (stored.status, stored.access_token) == (Connection.Status.CONNECTED, NEW_ACCESS)
    assert "cc_sync_device_flow" not in admin_client.session


def test_a_denied_device_authorization_stores_nothing_and_says_so(admin_client, device_flow, cc_api):
    expect_device_start(cc_api)
    admin_client.post(CONNECT)
    device_flow.now += 5
    expect_device_poll(cc_api, status=400, json={"error": "access_denied"})
    response = admin_client.post(DEVICE_PAGE)
    assert response["Location"] == PAGE
    [(level, text)] = messages_of(response)
    assert level == "error" and "access_denied" in text and "nothing was stored" in text
    assert_nothing_stored()


def test_an_expired_device_code_is_not_polled(admin_client, device_flow, cc_api):
    expect_device_start(cc_api)
    admin_client.post(CONNECT)
    device_flow.now += 601
    response = admin_client.post(DEVICE_PAGE)
    assert response["Location"] == PAGE
    assert "in time" in messages_of(response)[0][1]
    assert_nothing_stored()


# -- tokens the configured keys cannot read -------------------------------------------------------------

OTHER_KEY = "Zm9yZWlnbi1rZXktbm90LXVzZWQtYnktdGhpcy1zaXQ="


@pytest.fixture
def unreadable(db, cc_settings):
    """A connection whose tokens were written under a key that is no longer configured."""
    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = [OTHER_KEY]


def test_connection_page_says_the_tokens_cannot_be_read_and_what_to_do(admin_client, unreadable):
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    content = response.content.decode()
    assert "The stored tokens cannot be read with the configured ENCRYPTION_KEYS" in content
    assert "Restore the old key" in content and "or reconnect" in content
    assert "cc-sync-status-connected" in content
    assert ">Stored tokens cannot be read</span>" in content  # not shown as connected
    assert 'value="Reconnect"' in content
    assert 'value="Disconnect"' in content
    assert 'value="Refresh now"' not in content
    assert "stored, cannot be decrypted with the configured keys" in content


def test_every_admin_page_works_when_the_tokens_cannot_be_read(admin_client, unreadable):
    Signup.objects.create(email="kept@example.com")
    index = admin_client.get("/admin/")
    assert index.status_code == 200
    assert "cannot be read with the configured ENCRYPTION_KEYS: restore the old key or reconnect" in (
        index.content.decode()
    )
    assert "Reconnect</button>" in index.content.decode()
    assert admin_client.get("/admin/cc_sync/signup/").status_code == 200
    assert admin_client.get("/admin/cc_sync/suppression/").status_code == 200


def test_disconnect_works_when_the_tokens_cannot_be_read(admin_client, unreadable, cc_api):
    response = admin_client.post(DISCONNECT)
    assert response.status_code == 302
    stored = Connection.load()
    assert stored.status == Connection.Status.DISCONNECTED
    assert (stored.access_token, stored.refresh_token) == ("", "")
    assert 'value="Connect Constant Contact"' in admin_client.get(PAGE).content.decode()


def test_reconnect_works_when_the_tokens_cannot_be_read(admin_client, unreadable, cc_api):
    state = start_connect(admin_client)["state"]
    expect_code_exchange(cc_api, "new-code")
    expect_account_and_lists(cc_api)
    callback(admin_client, code="new-code", state=state)
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)
    assert "cannot be read" not in admin_client.get(PAGE).content.decode()


# -- the list choice -----------------------------------------------------------------------------------

MISSING_LIST_ID = "5c1c6a3e-0000-4000-8000-00000000dead"


def many_lists(count: int) -> list[dict[str, str]]:
    return [{"list_id": f"{i:08x}-662a-11eb-af0a-fa163e56c9b0", "name": f"List {i}"} for i in range(count)]


def test_choosing_more_than_50_lists_is_refused_with_a_message(admin_client, cc_api, published):
    lists = many_lists(51)
    make_connection(available_lists=lists, list_ids=[LIST_ID])
    response = admin_client.post(LISTS, {"list_ids": [item["list_id"] for item in lists]})
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "at most 50 lists" in text and "Nothing was saved." in text
    assert Connection.load().list_ids == [LIST_ID]


def test_a_list_id_that_is_not_a_uuid_is_refused_with_a_message(admin_client, cc_api, published):
    make_connection(available_lists=[{"list_id": "newsletter", "name": "Newsletter"}], list_ids=[LIST_ID])
    response = admin_client.post(LISTS, {"list_ids": ["newsletter"]})
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "'newsletter' is not a Constant Contact list id" in text
    assert Connection.load().list_ids == [LIST_ID]


def test_a_valid_choice_clears_missing_lists_and_releases_signups_held_for_a_list(
    admin_client, cc_api, cc_settings, published, django_capture_on_commit_callbacks
):
    cc_settings["LIST_IDS"] = []
    make_connection(
        available_lists=[{"list_id": OTHER_LIST_ID, "name": "Events"}],
        list_ids=[MISSING_LIST_ID],
        missing_list_ids=[MISSING_LIST_ID],
    )
    held = Signup.objects.create(email="held@example.com", status=Signup.Status.WAITING_LIST)
    page = admin_client.get(PAGE).content.decode()
    assert f"List {MISSING_LIST_ID} no longer exists at Constant Contact; choose another." in page
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(LISTS, {"list_ids": [OTHER_LIST_ID]})
    stored = Connection.load()
    assert (stored.list_ids, stored.missing_list_ids) == ([OTHER_LIST_ID], [])
    held.refresh_from_db()
    assert held.status == Signup.Status.PENDING
    assert "no longer exists" not in admin_client.get(PAGE).content.decode()


# -- what the page counts and says ----------------------------------------------------------------------


def test_connection_page_counts_signups_awaiting_confirmation_and_waiting_for_a_list(
    admin_client, connection
):
    Signup.objects.create(email="a@example.com", status=Signup.Status.AWAITING_CONFIRMATION)
    Signup.objects.create(email="b@example.com", status=Signup.Status.AWAITING_CONFIRMATION)
    Signup.objects.create(email="c@example.com", status=Signup.Status.WAITING_LIST)
    content = admin_client.get(PAGE).content.decode()
    assert "<th>Awaiting confirmation</th><td>2</td>" in content
    assert "<th>Waiting for a list</th><td>1</td>" in content


def test_connection_page_shows_the_signups_in_unfinished_bulk_imports(admin_client, connection):
    assert "In bulk imports" not in admin_client.get(PAGE).content.decode()
    running = SurgeBatch.objects.create(status=SurgeBatch.Status.PENDING)
    for i in range(2):
        Signup.objects.create(email=f"bulk{i}@example.com", status=Signup.Status.SYNCING, surge_batch=running)
    content = admin_client.get(PAGE).content.decode()
    assert "<th>In bulk imports (surge mode)</th><td>2 signups in 1 import</td>" in content


NOW = timezone.make_aware(timezone.datetime(2031, 3, 4, 10, 0))


@pytest.fixture
def pinned_admin(client, admin_user, monkeypatch):
    """An admin logged in at a pinned time (``timezone.now()`` is NOW, the session too)."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    client.force_login(admin_user)
    return client


def test_connection_page_says_when_the_daily_quota_is_spent(pinned_admin, connection):
    admin_client = pinned_admin
    RateLimitState.objects.update_or_create(name="api", defaults={"blocked_until": NOW + timedelta(hours=3)})
    content = admin_client.get(PAGE).content.decode()
    assert (
        "Constant Contact's daily quota is spent; cc_sync waits until 2031-03-04 13:00 UTC and probes "
        "sparingly." in content
    )
    RateLimitState.objects.filter(name="api").update(blocked_until=NOW - timedelta(minutes=1))
    content = admin_client.get(PAGE).content.decode()
    assert "daily quota is spent" not in content
    assert "daily quota was spent; cc_sync probes whether it is back (since 2031-03-04 09:59 UTC)" in content
    RateLimitState.objects.filter(name="api").update(blocked_until=None)  # a probe was accepted
    assert "daily quota" not in admin_client.get(PAGE).content.decode()


# -- tokens stay out of error pages ---------------------------------------------------------------------


def debug_page_client(settings, admin_client) -> Client:
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.cookies = admin_client.cookies
    return client


def test_an_error_while_connecting_shows_no_verifier_or_state_on_the_debug_page(
    admin_client, settings, cc_settings, cc_api, monkeypatch
):
    cc_settings.update(OAUTH_FLOW="pkce", CLIENT_SECRET="")
    monkeypatch.setattr(oauth, "pkce_pair", lambda: ("VERIFIER-which-must-stay-secret", "challenge"))
    monkeypatch.setattr(oauth.secrets, "token_urlsafe", lambda n: "STATE-which-must-stay-secret")
    monkeypatch.setattr("cc_sync.admin.HttpResponseRedirect", dict)  # fails inside the view itself
    response = debug_page_client(settings, admin_client).post(CONNECT)
    assert response.status_code == 500
    content = response.content.decode()
    assert "ValueError" in content  # Django's debug page, with the view's frame
    assert "VERIFIER-which-must-stay-secret" not in content
    assert "STATE-which-must-stay-secret" not in content


def test_an_error_inside_the_list_fetch_of_refresh_now_shows_no_token_on_the_debug_page(
    admin_client, settings, connection, cc_api, monkeypatch
):
    cc_api.post(TOKEN_URL, json=token_body())

    def failing_fetch(self, access_token):
        raise RuntimeError("the list fetch broke")

    monkeypatch.setattr(ConstantContactClient, "contact_lists", failing_fetch)
    response = debug_page_client(settings, admin_client).post(REFRESH)
    assert response.status_code == 500
    content = response.content.decode()
    assert "the list fetch broke" in content
    for token in (NEW_ACCESS, NEW_REFRESH, ACCESS_TOKEN, REFRESH_TOKEN):
        assert token not in content


# -- signups: held statuses, bulk actions ----------------------------------------------------------------

SIGNUPS = "/admin/cc_sync/signup/"


@pytest.mark.parametrize("status", [Signup.Status.AWAITING_CONFIRMATION, Signup.Status.WAITING_LIST])
def test_signups_in_the_new_holds_are_listed_and_filterable(admin_client, db, status):
    Signup.objects.create(email="held@example.com", status=status)
    Signup.objects.create(email="other@example.com", status=Signup.Status.SYNCED)
    content = admin_client.get(f"{SIGNUPS}?status__exact={status.value}").content.decode()
    assert "held@example.com" in content
    assert "other@example.com" not in content
    assert (
        f"?status__exact={status.value}" in admin_client.get(SIGNUPS).content.decode()
    )  # offered in the filter


@pytest.mark.parametrize("action", ["retry_now", "mark_failed"])
def test_bulk_actions_ask_for_confirmation_first_and_change_nothing(admin_client, db, published, action):
    failed = Signup.objects.create(email="f@example.com", status=Signup.Status.FAILED)
    pending = Signup.objects.create(email="p@example.com")
    response = admin_client.post(SIGNUPS, {"action": action, "_selected_action": [failed.pk, pending.pk]})
    assert response.status_code == 200
    assert "admin/cc_sync/signup/action_confirmation.html" in [t.name for t in response.templates]
    content = response.content.decode()
    assert "Are you sure?" in content
    assert f'name="_selected_action" value="{failed.pk}"' in content
    assert 'name="post" value="yes"' in content
    failed.refresh_from_db()
    pending.refresh_from_db()
    assert (failed.status, pending.status) == (Signup.Status.FAILED, Signup.Status.PENDING)
    assert published == []


def in_flight_and_stale(now):
    live = Signup.objects.create(
        email="live@example.com", status=Signup.Status.SYNCING, lease_expires_at=now + timedelta(seconds=60)
    )
    dead = Signup.objects.create(
        email="dead@example.com", status=Signup.Status.SYNCING, lease_expires_at=now - timedelta(seconds=1)
    )
    failed = Signup.objects.create(email="f@example.com", status=Signup.Status.FAILED)
    return live, dead, failed


def test_retry_skips_rows_a_worker_holds_and_says_so(
    pinned_admin, published, django_capture_on_commit_callbacks
):
    admin_client = pinned_admin
    live, dead, failed = in_flight_and_stale(NOW)
    page = admin_client.post(
        SIGNUPS, {"action": "retry_now", "_selected_action": [live.pk, dead.pk, failed.pk]}
    )
    assert "1 of them is being sent by a worker right now and will be skipped." in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            SIGNUPS, {"action": "retry_now", "_selected_action": [live.pk, dead.pk, failed.pk], "post": "yes"}
        )
    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", "2 signups queued again."),
        (
            "warning",
            "1 signup was skipped: a worker is sending it right now (status syncing). "
            "Look again once its attempt has finished.",
        ),
    ]
    for signup in (live, dead, failed):
        signup.refresh_from_db()
    assert live.status == Signup.Status.SYNCING
    assert (dead.status, failed.status) == (Signup.Status.PENDING, Signup.Status.PENDING)


def test_mark_failed_skips_rows_a_worker_holds_and_says_so(pinned_admin):
    admin_client = pinned_admin
    live, dead, _failed = in_flight_and_stale(NOW)
    response = admin_client.post(
        SIGNUPS, {"action": "mark_failed", "_selected_action": [live.pk, dead.pk], "post": "yes"}
    )
    assert messages_of(response)[0] == ("success", "1 signups marked as failed.")
    assert messages_of(response)[1][0] == "warning"
    live.refresh_from_db()
    dead.refresh_from_db()
    assert (live.status, dead.status) == (Signup.Status.SYNCING, Signup.Status.FAILED)


# -- suppressions -------------------------------------------------------------------------------------------


def test_suppressions_cannot_be_added_edited_or_deleted_in_the_admin(admin_client, db):
    entry = Suppression.objects.create(email_hash="a" * 64, reason=Suppression.Reason.ERASED)
    listing = admin_client.get("/admin/cc_sync/suppression/").content.decode()
    assert "delete_selected" not in listing
    assert admin_client.get(f"/admin/cc_sync/suppression/{entry.pk}/delete/").status_code == 403
    assert (
        admin_client.post(f"/admin/cc_sync/suppression/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert admin_client.get("/admin/cc_sync/suppression/add/").status_code == 403
    admin_client.post(f"/admin/cc_sync/suppression/{entry.pk}/change/", {"reason": "unsubscribed"})
    entry.refresh_from_db()
    assert entry.reason == Suppression.Reason.ERASED
    assert Suppression.objects.filter(pk=entry.pk).exists()


def test_lifted_suppressions_are_shown_read_only(admin_client, db):
    lift = SuppressionLift.objects.create(
        email_hash="b" * 64, original_reason="erased", reason="asked again by phone", lifted_by="ops"
    )
    listing = admin_client.get("/admin/cc_sync/suppressionlift/").content.decode()
    assert "asked again by phone" in listing
    assert "delete_selected" not in listing
    assert admin_client.get(f"/admin/cc_sync/suppressionlift/{lift.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/cc_sync/suppressionlift/add/").status_code == 403


# -- after Connect: choose the lists ---------------------------------------------------------------------


def test_once_connected_every_admin_page_asks_to_choose_the_lists_until_they_are_chosen(
    admin_client, connection, cc_settings, cc_api, published
):
    cc_settings["LIST_IDS"] = []
    Connection.objects.filter(pk=connection.pk).update(
        available_lists=[{"list_id": LIST_ID, "name": "Newsletter"}], list_ids=[]
    )
    for url in ("/admin/", PAGE, "/admin/cc_sync/signup/"):
        content = admin_client.get(url).content.decode()
        assert "Choose the lists that signups go to" in content, url
    assert 'href="/admin/cc_sync/connection/#lists"' in admin_client.get("/admin/").content.decode()
    assert "cc-sync-choose-lists" in admin_client.get(PAGE).content.decode()

    admin_client.post(LISTS, {"list_ids": [LIST_ID]})
    for url in ("/admin/", PAGE):
        assert "Choose the lists that signups go to" not in admin_client.get(url).content.decode(), url


def test_lists_set_in_the_settings_need_no_choice(admin_client, connection, cc_settings):
    cc_settings["LIST_IDS"] = [LIST_ID]
    Connection.objects.filter(pk=connection.pk).update(list_ids=[])
    assert "Choose the lists" not in admin_client.get("/admin/").content.decode()
    assert "Choose the lists" not in admin_client.get(PAGE).content.decode()


def test_signups_of_a_site_never_connected_wait_for_a_connection_not_a_reconnect(admin_client, db):
    Signup.objects.create(email="early@example.com", status=Signup.Status.WAITING_RECONNECT)
    content = admin_client.get("/admin/cc_sync/signup/").content.decode()
    assert "Waiting for a connection" in content
    assert "waiting for reconnect" not in content.lower()
    assert "Waiting for a connection" in admin_client.get(PAGE).content.decode()


# -- the breadcrumbs: the admin's own, on every Django version --------------------------------------------


def breadcrumbs(html: str) -> str:
    import re

    match = re.search(r'<nav aria-label="Breadcrumbs">(.*?)</nav>', html, re.DOTALL) or re.search(
        r'(<div class="breadcrumbs">.*?</div>)', html, re.DOTALL
    )
    assert match, "no breadcrumbs"
    return re.sub(r"\s+", " ", match.group(1)).strip()


def test_the_connection_and_confirmation_pages_draw_the_breadcrumbs_as_the_admins_change_list_does(
    admin_client, db, published
):
    """Django 6.1 draws <ol class="breadcrumbs"><li>, earlier versions a <div>: the pages follow the admin."""
    signups = breadcrumbs(admin_client.get(SIGNUPS).content.decode())
    own = signups.replace("Signups", "Constant Contact connections")
    assert breadcrumbs(admin_client.get(PAGE).content.decode()) == own
    failed = Signup.objects.create(email="f@example.com", status=Signup.Status.FAILED)
    confirmation = admin_client.post(SIGNUPS, {"action": "retry_now", "_selected_action": [failed.pk]})
    assert breadcrumbs(confirmation.content.decode()) == signups


# -- signups: the change list and the read-only detail page ----------------------------------------------


def test_synced_signups_show_no_next_attempt_and_pending_ones_do(admin_client, db):
    from django.contrib.admin.sites import site

    now = timezone.now()
    synced = Signup.objects.create(email="s@example.com", status=Signup.Status.SYNCED, synced_at=now)
    pending = Signup.objects.create(email="p@example.com", next_attempt_at=now)
    model_admin = site._registry[Signup]
    short = timezone.localtime(now).strftime("%Y-%m-%d %H:%M")
    assert model_admin.synced_or_next_attempt(synced) == short  # when it was synced, not a next attempt
    assert model_admin.synced_or_next_attempt(pending) == short
    failed = Signup.objects.create(email="f@example.com", status=Signup.Status.FAILED, next_attempt_at=now)
    assert model_admin.synced_or_next_attempt(failed) is None
    assert "next_attempt_at" not in model_admin.list_display
    content = admin_client.get(f"/admin/cc_sync/signup/{synced.pk}/change/").content.decode()
    assert "Next attempt at" not in content and "Give up after" not in content
    content = admin_client.get(f"/admin/cc_sync/signup/{pending.pk}/change/").content.decode()
    assert "Next attempt at" in content


def test_the_signup_detail_page_is_read_only_without_save_buttons(admin_client, db):
    signup = Signup.objects.create(email="r@example.com", status=Signup.Status.FAILED, last_error="boom")
    url = f"/admin/cc_sync/signup/{signup.pk}/change/"
    content = admin_client.get(url).content.decode()
    assert "r@example.com" in content
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"'):
        assert button not in content
    assert admin_client.post(url, {"email": "changed@example.com"}).status_code == 403
    assert 'Failed<br><span class="quiet">boom</span>' in admin_client.get(SIGNUPS).content.decode()
    signup.refresh_from_db()
    assert (signup.email, signup.status) == ("r@example.com", Signup.Status.FAILED)


def test_the_signup_detail_page_and_list_show_lists_by_name(admin_client, connection):
    Connection.objects.filter(pk=connection.pk).update(
        available_lists=[
            {"list_id": LIST_ID, "name": "Newsletter"},
            {"list_id": OTHER_LIST_ID, "name": "Events"},
        ]
    )
    signup = Signup.objects.create(email="n@example.com", list_ids=[LIST_ID, OTHER_LIST_ID])
    detail = admin_client.get(f"/admin/cc_sync/signup/{signup.pk}/change/").content.decode()
    assert "Newsletter, Events" in detail
    assert LIST_ID not in detail
    listing = admin_client.get(SIGNUPS).content.decode()
    assert "Newsletter, Events" in listing
    defaults = Signup.objects.create(email="d@example.com")
    assert (
        "(the default lists)"
        in admin_client.get(f"/admin/cc_sync/signup/{defaults.pk}/change/").content.decode()
    )
