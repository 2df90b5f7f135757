"""End to end through a real browser: headless Chromium drives the example site against a live server.

A site admin logs in, connects Constant Contact (the sandbox) with Allow, picks a list; a visitor signs up
at /register/ and a real Celery worker (Redis broker, the PostgreSQL test database) puts the contact into
the sandbox. After the sandbox expires the access token, the next signup still arrives, after exactly one
refresh. Screenshots of the pages a person sees go to a temporary folder, or to docs/screenshots/ when
CC_SYNC_SCREENSHOTS=1 (to refresh the documentation's pictures).

Needs PostgreSQL and Redis (the ``services`` fixture), Debian's ``chromium`` and the ``playwright`` package
(no browser download: Playwright drives /usr/bin/chromium). Without them the test is skipped with the
reason printed; under CI=true that is an error instead.
"""

from __future__ import annotations

import copy
import email
import email.policy
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest

from cc_sync.models import Connection, Signup
from cc_sync.sandbox import DEFAULT_ACCOUNT, Sandbox
from rig import ROOT
from rig.processes import celery_worker, example_env
from rig.services import IN_CI
from rig.waiting import wait_until

pytestmark = [pytest.mark.services, pytest.mark.browser, pytest.mark.usefixtures("services")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1200, "height": 800}
SCREENSHOTS = ROOT / "docs" / "screenshots" if os.environ.get("CC_SYNC_SCREENSHOTS") else None
EXAMPLE_TEMPLATES = ROOT / "example_project" / "templates"
ADMIN_STATIC = Path(django.contrib.admin.__file__).resolve().parent / "static"
CALLBACK_PATH = "/admin/cc_sync/connection/callback/"
TIMEOUT_MS = 15_000


def require_browser() -> Any:
    """Playwright's sync API, or a skip (an error under CI) when Chromium or Playwright is missing."""
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        problems.append("the playwright package is missing (pip install playwright)")
    if problems:
        message = "; ".join(problems)
        if IN_CI:
            pytest.fail(f"{message}, and CI=true: the browser test must run in CI.", pytrace=False)
        pytest.skip(f"{message}; install it to run the browser test.")
    return sync_api


@pytest.fixture
def site(transactional_db: Any, settings: Any) -> Iterator[str]:
    """The example project's URLs on a live server of this process, admin CSS included; yields its URL.

    Started here rather than through pytest-django's session-wide ``live_server``, whose static-files
    handler is built once from the settings of the moment (STATIC_URL is unset in tests/settings.py).
    """
    from pytest_django.live_server_helper import LiveServer

    settings.ROOT_URLCONF = "example_project.urls"
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [*templates[0]["DIRS"], EXAMPLE_TEMPLATES]
    settings.TEMPLATES = templates
    settings.STATIC_URL = "/static/"
    settings.STATIC_ROOT = str(ADMIN_STATIC)
    server = LiveServer("127.0.0.1:0")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def sandbox(site: str, settings: Any) -> Iterator[Sandbox]:
    """The CC sandbox with the live server's admin callback registered, and CC_SYNC pointed at it."""
    callback = site + CALLBACK_PATH
    with Sandbox(redirect_uris=[callback]) as sb:
        settings.CC_SYNC = {
            **settings.CC_SYNC,
            **sb.cc_sync_settings(),
            "REDIRECT_URI": callback,
            "LIST_IDS": [],
        }
        yield sb


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Debian Chromium through Playwright.

    Playwright's sync API keeps an event loop in this thread, which Django takes for an async context
    with database connections of its own: the test's ORM calls stay synchronous, so that check is
    switched off while the browser runs, and the connections opened meanwhile are closed with it.
    """
    from django.db import connections

    sync_api = require_browser()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
            connections.close_all()


def new_page(browser: Any) -> Any:
    """A page in a fresh context (its own cookies), with the usual viewport and timeouts."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def screenshot(page: Any, name: str) -> None:
    folder = SCREENSHOTS or Path(tempfile.gettempdir()) / "cc_sync-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def sign_up(browser: Any, site: str, email: str, first_name: str, last_name: str, shot: str = "") -> None:
    """A visitor, in a browser context of their own, fills in /register/ and sees the thank-you page."""
    from playwright.sync_api import expect

    page = new_page(browser)
    page.goto(site + "/register/")
    expect(page.get_by_role("heading", name="Register for our newsletter")).to_be_visible()
    page.fill("input[name=email]", email)
    page.fill("input[name=first_name]", first_name)
    page.fill("input[name=last_name]", last_name)
    page.check("input[name=consent]")
    if shot:
        screenshot(page, shot)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(site + "/register/done/")
    expect(page.get_by_role("heading", name="Thank you for registering!")).to_be_visible()
    page.context.close()


