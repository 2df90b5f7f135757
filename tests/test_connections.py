"""Several CC accounts at once: each connection's signups reach only its own account, and its tokens, its
holds and its application's budget are its own; suppression and erasure hold for every account.

Over real HTTP to the sandbox, which serves several accounts and a second application. Each connection is
connected the way an admin does it (:func:`rig.cc.connect_account`: Allow on the consent page, the code
exchanged by cc_sync). The sandbox's request log, which names the account of every request, is the witness of
what reached which account. The tests marked ``services`` start real processes on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from cc_sync import backfill, oauth, privacy, ratelimit, surge, tasks
from cc_sync.db import lock_row
from cc_sync.models import BackfillRun, Connection, RateLimitState, Signup, SurgeBatch
from cc_sync.sandbox import DEFAULT_ACCOUNT, Sandbox
from cc_sync.sync import enqueue_signup
from cc_sync.views import SignupView
from rig.cc import connect_account
from rig.processes import refresh_probe
from rig.sandbox import OTHER_AUTH, OTHER_CLIENT_ID
from rig.waiting import wait_until

S = Signup.Status
DEFAULT = DEFAULT_ACCOUNT["encoded_account_id"]
ACCOUNT_B, ACCOUNT_C, ACCOUNT_D = "acct-b", "acct-c", "acct-d"
PINNED = datetime(2028, 2, 29, 23, 59, 30, tzinfo=dt_timezone.utc)  # 30 s before a quota day ends
FORM = {"consent": "on"}


def started_sandbox(**config: Any) -> Sandbox:
    """A sandbox with accounts B, C and D besides its default one, and a second application."""
    sandbox = Sandbox(**config).start()
    for account in (ACCOUNT_B, ACCOUNT_C, ACCOUNT_D):
        sandbox.add_account(account, organization_name=f"{account[-1].upper()} Corp")
    sandbox.add_app(OTHER_CLIENT_ID, OTHER_AUTH[1])
    return sandbox


@pytest.fixture
def sandbox():
    """No per-second limits: the fast tests connect several accounts of one application in a row."""
    started = started_sandbox(token_rate=None, api_rate=None, import_polls=2)
    yield started
    started.stop()


@pytest.fixture
def cc(sandbox: Sandbox, cc_settings: dict[str, Any]) -> Sandbox:
    """cc_sync pointed at the sandbox; each connection's own chosen list (no LIST_IDS setting)."""
    cc_settings.update(sandbox.cc_sync_settings(), LIST_IDS=[])
    return sandbox


@pytest.fixture
def two(db: Any, cc: Sandbox) -> tuple[Connection, Connection]:
    """A: the default connection, to the sandbox's default account; B ("b"): to account B; one application."""
    return connect_account(cc), connect_account(cc, "b", account=ACCOUNT_B, name="Shop B")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> None:
    """Django's clock, ``time.time`` and the sandbox's quota day pinned: no day ends during the test."""
    monkeypatch.setattr(timezone, "now", lambda: PINNED)
    monkeypatch.setattr(time, "time", PINNED.timestamp)
    sandbox.clock = PINNED.timestamp


def memberships(sandbox: Sandbox, account: str | None = None) -> dict[str, list[str]]:
    """``{email: list ids}`` of the account's contacts."""
    return {c["email_address"]: c["list_memberships"] for c in sandbox.contacts(account=account)}


def refreshes(sandbox: Sandbox, account: str) -> int:
    """Refresh-token calls the sandbox received for ``account``'s grants."""
    return sum(
        1
        for entry in sandbox.requests(account=account)
        if entry["kind"] == "token" and entry["grant_type"] == "refresh_token"
    )


def refused_refreshes(sandbox: Sandbox) -> int:
    """Refresh-token calls refused with ``invalid_grant`` (a revoked grant: the log cannot say whose it was)."""
    return sum(
        1
        for entry in sandbox.requests()
        if entry["kind"] == "token" and entry["grant_type"] == "refresh_token" and entry["status"] == 400
    )


def api_calls(sandbox: Sandbox, account: str) -> list[dict[str, Any]]:
    return [entry for entry in sandbox.requests(account=account) if entry["kind"] == "api"]


# -- each connection's signups reach its own account ---------------------------------------------------


