"""The admin with several Constant Contact connections: the list, each connection's page and actions, adding,
editing and deleting connections, the index banner. (One connection: tests/test_admin_connect.py.)"""

from __future__ import annotations

import base64
import re
import threading
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection as db_connection
from django.utils import timezone
from responses import matchers

from cc_sync import publisher, tasks
from cc_sync.client import DEVICE_GRANT
from cc_sync.models import Connection, Signup
from rig.cc import make_connection, no_authorization_header, token_body
from rig.constants import (
    ACCESS_TOKEN,
    API_URL,
    AUTHORIZE_URL,
    DEVICE_URL,
    LIST_ID,
    REDIRECT_URI,
    SCOPES,
    TOKEN_URL,
)

PAGE = "/admin/cc_sync/connection/"
ADD = PAGE + "add/"
CALLBACK = PAGE + "callback/"

B_CLIENT_ID = "shop-client-id"
B_SECRET = "shop-client-secret-which-is-never-shown"
B_ACCESS = "shop-access-token-cccccccccccccccccccc"
B_REFRESH = "shop-refresh-token-dddddddddddddddddddd"
B_LIST = "3c0ffee0-662a-11eb-af0a-fa163e56c9b0"
B_OTHER_LIST = "4c0ffee0-662a-11eb-af0a-fa163e56c9b0"
NEW_ACCESS = "new-shop-access-token-eeeeeeeeeeeeeeee"
NEW_REFRESH = "new-shop-refresh-token-ffffffffffffffff"
B_BASIC = {"Authorization": "Basic " + base64.b64encode(f"{B_CLIENT_ID}:{B_SECRET}".encode()).decode()}


def make_shop(**fields) -> Connection:
    """A second connection ("shop"), connected to its own account with its own application."""
    values = {
        "name": "Shop",
        "slug": "shop",
        "client_id": B_CLIENT_ID,
        "client_secret": B_SECRET,
        "status": Connection.Status.CONNECTED,
        "access_token": B_ACCESS,
        "refresh_token": B_REFRESH,
        "expires_at": timezone.now() + timedelta(hours=1),
        "account_name": "Shop Corp",
        "last_refreshed_at": timezone.now(),
        "connected_at": timezone.now(),
        "available_lists": [
            {"list_id": B_LIST, "name": "Customers"},
            {"list_id": B_OTHER_LIST, "name": "VIP"},
        ],
        "list_ids": [B_LIST],
    }
    values.update(fields)
    return Connection.objects.create(**values)


@pytest.fixture
def two(db):
    """The default connection (Acme Inc, the settings' application, a list chosen) and "shop"."""
    default = make_connection(
        available_lists=[{"list_id": LIST_ID, "name": "Newsletter"}], list_ids=[LIST_ID]
    )
    return SimpleNamespace(default=default, shop=make_shop())


def page_of(connection: Connection) -> str:
    return f"{PAGE}{connection.pk}/"


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def row_of(content: str, slug: str) -> str:
    match = re.search(
        rf'<tr class="cc-sync-connection-row" data-slug="{slug}">(.*?)</tr>', content, re.DOTALL
    )
    assert match, f"no row for {slug}"
    return match.group(1)


# -- the list and each connection's page ------------------------------------------------------------