def box(page: Any, selector: str) -> dict[str, float]:
    """Where an element is drawn (pixels, rounded: sub-pixel differences are not layout)."""
    found = page.locator(selector).first.bounding_box()
    assert found, f"{selector} is not drawn"
    return {key: round(value) for key, value in found.items()}


def crumbs_layout(page: Any) -> dict[str, Any]:
    """The breadcrumbs' box, the place of their first link and their background, as the browser drew them."""
    return {
        "box": box(page, ".breadcrumbs"),
        "home": box(page, ".breadcrumbs a"),
        "background": page.locator(".breadcrumbs").first.evaluate("e => getComputedStyle(e).backgroundColor"),
    }


def contact_in_sandbox(sb: Sandbox, email: str, account: str | None = None) -> dict[str, Any] | None:
    return next((c for c in sb.contacts(account) if c["email_address"] == email), None)


def wait_for_synced(sb: Sandbox, email: str, account: str | None = None) -> tuple[dict[str, Any], Signup]:
    """The contact in ``account`` (default: the sandbox's default account), and its signup once synced."""
    contact = wait_until(
        lambda: contact_in_sandbox(sb, email, account), timeout=45, what=f"{email} to reach the sandbox"
    )
    signup = wait_until(
        lambda: Signup.objects.filter(email=email, status=Signup.Status.SYNCED).first(),
        timeout=20,
        what=f"the signup of {email} to be marked synced",
    )
    return contact, signup