def test_signups_for_two_accounts_each_reach_only_their_own_accounts_list(two, cc, run):
    a, b = two
    for_a = [enqueue_signup("ann@example.com", connection=a), enqueue_signup("amy@example.com")]
    for_b = [
        enqueue_signup("bea@example.com", connection="b"),
        enqueue_signup("ben@example.com", connection=b),
    ]
    both = [
        enqueue_signup("both@example.com", connection=a),
        enqueue_signup("both@example.com", connection=b),
    ]
    assert [s.connection_id for s in for_a + for_b] == [None, None, b.pk, b.pk]
    for signup in for_a + for_b + both:
        assert run(signup).status == S.SYNCED

    assert a.list_ids != b.list_ids
    assert memberships(cc) == {
        "ann@example.com": a.list_ids,
        "amy@example.com": a.list_ids,
        "both@example.com": a.list_ids,
    }
    assert memberships(cc, ACCOUNT_B) == {
        "bea@example.com": b.list_ids,
        "ben@example.com": b.list_ids,
        "both@example.com": b.list_ids,
    }
    # The same address is a contact of each account, each signup holding its own account's contact id.
    assert both[0].contact_id != both[1].contact_id
    assert {e["email"] for e in api_calls(cc, ACCOUNT_B) if e["email"]} == {
        "bea@example.com",
        "ben@example.com",
        "both@example.com",
    }


# -- tokens: each connection its own refresh and its own lock ----------------------------------------------


@pytest.fixture
def paced(transactional_db: Any, services: None, cc_settings: dict[str, Any]):
    """The sandbox with CC's own limits (1 token call a second per application), cc_sync pacing to them,
    and committed rows that other processes see."""
    started = started_sandbox(import_polls=2)
    cc_settings.update(started.cc_sync_settings(), LIST_IDS=[], TOKEN_RATE=1.0, API_RATE=4.0)
    yield started
    started.stop()


@pytest.mark.services
@pytest.mark.parametrize("processes", [8])
def test_processes_finding_both_connections_tokens_stale_refresh_each_exactly_once(paced, processes):
    a = connect_account(paced, expires_in=-60)
    b = connect_account(paced, "b", account=ACCOUNT_B, expires_in=-60)
    start_at = time.time() + 3.0  # every process is imported and waiting before this moment
    # Half ask for A's token first, half for B's: both refreshes are wanted at once, everywhere.
    probes = [refresh_probe(paced, start_at, ("default,b", "b,default")[n % 2]) for n in range(processes)]
    results = [p.communicate(timeout=90) for p in probes]
    assert [p.returncode for p in probes] == [0] * processes, [err[-3000:] for _out, err in results if err]

    assert (refreshes(paced, DEFAULT), refreshes(paced, ACCOUNT_B)) == (1, 1)
    # Both through one application: its token endpoint never saw two calls within a second (no 429).
    assert all(e["status"] == 200 for e in paced.requests() if e["kind"] == "token")
    a.refresh_from_db()
    b.refresh_from_db()
    got: dict[str, set[str]] = {"default": set(), "b": set()}
    for out, _err in results:
        for line in out.splitlines():
            slug, token = line.split()
            got[slug].add(token)
    assert got == {"default": {a.access_token}, "b": {b.access_token}}
    assert a.access_token != b.access_token


@pytest.mark.services
def test_a_refresh_held_up_on_one_connections_lock_does_not_hold_up_anothers(paced):
    a = connect_account(paced, expires_in=-60)
    b = connect_account(paced, "b", account=ACCOUNT_B, expires_in=-60)
    locked, release = threading.Event(), threading.Event()

    def hold_a() -> None:
        # A refresh of A in progress: its row locked in a transaction of another database connection.
        try:
            with transaction.atomic():
                lock_row(Connection, a.pk)
                locked.set()
                release.wait(60)
        finally:
            db_connection.close()

    holder = threading.Thread(target=hold_a)
    holder.start()
    waiter = None
    try:
        assert locked.wait(10)
        with db_connection.cursor() as cursor:  # a lock shared by all connections fails instead of hanging
            cursor.execute("SET lock_timeout = '10s'")
        try:
            token_b = oauth.get_access_token(Connection.objects.get(slug="b"))
        finally:
            with db_connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        assert refreshes(paced, ACCOUNT_B) == 1
        # A's refresh, wanted by another process meanwhile, waits for A's lock, and only it.
        waiter = refresh_probe(paced, time.time(), "default")

        def a_waits_for_its_lock() -> bool:
            with db_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0] == 1

        wait_until(a_waits_for_its_lock, timeout=30, what="A's refresh to wait for A's row lock")
        assert refreshes(paced, DEFAULT) == 0
    finally:
        release.set()
        holder.join(30)
    assert waiter is not None
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    a.refresh_from_db()
    b.refresh_from_db()
    assert out.split() == ["default", a.access_token]
    assert token_b == b.access_token
    assert (refreshes(paced, DEFAULT), refreshes(paced, ACCOUNT_B)) == (1, 1)