def test_with_two_connections_the_change_list_lists_them_with_account_status_application_and_counts(
    admin_client, two
):
    Signup.objects.create(email="a@example.com")  # no connection named: the default's
    Signup.objects.create(email="b@example.com", connection=two.shop)
    Signup.objects.create(email="c@example.com", connection=two.shop, status=Signup.Status.SYNCING)
    Signup.objects.create(email="d@example.com", connection=two.shop, status=Signup.Status.WAITING_LIST)
    Signup.objects.create(email="e@example.com", connection=two.shop, status=Signup.Status.SYNCED)
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    assert "admin/cc_sync/connection/connection_list.html" in [t.name for t in response.templates]
    content = response.content.decode()
    default_row, shop_row = row_of(content, "default"), row_of(content, "shop")
    assert f'<a href="{page_of(two.default)}">Constant Contact</a>' in default_row
    assert f'<a href="{page_of(two.shop)}">Shop</a>' in shop_row
    assert "Acme Inc" in default_row and "Shop Corp" in shop_row
    assert 'cc-sync-application">settings<' in default_row
    assert 'cc-sync-application">own<' in shop_row
    assert '<td class="cc-sync-pending">1</td>' in default_row
    assert '<td class="cc-sync-held">0</td>' in default_row
    assert '<td class="cc-sync-pending">2</td>' in shop_row
    assert '<td class="cc-sync-held">1</td>' in shop_row
    # Each row acts on its own connection; the default's keep their URLs.
    assert f'action="{PAGE}refresh/"' in default_row
    assert f'action="{page_of(two.shop)}refresh/"' in shop_row
    assert f'action="{page_of(two.shop)}disconnect/"' in shop_row
    assert f'href="{ADD}"' in content


def test_each_connections_page_shows_its_own_account_lists_counts_and_actions(admin_client, two):
    Signup.objects.create(email="a@example.com", status=Signup.Status.FAILED)
    Signup.objects.create(email="b@example.com", connection=two.shop, status=Signup.Status.WAITING_LIST)
    response = admin_client.get(page_of(two.shop))
    assert response.status_code == 200
    assert "admin/cc_sync/connection/connection.html" in [t.name for t in response.templates]
    content = response.content.decode()
    assert '<td class="cc-sync-account">Shop Corp' in content
    assert f"own (<code>{B_CLIENT_ID}</code>)" in content
    assert 'value="B_LIST"' not in content
    assert f'value="{B_LIST}" checked' in content and f'value="{B_OTHER_LIST}">' in content
    assert LIST_ID not in content  # the default account's list is not offered here
    assert "<th>Waiting for a list</th><td>1</td>" in content
    assert "<th>Failed</th><td>0</td>" in content  # the default's failed signup is not counted here
    for action in ("connect", "refresh", "disconnect", "lists"):
        assert f'action="{page_of(two.shop)}{action}/"' in content
    assert f'href="/admin/cc_sync/signup/?connection__id__exact={two.shop.pk}"' in content
    # Its breadcrumbs lead back to the list of connections.
    assert f'<a href="{PAGE}">Constant Contact connections</a>' in content

    default_page = admin_client.get(page_of(two.default)).content.decode()
    assert '<td class="cc-sync-account">Acme Inc' in default_page
    assert f'action="{PAGE}connect/"' in default_page
    assert "<th>Failed</th><td>1</td>" in default_page


def test_an_unknown_connection_is_a_404(admin_client, two):
    assert admin_client.get(f"{PAGE}9999/").status_code == 404
    assert admin_client.post(f"{PAGE}9999/disconnect/").status_code == 404


def test_with_one_connection_the_change_list_is_its_page_as_before(admin_client, db):
    make_connection(available_lists=[{"list_id": LIST_ID, "name": "Newsletter"}], list_ids=[LIST_ID])
    response = admin_client.get(PAGE)
    assert [t.name for t in response.templates][0] == "admin/cc_sync/connection/connection.html"
    content = response.content.decode()
    assert "cc-sync-connection-row" not in content
    assert '<td class="cc-sync-account">Acme Inc' in content
    for action in ("connect", "refresh", "disconnect"):
        assert f'action="{PAGE}{action}/"' in content
    assert "<th>Application</th>" not in content  # the page of a single connection, as it always was
    assert "<title>Constant Contact connection |" in content
    # Its actions come back to it.
    assert admin_client.post(f"{PAGE}disconnect/")["Location"] == PAGE


def test_actions_come_back_to_the_connections_own_page(admin_client, two):
    assert admin_client.post(f"{page_of(two.shop)}disconnect/")["Location"] == page_of(two.shop)
    assert admin_client.post(f"{PAGE}disconnect/")["Location"] == page_of(two.default)