def test_admin_connects_in_the_browser_and_visitors_signups_reach_the_chosen_list(
    site, sandbox, redis_broker, browser, django_user_model
):
    from playwright.sync_api import expect

    sb = sandbox
    django_user_model.objects.create_superuser("admin", "admin@example.com", "e2e-password")
    newsletter = next(item for item in sb.lists() if item["name"] == "Newsletter")
    worker_env = example_env(sb)
    worker_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    with celery_worker(worker_env, name="e2e"):
        admin = new_page(browser)
        admin.goto(site + "/admin/")
        expect(admin).to_have_url(re.compile(re.escape(site + "/admin/login/")))
        admin.fill("#id_username", "admin")
        admin.fill("#id_password", "e2e-password")
        admin.get_by_role("button", name="Log in").click()
        expect(admin).to_have_url(site + "/admin/")
        expect(admin.get_by_role("heading", name="Site administration")).to_be_visible()
        expect(admin.locator(".messagelist")).to_contain_text("Constant Contact is not connected")
        connect = admin.get_by_role("button", name="Connect Constant Contact")
        expect(connect).to_be_visible()
        screenshot(admin, "admin-index")
        index_header = box(admin, "#header")

        connect.click()
        expect(admin).to_have_url(re.compile(re.escape(sb.authorize_url) + r"\?"))
        expect(
            admin.get_by_role("heading", name=re.compile("wants to access your Constant Contact"))
        ).to_be_visible()
        expect(admin.locator("body")).to_contain_text("Sandbox Organization")
        screenshot(admin, "sandbox-consent")

        admin.get_by_role("button", name="Allow").click()
        expect(admin).to_have_url(site + "/admin/cc_sync/connection/")
        expect(admin.locator(".messagelist .success")).to_have_text(
            "Connected to Constant Contact account Sandbox Organization."
        )
        expect(admin.locator(".cc-sync-status")).to_have_text("Connected")
        expect(admin.locator(".cc-sync-account")).to_contain_text("Sandbox Organization")
        expect(admin.get_by_role("button", name="Connect Constant Contact")).to_have_count(0)
        # Next step, said until it is done: choose the lists.
        expect(admin.locator(".cc-sync-choose-lists").first).to_contain_text(
            "Choose the lists that signups go to"
        )
        screenshot(admin, "connection-connected")
        # The page is drawn by the admin's own templates: its header sits where the index's does, and its
        # breadcrumbs where the admin's own change list draws them (Django 6.1 changed their markup).
        assert box(admin, "#header") == index_header
        connection_crumbs = crumbs_layout(admin)
        assert sb.token_calls("authorization_code") == 1
        connection = Connection.load()
        assert (connection.status, connection.account_name) == (
            Connection.Status.CONNECTED,
            "Sandbox Organization",
        )

        admin.get_by_label("Newsletter", exact=True).check()
        admin.get_by_role("button", name="Save lists").click()
        expect(admin.locator(".messagelist .success")).to_have_text("Signups now go to: Newsletter.")
        expect(admin.get_by_label("Newsletter", exact=True)).to_be_checked()
        expect(admin.get_by_label("General Interest", exact=True)).not_to_be_checked()
        expect(admin.locator(".cc-sync-choose-lists")).to_have_count(0)
        assert Connection.load().list_ids == [newsletter["list_id"]]

        sign_up(browser, site, "ada.lovelace@example.com", "Ada", "Lovelace", shot="register-form")
        contact, signup = wait_for_synced(sb, "ada.lovelace@example.com")
        assert (contact["first_name"], contact["last_name"]) == ("Ada", "Lovelace")
        assert contact["list_memberships"] == [newsletter["list_id"]]
        assert signup.contact_id == contact["contact_id"]
        assert signup.list_ids == []  # none picked for this submission: the default lists, read when sent
        assert sb.token_calls("refresh_token") == 0

        # The signups' change list fits a 1280 px screen, no next attempt on a synced row.
        admin.goto(site + "/admin/cc_sync/signup/")
        assert crumbs_layout(admin) == connection_crumbs
        admin.set_viewport_size({"width": 1280, "height": 800})
        row = admin.locator("#result_list tbody tr").first
        expect(row).to_contain_text("ada.lovelace@example.com")
        expect(row).to_contain_text("Synced")
        expect(row.locator("td.field-list_display_lists")).to_have_text("(the default lists)")
        expect(row.locator("td.field-synced_or_next_attempt")).not_to_have_text("-")
        assert admin.evaluate("document.documentElement.scrollWidth") <= 1280
        # Nothing cut off: the table fits the box that would otherwise scroll it sideways.
        widths = admin.evaluate(
            "() => { const r = document.querySelector('#changelist .results');"
            " return {scroll: r.scrollWidth, client: r.clientWidth,"
            " columns: [...document.querySelectorAll('#result_list thead th')].map("
            "th => [th.textContent.trim(), Math.round(th.getBoundingClientRect().width)])}; }"
        )
        assert widths["scroll"] <= widths["client"], widths
        screenshot(admin, "signups")
        admin.set_viewport_size(VIEWPORT)

        stale_token = Connection.load().access_token
        assert sb.expire_access_tokens() >= 1
        sign_up(browser, site, "grace.hopper@example.com", "Grace", "Hopper")
        contact, signup = wait_for_synced(sb, "grace.hopper@example.com")
        assert (contact["first_name"], contact["last_name"]) == ("Grace", "Hopper")
        assert contact["list_memberships"] == [newsletter["list_id"]]
        assert signup.contact_id == contact["contact_id"]
        assert sb.token_calls("refresh_token") == 1
        assert Connection.load().access_token != stale_token
        rejected = [r for r in sb.requests() if r["kind"] == "api" and r["status"] == 401]
        assert len(rejected) == 1, rejected

    assert Signup.objects.filter(status=Signup.Status.SYNCED).count() == 2
    assert len(sb.contacts()) == 2