# -- a revoked grant holds only its own account's signups ---------------------------------------------------


@pytest.mark.parametrize("revoked", [Connection.DEFAULT_SLUG, "b"])
def test_a_revoked_grant_holds_only_its_own_accounts_signups(two, cc, run, mailoutbox, revoked):
    a, b = two
    gone, working = (a, b) if revoked == Connection.DEFAULT_SLUG else (b, a)
    account = {a.pk: DEFAULT, b.pk: ACCOUNT_B}
    assert cc.revoke_grant(account=account[gone.pk]) == 1  # the account's user disconnected the app at CC
    held = [enqueue_signup(f"held{n}@example.com", connection=gone) for n in range(3)]
    sent = [enqueue_signup(f"sent{n}@example.com", connection=working) for n in range(3)]
    for hold, send in zip(held, sent, strict=True):
        assert run(hold).status == S.WAITING_RECONNECT
        assert run(send).status == S.SYNCED

    gone.refresh_from_db()
    working.refresh_from_db()
    assert gone.status == Connection.Status.NEEDS_RECONNECT
    assert working.status == Connection.Status.CONNECTED
    assert sorted(memberships(cc, account[working.pk])) == [f"sent{n}@example.com" for n in range(3)]
    assert memberships(cc, account[gone.pk]) == {}
    # One refused refresh for the revoked grant; the other connection's token was never touched.
    assert (refused_refreshes(cc), refreshes(cc, account[working.pk])) == (1, 0)
    [mail] = mailoutbox
    assert gone.account_name in mail.body and working.account_name not in mail.body
    if not gone.is_default:
        assert "(Shop B, b)" in mail.subject
    # Reconnected: its held signups, and only its, are released.
    connect_account(cc, gone.slug, account=account[gone.pk])
    assert {s.email for s in Signup.objects.filter(status=S.PENDING)} == {s.email for s in held}


# -- budgets: one per application ----------------------------------------------------------------


def test_one_applications_spent_quota_does_not_stall_a_connection_of_another_application(clock, db, cc, run):
    connect_account(cc)
    own = connect_account(cc, "own", account=ACCOUNT_B, client_id=OTHER_CLIENT_ID)
    assert own.application().budget("api") != "api"
    settings_app = cc.cc_sync_settings()["CLIENT_ID"]
    cc.spend_quota(settings_app)

    waits = run(enqueue_signup("waits@example.com"))
    assert (waits.status, waits.last_error_key) == (S.PENDING, "quota_exceeded")
    assert waits.next_attempt_at > timezone.now()
    assert run(enqueue_signup("goes@example.com", connection=own)).status == S.SYNCED
    assert list(memberships(cc, ACCOUNT_B)) == ["goes@example.com"]

    # cc_sync believes the settings' application spent, and only it.
    assert RateLimitState.objects.get(name="api").blocked_until is not None
    assert RateLimitState.objects.get(name=own.application().budget("api")).blocked_until is None
    asked = len(api_calls(cc, DEFAULT))
    assert run(enqueue_signup("waits2@example.com")).last_error_key == "quota_exceeded"
    assert len(api_calls(cc, DEFAULT)) == asked  # held back by cc_sync, not refused again by CC
    assert run(enqueue_signup("goes2@example.com", connection=own)).status == S.SYNCED
    assert cc.state()["quota"] == {settings_app: 10_000, OTHER_CLIENT_ID: len(api_calls(cc, ACCOUNT_B))}
    # The status report says so of the connection of that application, and of no other.
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("cc_sync_status", stdout=out)
    assert "[default] Constant Contact's daily quota is spent" in str(raised.value)
    assert "[own]" not in str(raised.value)
    default_block, own_block = out.getvalue().split("\n\n")
    assert "pending: 2" in default_block.splitlines() and "daily quota" in default_block
    assert "synced (24 h): 2" in own_block.splitlines() and "daily quota" not in own_block
    assert f"application: {OTHER_CLIENT_ID}" in own_block.splitlines()