# -- each connection's actions act on it alone -------------------------------------------------------


def test_disconnect_on_one_connection_leaves_the_other_connected(admin_client, two):
    response = admin_client.post(f"{page_of(two.shop)}disconnect/")
    assert messages_of(response)[0][0] == "success"
    shop, default = Connection.objects.get(pk=two.shop.pk), Connection.load()
    assert (shop.status, shop.access_token, shop.refresh_token) == (Connection.Status.DISCONNECTED, "", "")
    assert (default.status, default.access_token) == (Connection.Status.CONNECTED, ACCESS_TOKEN)


def test_refresh_now_on_one_connection_calls_the_token_endpoint_once_with_its_application(
    admin_client, two, cc_api
):
    token = cc_api.post(
        TOKEN_URL,
        json=token_body(NEW_ACCESS, NEW_REFRESH),
        match=[
            matchers.header_matcher(B_BASIC),
            matchers.urlencoded_params_matcher({"grant_type": "refresh_token", "refresh_token": B_REFRESH}),
        ],
    )
    lists = cc_api.get(
        f"{API_URL}/contact_lists",
        json={"lists": [{"list_id": B_LIST, "name": "Customers"}]},
        match=[matchers.header_matcher({"Authorization": f"Bearer {NEW_ACCESS}"})],
    )
    response = admin_client.post(f"{page_of(two.shop)}refresh/")
    assert response["Location"] == page_of(two.shop)
    assert (token.call_count, lists.call_count) == (1, 1)
    assert messages_of(response) == [("success", "The access token and the lists were refreshed.")]
    shop, default = Connection.objects.get(pk=two.shop.pk), Connection.load()
    assert (shop.access_token, shop.refresh_token) == (NEW_ACCESS, NEW_REFRESH)
    assert shop.available_lists == [{"list_id": B_LIST, "name": "Customers"}]
    assert default.access_token == ACCESS_TOKEN
    assert default.available_lists == [{"list_id": LIST_ID, "name": "Newsletter"}]