def log_in(browser: Any, site: str) -> Any:
    """The site admin's page, logged in (the superuser ``admin`` with ``e2e-password``)."""
    from playwright.sync_api import expect

    admin = new_page(browser)
    admin.goto(site + "/admin/")
    admin.fill("#id_username", "admin")
    admin.fill("#id_password", "e2e-password")
    admin.get_by_role("button", name="Log in").click()
    expect(admin).to_have_url(site + "/admin/")
    return admin


def allow_for_account(admin: Any, sb: Sandbox, account: str) -> None:
    """On the sandbox's consent page: approve for ``account`` (the account picker of several accounts)."""
    from playwright.sync_api import expect

    expect(admin).to_have_url(re.compile(re.escape(sb.authorize_url) + r"\?"))
    admin.get_by_label("Approve for account").select_option(account)
    admin.get_by_role("button", name="Allow").click()


def choose_list(admin: Any, name: str) -> None:
    from playwright.sync_api import expect

    admin.get_by_label(name, exact=True).check()
    admin.get_by_role("button", name="Save lists").click()
    expect(admin.locator(".messagelist .success")).to_have_text(f"Signups now go to: {name}.")


def test_admin_connects_two_accounts_and_each_sites_signups_reach_its_own_accounts_list(
    site, sandbox, redis_broker, browser, django_user_model, settings
):
    """Two connections, one after the other, through the consent page's account picker; the second has its
    own application and the site domain ``localhost``, so the form served there signs up into its account
    (``cc_sync.routing.connection_for_site``) while the same form on 127.0.0.1 goes to the default one."""
    from playwright.sync_api import expect

    sb = sandbox
    default_account = DEFAULT_ACCOUNT["encoded_account_id"]
    sb.add_account("shop-account", organization_name="Shop Corp")
    sb.add_app("shop-app", "shop-app-secret", redirect_uris=[site + CALLBACK_PATH], name="Shop app")
    settings.CC_SYNC = {**settings.CC_SYNC, "CONNECTION_CHOOSER": "cc_sync.routing.connection_for_site"}
    shop_site = site.replace("127.0.0.1", "localhost")
    newsletter = next(item for item in sb.lists() if item["name"] == "Newsletter")["list_id"]
    shop_newsletter = next(item for item in sb.lists("shop-account") if item["name"] == "Newsletter")[
        "list_id"
    ]
    assert newsletter != shop_newsletter
    django_user_model.objects.create_superuser("admin", "admin@example.com", "e2e-password")
    worker_env = example_env(sb)
    worker_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    with celery_worker(worker_env, name="e2e-two"):
        admin = log_in(browser, site)
        # The first account, as with a single connection: Connect from the banner, Allow, a list.
        admin.get_by_role("button", name="Connect Constant Contact").click()
        allow_for_account(admin, sb, default_account)
        expect(admin).to_have_url(site + "/admin/cc_sync/connection/")
        expect(admin.locator(".messagelist .success")).to_have_text(
            "Connected to Constant Contact account Sandbox Organization."
        )
        choose_list(admin, "Newsletter")

        # The second: added with its own application and site, then connected from its own page.
        admin.get_by_role("link", name="Add connection").click()
        admin.get_by_label("Name").press_sequentially("Shop")
        expect(admin.get_by_label("Slug")).to_have_value("shop")  # made from the name as it is typed
        admin.get_by_label("Own application's client id").fill("shop-app")
        admin.get_by_label("Own application's client secret").fill("shop-app-secret")
        admin.get_by_label("Site domain").fill("localhost")
        screenshot(admin, "connection-add")
        admin.get_by_role("button", name="Save", exact=True).click()
        expect(admin).to_have_url(re.compile(re.escape(site + "/admin/cc_sync/connection/") + r"\d+/$"))
        shop = Connection.objects.get(slug="shop")
        shop_page = f"{site}/admin/cc_sync/connection/{shop.pk}/"
        expect(admin).to_have_url(shop_page)
        expect(admin.locator(".messagelist .success")).to_have_text(
            "The connection Shop was added. Connect it to its Constant Contact account."
        )
        expect(admin.locator(".cc-sync-status")).to_have_text("Disconnected")
        expect(admin.locator(".cc-sync-application")).to_contain_text("own (shop-app)")
        assert "shop-app-secret" not in admin.content()
        admin.get_by_role("button", name="Connect Constant Contact").click()
        expect(admin.locator("body")).to_contain_text("Shop app")  # the consent page names its application
        screenshot(admin, "sandbox-consent-accounts")
        allow_for_account(admin, sb, "shop-account")
        expect(admin).to_have_url(shop_page)
        expect(admin.locator(".messagelist .success")).to_have_text(
            "Connected to Constant Contact account Shop Corp."
        )
        expect(admin.locator(".cc-sync-account")).to_contain_text("Shop Corp (shop-account)")
        choose_list(admin, "Newsletter")
        screenshot(admin, "connection-of-several")

        # The list of connections: both connected, nothing needs attention.
        admin.goto(site + "/admin/cc_sync/connection/")
        rows = admin.locator("tr.cc-sync-connection-row")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("Sandbox Organization")
        expect(rows.nth(1)).to_contain_text("Shop Corp")
        expect(admin.locator(".cc-sync-status")).to_have_text(["Connected", "Connected"])
        expect(admin.locator(".cc-sync-attention")).to_have_count(0)
        screenshot(admin, "connections")
        widths = admin.evaluate(
            "() => { const r = document.querySelector('#changelist .results');"
            " return [r.scrollWidth, r.clientWidth]; }"
        )
        assert widths[0] <= widths[1], (
            f"the list of connections scrolls sideways (needs {widths[0]} px of {widths[1]})"
        )
        assert sb.token_calls("authorization_code") == 2
        default, shop = Connection.load(), Connection.objects.get(slug="shop")
        assert (default.account_id, default.list_ids) == (default_account, [newsletter])
        assert (shop.account_id, shop.list_ids) == ("shop-account", [shop_newsletter])

        # The same form on each site: each signup lands in its own account's list.
        sign_up(browser, site, "main.visitor@example.com", "Main", "Visitor")
        sign_up(browser, shop_site, "shop.visitor@example.com", "Shop", "Visitor")
        contact, signup = wait_for_synced(sb, "main.visitor@example.com")
        assert contact["list_memberships"] == [newsletter]
        assert signup.connection_id is None  # the default connection
        contact, signup = wait_for_synced(sb, "shop.visitor@example.com", account="shop-account")
        assert contact["list_memberships"] == [shop_newsletter]
        assert signup.connection_id == shop.pk
        assert contact_in_sandbox(sb, "shop.visitor@example.com") is None
        assert contact_in_sandbox(sb, "main.visitor@example.com", "shop-account") is None
        # Each account was reached with its own connection's application.
        assert {r["client_id"] for r in sb.requests(account="shop-account") if r["kind"] == "api"} == {
            "shop-app"
        }
        assert {r["client_id"] for r in sb.requests(account=default_account) if r["kind"] == "api"} == {
            sb.cc_sync_settings()["CLIENT_ID"]
        }