def test_connections_sharing_an_application_draw_from_one_budget(clock, two, cc, run, cc_settings):
    a, b = two
    for n in range(2):
        assert run(enqueue_signup(f"a{n}@example.com", connection=a)).status == S.SYNCED
        assert run(enqueue_signup(f"b{n}@example.com", connection=b)).status == S.SYNCED
    settings_app = cc.cc_sync_settings()["CLIENT_ID"]
    by_a, by_b = len(api_calls(cc, DEFAULT)), len(api_calls(cc, ACCOUNT_B))
    assert by_a > 0 and by_b > 0
    # CC counts both accounts' requests in the one application's quota, and so does cc_sync's one budget row.
    assert cc.state()["quota"] == {settings_app: by_a + by_b}
    assert list(RateLimitState.objects.filter(name__startswith="api").values_list("name", "day_count")) == [
        ("api", by_a + by_b)
    ]
    # One request left in the shared daily budget: A takes it, and B's signup waits without reaching CC.
    cc_settings["DAILY_LIMIT"] = by_a + by_b + 1
    assert run(enqueue_signup("last@example.com", connection=a)).status == S.SYNCED
    waits = run(enqueue_signup("late@example.com", connection=b))
    assert (waits.status, waits.last_error_key) == (S.PENDING, "quota_exceeded")
    assert len(api_calls(cc, ACCOUNT_B)) == by_b


def test_an_own_applications_token_budget_is_paced_as_the_settings_one_is():
    own = Connection(slug="own", client_id="own-client").application()
    assert ratelimit.spacing(own.budget("token"), 1.0) == ratelimit.spacing("token", 1.0)
    assert ratelimit.spacing(own.budget("api"), 4.0) == ratelimit.spacing("api", 4.0)


# -- keep-alive ----------------------------------------------------------------------------------------


def test_keep_alive_refreshes_each_stale_connection_once_past_a_failing_one(
    db, cc, mailoutbox, django_capture_on_commit_callbacks
):
    stale_a = connect_account(cc, expires_in=60)  # within TOKEN_LEEWAY
    revoked = connect_account(cc, "revoked", account=ACCOUNT_C, expires_in=60)
    stale_b = connect_account(cc, "b", account=ACCOUNT_B, expires_in=60)
    fresh = connect_account(cc, "fresh", account=ACCOUNT_D)
    cc.revoke_grant(account=ACCOUNT_C)
    tokens = {c.slug: c.access_token for c in (stale_a, revoked, stale_b, fresh)}

    with django_capture_on_commit_callbacks(execute=True):  # the admins' mail goes on commit
        assert oauth.keep_alive() == 2
    counts = {account: refreshes(cc, account) for account in (DEFAULT, ACCOUNT_B, ACCOUNT_D)}
    assert counts == {DEFAULT: 1, ACCOUNT_B: 1, ACCOUNT_D: 0}
    assert refused_refreshes(cc) == 1  # the revoked one's, tried once
    now = {c.slug: c for c in Connection.objects.all()}
    assert now["default"].access_token != tokens["default"] and now["b"].access_token != tokens["b"]
    assert now["fresh"].access_token == tokens["fresh"]
    assert now["revoked"].status == Connection.Status.NEEDS_RECONNECT
    assert {c.status for slug, c in now.items() if slug != "revoked"} == {Connection.Status.CONNECTED}

    assert oauth.keep_alive() == 0  # all fresh now; the revoked one waits for an admin
    assert sum(refreshes(cc, account) for account in counts) + refused_refreshes(cc) == 3
    assert len(mailoutbox) == 1 and "revoked" in mailoutbox[0].subject


# -- routing a form's signups -----------------------------------------------------------------------------


def post_form(view: Any, host: str = "testserver", email: str = "visitor@example.com") -> Signup:
    request = RequestFactory().post("/signup/", {"email": email, **FORM}, HTTP_HOST=host)
    assert view(request).status_code == 302
    return Signup.objects.get(email=email)


def test_a_view_naming_a_connection_stores_its_signups_for_that_connection(db, settings):
    settings.ALLOWED_HOSTS = ["*"]
    b = Connection.objects.create(slug="b")
    assert post_form(SignupView.as_view(connection="b")).connection == b
    assert post_form(SignupView.as_view(), email="plain@example.com").connection_id is None


def test_a_view_naming_no_existing_connection_tells_the_visitor_and_stores_nothing(db, settings, caplog):
    settings.ALLOWED_HOSTS = ["*"]
    request = RequestFactory().post("/signup/", {"email": "lost@example.com", **FORM})
    response = SignupView.as_view(connection="renamed")(request)
    assert response.status_code == 503
    assert "cannot be taken right now" in response.rendered_content
    assert not Signup.objects.exists()
    assert "renamed" in caplog.text