def test_connect_on_one_connection_asks_for_its_application_and_the_callback_stores_its_grant_alone(
    admin_client, two, cc_api
):
    response = admin_client.post(f"{page_of(two.shop)}connect/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(AUTHORIZE_URL + "?")
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    assert (query["client_id"], query["redirect_uri"]) == (B_CLIENT_ID, REDIRECT_URI)

    cc_api.post(
        TOKEN_URL,
        json=token_body(NEW_ACCESS, NEW_REFRESH),
        match=[
            matchers.header_matcher(B_BASIC),
            matchers.urlencoded_params_matcher(
                {"grant_type": "authorization_code", "code": "shop-code", "redirect_uri": REDIRECT_URI}
            ),
        ],
    )
    bearer = matchers.header_matcher({"Authorization": f"Bearer {NEW_ACCESS}"})
    cc_api.get(
        f"{API_URL}/account/summary",
        json={"organization_name": "Shop Two", "encoded_account_id": "shop-2"},
        match=[bearer],
    )
    cc_api.get(f"{API_URL}/contact_lists", json={"lists": []}, match=[bearer])
    back = admin_client.get(f"{CALLBACK}?{urlencode({'code': 'shop-code', 'state': query['state']})}")
    assert back["Location"] == page_of(two.shop)
    assert messages_of(back) == [("success", "Connected to Constant Contact account Shop Two.")]
    shop, default = Connection.objects.get(pk=two.shop.pk), Connection.load()
    assert (shop.access_token, shop.account_name) == (NEW_ACCESS, "Shop Two")
    assert (default.access_token, default.account_name) == (ACCESS_TOKEN, "Acme Inc")


def test_choosing_lists_on_one_connection_saves_its_lists_and_releases_its_held_signups_alone(
    admin_client, two, published, django_capture_on_commit_callbacks
):
    held_default = Signup.objects.create(email="a@example.com", status=Signup.Status.WAITING_RECONNECT)
    held_shop = Signup.objects.create(
        email="b@example.com", connection=two.shop, status=Signup.Status.WAITING_RECONNECT
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{page_of(two.shop)}lists/", {"list_ids": [B_OTHER_LIST, LIST_ID]})
    assert messages_of(response) == [("success", "Signups now go to: VIP.")]  # LIST_ID is not its account's
    assert Connection.objects.get(pk=two.shop.pk).list_ids == [B_OTHER_LIST]
    assert Connection.load().list_ids == [LIST_ID]
    held_default.refresh_from_db()
    held_shop.refresh_from_db()
    assert (held_default.status, held_shop.status) == (Signup.Status.WAITING_RECONNECT, Signup.Status.PENDING)
    assert [call["task"] for call in published] == ["cc_sync.sweep_due_signups"]


def test_the_device_flow_of_one_connection_polls_with_its_application_and_stores_its_grant(
    admin_client, two, cc_settings, cc_api, monkeypatch
):
    from cc_sync import admin as cc_admin

    cc_settings.update(OAUTH_FLOW="device", CLIENT_SECRET="")  # public applications: no secrets
    now = [1_800_000_000.0]  # the admin's polling pace reads this clock
    monkeypatch.setattr(cc_admin.time, "time", lambda: now[0])
    Connection.objects.filter(pk=two.shop.pk).update(
        status=Connection.Status.DISCONNECTED, access_token="", refresh_token="", client_secret=""
    )
    device = {"device_code": "shop-device-code", "user_code": "SHOP-CODE", "verification_uri": "https://x/a"}
    cc_api.post(
        DEVICE_URL,
        json={**device, "expires_in": 600, "interval": 5},
        match=[
            no_authorization_header,
            matchers.urlencoded_params_matcher({"client_id": B_CLIENT_ID, "scope": SCOPES}),
        ],
    )
    device_page = f"{page_of(two.shop)}device/"
    assert admin_client.post(f"{page_of(two.shop)}connect/")["Location"] == device_page
    assert "SHOP-CODE" in admin_client.get(device_page).content.decode()
    # Another connection's device page has no flow under way.
    assert admin_client.get(f"{PAGE}device/")["Location"] == page_of(two.default)

    now[0] += 5
    grant = {"grant_type": DEVICE_GRANT, "device_code": "shop-device-code", "client_id": B_CLIENT_ID}
    cc_api.post(
        TOKEN_URL,
        json=token_body(NEW_ACCESS, NEW_REFRESH),
        match=[no_authorization_header, matchers.urlencoded_params_matcher(grant)],
    )
    bearer = matchers.header_matcher({"Authorization": f"Bearer {NEW_ACCESS}"})
    cc_api.get(f"{API_URL}/account/summary", json={"organization_name": "Shop TV"}, match=[bearer])
    cc_api.get(f"{API_URL}/contact_lists", json={"lists": []}, match=[bearer])
    response = admin_client.post(device_page)
    assert response["Location"] == page_of(two.shop)
    shop = Connection.objects.get(pk=two.shop.pk)
    assert (shop.status, shop.access_token, shop.account_name) == (
        Connection.Status.CONNECTED,
        NEW_ACCESS,
        "Shop TV",
    )
    assert Connection.load().access_token == ACCESS_TOKEN


def grant(user, codename: str) -> None:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="cc_sync", codename=codename))


def test_staff_who_may_only_view_see_each_page_without_buttons_and_cannot_act(client, django_user_model, two):
    viewer = django_user_model.objects.create_user(username="viewer", password="pw", is_staff=True)
    grant(viewer, "view_connection")
    client.force_login(viewer)
    for url in (PAGE, page_of(two.shop)):
        content = client.get(url).content.decode()
        assert 'value="Disconnect"' not in content and "Add connection" not in content, url
    assert client.post(f"{page_of(two.shop)}disconnect/").status_code == 403
    assert Connection.objects.get(pk=two.shop.pk).status == Connection.Status.CONNECTED


# -- adding, editing, deleting -----------------------------------------------------------------------