def test_strangers_cannot_rewrite_or_resubscribe_and_a_new_visitor_costs_one_request(
    site, sandbox, redis_broker, browser, settings, tmp_path
):
    """Issue 11 over real HTTP: a real worker, the sandbox, the browser for the emailed confirmation link."""
    from playwright.sync_api import expect

    from cc_sync import oauth

    sb = sandbox
    newsletter = next(item for item in sb.lists() if item["name"] == "Newsletter")["list_id"]
    settings.CC_SYNC = {**settings.CC_SYNC, "LIST_IDS": [newsletter]}
    # The site and the worker share SECRET_KEY, as in production: the worker signs the link the site checks.
    settings.SECRET_KEY = example_env(sb)["SECRET_KEY"]
    oauth.store_grant(sb.issue_tokens())
    sb.add_contact("anna@example.com", first_name="Anna", last_name="Original")
    sb.add_contact(
        "uma@example.com", first_name="Uma", last_name="Original", permission_to_send="unsubscribed"
    )
    mail = tmp_path / "mail"
    worker_env = example_env(
        sb, EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend", EMAIL_FILE_PATH=str(mail)
    )
    worker_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    def status_of(email: str) -> str | None:
        return Signup.objects.filter(email=email).values_list("status", flat=True).first()

    with celery_worker(worker_env, name="e2e-safety"):
        # A stranger types an existing customer's address with other names: the names at CC stay.
        sign_up(browser, site, "anna@example.com", "Mallory", "Forger")
        wait_until(lambda: status_of("anna@example.com") == Signup.Status.SYNCED, 45, what="anna synced")
        # CC adds the list in a background activity (the sandbox: within list_activity_seconds).
        anna = wait_until(
            lambda: (c := sb.contact("anna@example.com")) and newsletter in c["list_memberships"] and c,
            10,
            what="anna on the list",
        )
        assert (anna["first_name"], anna["last_name"]) == ("Anna", "Original")

        # An unsubscribed contact stays unsubscribed until the person confirms from the emailed link.
        sign_up(browser, site, "uma@example.com", "Uma", "Original")
        wait_until(
            lambda: status_of("uma@example.com") == Signup.Status.AWAITING_CONFIRMATION,
            45,
            what="uma held for confirmation",
        )
        assert sb.contact("uma@example.com")["email_address"]["permission_to_send"] == "unsubscribed"
        (sent,) = [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in mail.iterdir()
        ]
        # Decoded: newer Djangos send the body quoted-printable, which folds a long link across lines.
        body = sent.get_body(preferencelist=("plain",)).get_content()
        link = re.search(r"http://127\.0\.0\.1:\d+/\S+/confirm/\S+/", body).group(0)
        page = new_page(browser)
        page.goto(link)  # what a mail scanner does too: nothing is confirmed by a GET
        assert status_of("uma@example.com") == Signup.Status.AWAITING_CONFIRMATION
        assert sb.contact("uma@example.com")["email_address"]["permission_to_send"] == "unsubscribed"
        screenshot(page, "confirm-subscription")
        page.get_by_role("button", name="Yes, subscribe me").click()
        expect(page.locator("body")).to_contain_text("Your subscription is confirmed.")
        wait_until(lambda: status_of("uma@example.com") == Signup.Status.SYNCED, 45, what="uma synced")
        assert sb.contact("uma@example.com")["email_address"]["permission_to_send"] == "explicit"
        resubscribes = [
            r for r in sb.requests() if r["path"] == "/v3/contacts/sign_up_form" and r.get("status") == 200
        ]
        assert len(resubscribes) == 1

        # A new visitor arrives with their names in one API request.
        before = len([r for r in sb.requests() if r["kind"] == "api"])
        sign_up(browser, site, "nia.new@example.com", "Nia", "New")
        wait_until(lambda: status_of("nia.new@example.com") == Signup.Status.SYNCED, 45, what="nia synced")
        nia = sb.contact("nia.new@example.com")
        assert (nia["first_name"], nia["last_name"]) == ("Nia", "New")
        assert len([r for r in sb.requests() if r["kind"] == "api"]) - before == 1