@pytest.fixture
def by_site(db: Any, settings: Any, cc_settings: dict[str, Any]) -> Connection:
    settings.ALLOWED_HOSTS = ["*"]
    cc_settings["CONNECTION_CHOOSER"] = "cc_sync.routing.connection_for_site"
    return Connection.objects.create(slug="shop", site_domain="Shop.Example")


def test_the_site_chooser_picks_the_connection_by_the_requests_host_without_the_sites_framework(by_site):
    view = SignupView.as_view()
    assert post_form(view, host="shop.example", email="one@example.com").connection == by_site
    assert post_form(view, host="shop.example:8000", email="two@example.com").connection == by_site
    assert post_form(view, host="blog.example", email="three@example.com").connection_id is None


def test_the_site_chooser_uses_the_current_site_of_the_sites_framework(by_site, settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "django.contrib.sites"]
    from django.contrib.sites.models import Site

    with db_connection.cursor() as cursor:  # the sites app's table, in this test's transaction only
        cursor.execute(
            "CREATE TABLE django_site (id integer PRIMARY KEY, domain varchar(100) NOT NULL UNIQUE, "
            "name varchar(50) NOT NULL)"
        )
    Site.objects.clear_cache()
    Site.objects.create(id=1, domain="blog.example", name="Blog")
    Site.objects.create(id=2, domain="shop.example", name="Shop")
    view = SignupView.as_view()
    try:
        # Without SITE_ID the site is the one whose domain is the request's host ...
        assert post_form(view, host="shop.example", email="one@example.com").connection == by_site
        assert post_form(view, host="blog.example", email="two@example.com").connection_id is None
        # ... with SITE_ID it is that site, whatever host the form was posted to.
        settings.SITE_ID = 2
        assert post_form(view, host="blog.example", email="three@example.com").connection == by_site
    finally:
        Site.objects.clear_cache()
        # Installing the app ran the admin's autodiscovery, which registered Site in the one admin site.
        if admin.site.is_registered(Site):
            admin.site.unregister(Site)


def test_an_unknown_connection_slug_is_refused_and_nothing_is_stored(db):
    with pytest.raises(ValidationError) as raised:
        enqueue_signup("who@example.com", connection="nope")
    assert "nope" in str(raised.value.message_dict["connection"])
    assert not Signup.objects.exists()


# -- surge mode and the backfill ---------------------------------------------------------------------------


def run_surge(django_capture_on_commit_callbacks: Any) -> int:
    with django_capture_on_commit_callbacks(execute=True):
        return surge.run(poll_interval=0, sleep=lambda seconds: None)


@pytest.fixture
def surging(two, cc_settings, monkeypatch):
    cc_settings["SURGE_THRESHOLD"] = 3
    monkeypatch.setattr(backfill, "RETRY_BASE", 0.0)
    surge.forget()
    yield two
    surge.forget()


def due(count: int, prefix: str, connection: Connection) -> list[Signup]:
    connection_id = None if connection.is_default else connection.pk
    return [
        Signup.objects.create(email=f"{prefix}{n}@example.com", connection_id=connection_id)
        for n in range(count)
    ]


def imports(sandbox: Sandbox, account: str) -> list[dict[str, Any]]:
    return [e for e in api_calls(sandbox, account) if e["path"] == "/v3/activities/contacts_json_import"]


def test_surge_mode_imports_each_connections_signups_in_its_own_batch_into_its_own_account(
    surging, cc, django_capture_on_commit_callbacks
):
    a, b = surging
    due(3, "b", b)  # B's first: the batches are planned in the order the rows are claimed
    due(3, "a", a)
    assert run_surge(django_capture_on_commit_callbacks) == 2
    batches = {batch.connection_id: batch for batch in SurgeBatch.objects.all()}
    assert set(batches) == {None, b.pk}
    assert (batches[None].list_ids, batches[b.pk].list_ids) == (a.list_ids, b.list_ids)
    assert len(imports(cc, DEFAULT)) == 1 and len(imports(cc, ACCOUNT_B)) == 1
    assert memberships(cc) == {f"a{n}@example.com": a.list_ids for n in range(3)}
    assert memberships(cc, ACCOUNT_B) == {f"b{n}@example.com": b.list_ids for n in range(3)}
    assert set(Signup.objects.values_list("status", flat=True)) == {S.SYNCED}