def stored_secret_column(pk: int) -> str:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM cc_sync_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_adding_a_connection_with_its_own_application_keeps_the_secret_encrypted_and_never_shows_it(
    admin_client, two
):
    add_page = admin_client.get(ADD).content.decode()
    assert 'name="client_secret"' in add_page and 'type="password"' in add_page
    response = admin_client.post(
        ADD,
        {
            "name": "Blog",
            "slug": "blog",
            "client_id": "blog-client-id",
            "client_secret": "blog-secret-never-shown",
            "site_domain": "Blog.Example.com",
        },
    )
    blog = Connection.objects.get(slug="blog")
    assert response["Location"] == page_of(blog)
    assert messages_of(response) == [
        ("success", "The connection Blog was added. Connect it to its Constant Contact account.")
    ]
    assert (blog.client_id, blog.client_secret, blog.site_domain) == (
        "blog-client-id",
        "blog-secret-never-shown",
        "blog.example.com",
    )
    assert blog.status == Connection.Status.DISCONNECTED
    assert "blog-secret-never-shown" not in stored_secret_column(blog.pk)  # encrypted at rest
    pages = [PAGE, page_of(blog), f"{PAGE}{blog.pk}/change/", f"{PAGE}{blog.pk}/history/", "/admin/"]
    for url in pages + [page_of(two.shop), f"{PAGE}{two.shop.pk}/change/"]:
        content = admin_client.get(url).content.decode()
        assert "blog-secret-never-shown" not in content, url
        assert B_SECRET not in content, url
    assert "A secret is stored (never shown)" in admin_client.get(f"{PAGE}{blog.pk}/change/").content.decode()


def test_a_form_sent_back_with_an_error_does_not_show_the_secret_typed(admin_client, two):
    response = admin_client.post(
        ADD, {"name": "Dup", "slug": "shop", "client_id": "x", "client_secret": "typed-secret-zzz"}
    )
    assert response.status_code == 200  # the form again, with the error
    content = response.content.decode()
    assert "already exists" in content
    assert "typed-secret-zzz" not in content


def test_editing_a_connection_with_the_secret_left_empty_keeps_the_stored_one(admin_client, two):
    url = f"{PAGE}{two.shop.pk}/change/"
    response = admin_client.post(
        url,
        {
            "name": "Shop EU",
            "slug": "shop-eu",
            "client_id": B_CLIENT_ID,
            "client_secret": "",
            "site_domain": "",
        },
    )
    assert response.status_code == 302, response.content.decode()
    shop = Connection.objects.get(pk=two.shop.pk)
    assert (shop.name, shop.slug, shop.client_secret) == ("Shop EU", "shop-eu", B_SECRET)
    assert shop.status == Connection.Status.CONNECTED  # the same application: its tokens stay good


def test_changing_the_application_of_a_connected_connection_disconnects_it(admin_client, two):
    url = f"{PAGE}{two.shop.pk}/change/"
    admin_client.post(
        url, {"name": "Shop", "slug": "shop", "client_id": "", "client_secret": "", "site_domain": ""}
    )
    shop = Connection.objects.get(pk=two.shop.pk)
    assert (shop.client_id, shop.client_secret) == ("", "")  # the settings' application, no secret of its own
    assert (shop.status, shop.access_token) == (Connection.Status.DISCONNECTED, "")
    assert Connection.load().status == Connection.Status.CONNECTED


def test_the_default_connections_slug_cannot_be_changed(admin_client, two):
    url = f"{PAGE}{two.default.pk}/change/"
    content = admin_client.get(url).content.decode()
    assert 'name="slug"' not in content
    response = admin_client.post(
        url, {"name": "Main", "slug": "main", "client_id": "", "client_secret": "", "site_domain": ""}
    )
    assert response.status_code == 302
    default = Connection.objects.get(pk=two.default.pk)
    assert (default.name, default.slug) == ("Main", Connection.DEFAULT_SLUG)


def test_the_default_connection_cannot_be_deleted(admin_client, two):
    url = f"{PAGE}{two.default.pk}/delete/"
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Connection.objects.filter(pk=two.default.pk).exists()
    assert "deletelink" not in admin_client.get(f"{PAGE}{two.default.pk}/change/").content.decode()


@pytest.mark.parametrize(
    "status", [Signup.Status.PENDING, Signup.Status.WAITING_RECONNECT, Signup.Status.AWAITING_CONFIRMATION]
)
def test_deleting_a_connection_with_pending_or_held_signups_is_refused_naming_how_many(
    admin_client, two, status
):
    Signup.objects.create(email="a@example.com", connection=two.shop, status=status)
    Signup.objects.create(email="b@example.com", connection=two.shop, status=status)
    Signup.objects.create(email="c@example.com", connection=two.shop, status=Signup.Status.SYNCED)
    url = f"{PAGE}{two.shop.pk}/delete/"
    for method in (admin_client.get, admin_client.post):
        response = method(url, {"post": "yes"} if method == admin_client.post else {})
        assert response.status_code == 302
        assert response["Location"] == page_of(two.shop)
        [(level, text)] = messages_of(admin_client.get(response["Location"]))
        assert level == "error"
        assert "cannot be deleted: 2 signups are still pending or held for it" in text
    assert Connection.objects.filter(pk=two.shop.pk).exists()