def test_a_revoked_grant_in_surge_mode_holds_only_its_own_connections_signups(
    surging, cc, django_capture_on_commit_callbacks
):
    a, b = surging
    cc.revoke_grant(account=ACCOUNT_B)
    due(3, "b", b)  # B's batch is the first one sent, and fails
    due(3, "a", a)
    run_surge(django_capture_on_commit_callbacks)
    assert dict(Signup.objects.values_list("email", "status")) == {
        **{f"a{n}@example.com": S.SYNCED for n in range(3)},
        **{f"b{n}@example.com": S.WAITING_RECONNECT for n in range(3)},
    }
    assert memberships(cc) == {f"a{n}@example.com": a.list_ids for n in range(3)}
    assert Connection.objects.get(slug="b").status == Connection.Status.NEEDS_RECONNECT
    assert Connection.objects.get(slug="default").status == Connection.Status.CONNECTED


def test_a_spent_quota_in_surge_mode_holds_back_only_the_imports_of_that_application(
    clock, db, cc, cc_settings, monkeypatch, django_capture_on_commit_callbacks
):
    cc_settings["SURGE_THRESHOLD"] = 3
    monkeypatch.setattr(backfill, "RETRY_BASE", 0.0)
    surge.forget()
    a = connect_account(cc)
    own = connect_account(cc, "own", account=ACCOUNT_B, client_id=OTHER_CLIENT_ID)
    cc.spend_quota(cc.cc_sync_settings()["CLIENT_ID"])
    due(3, "a", a)  # the first batch, refused: its application's quota is spent
    due(3, "own", own)
    run_surge(django_capture_on_commit_callbacks)
    surge.forget()
    assert memberships(cc, ACCOUNT_B) == {f"own{n}@example.com": own.list_ids for n in range(3)}
    assert memberships(cc) == {}
    waiting = SurgeBatch.objects.get(connection=None)
    # CC's 429 to an import POST reads as a full activity queue (client._activity_post): the batch waits a
    # while, then the sweeper resumes it.
    assert waiting.status == SurgeBatch.Status.PENDING and "(HTTP 429)" in waiting.last_error
    assert waiting.lease_expires_at > timezone.now()
    statuses = dict(Signup.objects.values_list("email", "status"))
    assert statuses == {
        **{f"a{n}@example.com": S.SYNCING for n in range(3)},
        **{f"own{n}@example.com": S.SYNCED for n in range(3)},
    }


def test_backfill_with_a_connection_imports_into_that_connections_account(two, cc, tmp_path):
    _a, b = two
    source = tmp_path / "people.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name"])
        writer.writerows([[f"old{n}@example.com", f"Old{n}"] for n in range(3)])
    call_command(
        "cc_sync_backfill",
        "--csv",
        str(source),
        "--all-consented",
        "--connection",
        "b",
        "--poll-interval",
        "0",
        stdout=io.StringIO(),
    )
    assert memberships(cc, ACCOUNT_B) == {f"old{n}@example.com": b.list_ids for n in range(3)}
    assert memberships(cc) == {}
    assert BackfillRun.objects.get().connection == b
    assert imports(cc, DEFAULT) == []


# -- suppression and erasure hold for every account --------------------------------------------------------


def test_an_erased_email_is_sent_to_neither_account(two, cc, django_capture_on_commit_callbacks):
    a, b = two
    queued = [
        enqueue_signup("gone@example.com", connection=a),
        enqueue_signup("gone@example.com", connection=b),
    ]
    assert privacy.erase("Gone@Example.com") == 2
    with django_capture_on_commit_callbacks(execute=True):
        for signup in queued:  # the workers' messages, already queued, find no row
            tasks.sync_signup.run(signup.pk)
    assert enqueue_signup("gone@example.com", connection=a) is None
    assert enqueue_signup("gone@example.com", connection="b") is None
    assert not Signup.objects.exists()
    assert memberships(cc) == {} and memberships(cc, ACCOUNT_B) == {}
    assert [e for e in cc.requests() if e["email"] == "gone@example.com"] == []


def test_a_suppressed_email_already_queued_for_both_accounts_fails_for_both_unsent(two, cc, run):
    a, b = two
    queued = [
        enqueue_signup("stop@example.com", connection=a),
        enqueue_signup("stop@example.com", connection=b),
    ]
    privacy.suppress("stop@example.com")
    assert [(s.status, s.last_error_key) for s in map(run, queued)] == [(S.FAILED, "suppressed")] * 2
    assert memberships(cc) == {} and memberships(cc, ACCOUNT_B) == {}