def test_deleting_a_connection_whose_signups_all_finished_is_refused_too_never_a_500(admin_client, two):
    Signup.objects.create(email="a@example.com", connection=two.shop, status=Signup.Status.SYNCED)
    response = admin_client.post(f"{PAGE}{two.shop.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error" and "1 synced or failed signup keeps the record of the account it went to" in text
    assert Connection.objects.filter(pk=two.shop.pk).exists()


def test_a_signup_arriving_between_the_check_and_the_deletion_stops_it_with_a_message(
    admin_client, two, monkeypatch
):
    from cc_sync.admin import ConnectionAdmin

    def late_signup(self, connection):
        Signup.objects.create(email="late@example.com", connection=connection)
        return ""

    monkeypatch.setattr(ConnectionAdmin, "_deletion_refused", late_signup)
    # Django's own check of what the deletion would take finds it: not deleted, and never a 500.
    response = admin_client.post(f"{PAGE}{two.shop.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200
    assert Connection.objects.filter(pk=two.shop.pk).exists()

    # Found only by the deletion itself (PROTECT): a message, not a 500.
    monkeypatch.setattr(
        ConnectionAdmin, "get_deleted_objects", lambda self, objs, request: ([], {}, set(), [])
    )
    response = admin_client.post(f"{PAGE}{two.shop.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert messages_of(response) == [
        ("error", "The connection is still used by signups; nothing was deleted.")
    ]
    assert Connection.objects.filter(pk=two.shop.pk).exists()


def test_deleting_a_connection_without_signups_is_allowed(admin_client, two):
    url = f"{PAGE}{two.shop.pk}/delete/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Connection.objects.filter(pk=two.shop.pk).exists()
    # One connection again: the change list is its page.
    assert '<td class="cc-sync-account">Acme Inc' in admin_client.get(PAGE).content.decode()


# -- the admin index: connections needing attention --------------------------------------------------


def test_the_admin_index_counts_and_names_the_connections_that_need_attention(admin_client, two, cc_settings):
    cc_settings["LIST_IDS"] = []
    make_shop(name="Blog", slug="blog", status=Connection.Status.NEEDS_RECONNECT)
    make_shop(
        name="Club", slug="club", status=Connection.Status.DISCONNECTED, access_token="", refresh_token=""
    )
    quiet = make_shop(name="Quiet", slug="quiet", status=Connection.Status.DISCONNECTED)  # nothing waiting
    make_shop(name="Fresh", slug="fresh", list_ids=[])  # connected, no list
    club = Connection.objects.get(slug="club")
    Signup.objects.create(email="w@example.com", connection=club, status=Signup.Status.WAITING_RECONNECT)
    Signup.objects.create(email="s@example.com", connection=quiet, status=Signup.Status.SYNCED)
    content = admin_client.get("/admin/").content.decode()
    text = re.sub(r"<[^>]+>|\s+", " ", content)
    text = re.sub(r" +", " ", text)
    assert (
        "3 Constant Contact connections need attention: Blog (needs reconnecting), "
        "Club (disconnected, 1 signup waiting), Fresh (no list chosen)." in text
    )
    assert f'href="{page_of(Connection.objects.get(slug="blog"))}"' in content
    assert "Quiet" not in text
    assert "Constant Contact is not connected" not in text


def test_the_admin_index_counts_without_naming_when_many_need_attention(admin_client, two):
    for slug in ("a", "b", "c", "d"):
        make_shop(name=f"Shop {slug}", slug=slug, status=Connection.Status.NEEDS_RECONNECT)
    content = admin_client.get("/admin/").content.decode()
    assert re.search(r"4 Constant Contact connections need attention\s*\.", content)
    assert "Shop a" not in content
    assert 'class="error cc-sync-attention"' in content


def test_the_admin_index_says_nothing_while_every_connection_is_fine(admin_client, two):
    make_shop(name="Idle", slug="idle", status=Connection.Status.DISCONNECTED, access_token="")
    content = admin_client.get("/admin/").content.decode()
    assert "need attention" not in content and "needs attention" not in content
    assert "Constant Contact is not connected" not in content


def test_the_admin_index_names_a_connection_whose_tokens_cannot_be_read(admin_client, two, cc_settings):
    with db_connection.cursor() as cursor:  # written under a key that is not configured
        cursor.execute(
            "UPDATE cc_sync_connection SET access_token = %s WHERE id = %s",
            ["gAAAAABnot-readable-with-the-configured-keys", two.shop.pk],
        )
    content = admin_client.get("/admin/").content.decode()
    assert "1 Constant Contact connection needs attention" in content
    assert "Shop</a> (stored tokens cannot be read)" in content
    assert admin_client.get(PAGE).status_code == 200
    assert admin_client.get(page_of(two.shop)).status_code == 200


# -- the signups ---------------------------------------------------------------------------------------


def test_with_several_connections_signups_can_be_filtered_by_connection_and_show_their_lists(
    admin_client, two
):
    Signup.objects.create(email="a@example.com", list_ids=[LIST_ID])
    Signup.objects.create(email="b@example.com", connection=two.shop, list_ids=[B_OTHER_LIST])
    content = admin_client.get(f"/admin/cc_sync/signup/?connection__id__exact={two.shop.pk}").content.decode()
    assert "b@example.com" in content and "a@example.com" not in content
    assert "VIP" in content  # the list by its name in the shop's account
    assert "Newsletter" in admin_client.get("/admin/cc_sync/signup/").content.decode()


# -- the broker is never waited for ---------------------------------------------------------------------


def test_choosing_lists_answers_without_waiting_for_a_hung_broker(
    admin_client, two, monkeypatch, django_capture_on_commit_callbacks
):
    """The held signups' release asks for a sweep from the publisher thread, not the request's."""
    Signup.objects.create(email="b@example.com", connection=two.shop, status=Signup.Status.WAITING_RECONNECT)
    broker_answers, asked, callers = threading.Event(), threading.Event(), []

    def hung_publish(*args, **kwargs):
        callers.append(threading.current_thread().name)
        asked.set()
        broker_answers.wait(10)

    monkeypatch.setattr(tasks.sweep_due_signups, "apply_async", hung_publish)
    monkeypatch.setattr(publisher, "outbox", publisher.Outbox())
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(f"{page_of(two.shop)}lists/", {"list_ids": [B_LIST]})
        assert response.status_code == 302
        assert asked.wait(10)  # the sweep was asked for while the broker hangs...
        assert callers == ["cc_sync-publisher"]  # ...by the publisher thread, not the request's
    finally:
        broker_answers.set()
        assert publisher.outbox.flush(timeout=10)
