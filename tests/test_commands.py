"""Management commands: connect from a terminal (paste and device flow), status, key generation."""

from __future__ import annotations

import base64
import builtins
import functools
import io
import itertools
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django.utils import timezone
from responses import matchers

from cc_sync import oauth, privacy
from cc_sync.client import DEVICE_GRANT
from cc_sync.exceptions import AuthorizationFailed
from cc_sync.models import Connection, RateLimitState, Signup, Suppression, SuppressionLift, SurgeBatch
from rig import ROOT
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

NEW_ACCESS = "cli-access-token-cccccccccccccccccccccc"
NEW_REFRESH = "cli-refresh-token-dddddddddddddddddddddd"
DEVICE = {
    "device_code": "device-code-eeeeeeeeeeeeeeee",
    "user_code": "WDJB-MJHT",
    "verification_uri": "https://authz.cc.test/activate",
    "verification_uri_complete": "https://authz.cc.test/activate?user_code=WDJB-MJHT",
    "expires_in": 600,
    "interval": 5,
}
POLL = {"grant_type": DEVICE_GRANT, "device_code": DEVICE["device_code"], "client_id": "test-client-id"}


def token_body() -> dict:
    return cc_token_body(NEW_ACCESS, NEW_REFRESH)


def expect_account_and_lists(cc_api):
    bearer = matchers.header_matcher({"Authorization": f"Bearer {NEW_ACCESS}"})
    cc_api.get(
        f"{API_URL}/account/summary",
        json={"organization_name": "Acme Inc", "encoded_account_id": "a1"},
        match=[bearer],
    )
    cc_api.get(
        f"{API_URL}/contact_lists",
        json={"lists": [{"list_id": LIST_ID, "name": "Newsletter"}]},
        match=[bearer, matchers.query_param_matcher({"limit": "500"})],
    )


def assert_nothing_stored() -> None:
    stored = Connection.objects.filter(slug=Connection.DEFAULT_SLUG).first()
    if stored is not None:
        assert stored.status == Connection.Status.DISCONNECTED
        assert (stored.access_token, stored.refresh_token) == ("", "")


def fake_browser(monkeypatch, out: io.StringIO, answer) -> list[dict[str, str]]:
    """Answer the command's prompt with ``answer(params_of_printed_authorize_url)``."""
    seen: list[dict[str, str]] = []

    def fake_input(prompt: str = "") -> str:
        url = re.search(re.escape(AUTHORIZE_URL) + r"\?\S+", out.getvalue()).group(0)
        params = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
        seen.append(params)
        return answer(params)

    monkeypatch.setattr(builtins, "input", fake_input)
    return seen


# -- cc_sync_connect, paste mode ------------------------------------------------------------------------


def test_connect_paste_mode_connects_with_pasted_redirect_url(db, cc_api, monkeypatch):
    out = io.StringIO()
    seen = fake_browser(monkeypatch, out, lambda p: f"{REDIRECT_URI}?code=pasted-code&state={p['state']}\n")
    token = cc_api.post(
        TOKEN_URL,
        json=token_body(),
        match=[
            matchers.header_matcher(BASIC),
            matchers.urlencoded_params_matcher(
                {"grant_type": "authorization_code", "code": "pasted-code", "redirect_uri": REDIRECT_URI}
            ),
        ],
    )
    expect_account_and_lists(cc_api)

    call_command("cc_sync_connect", stdout=out)

    assert token.call_count == 1
    [params] = seen
    assert params["client_id"] == "test-client-id"
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["response_type"] == "code"
    assert params["scope"] == SCOPES
    assert "Connected to Constant Contact account Acme Inc." in out.getvalue()
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)
    assert stored.connected_by is None
    assert stored.available_lists == [{"list_id": LIST_ID, "name": "Newsletter"}]
    assert NEW_ACCESS not in out.getvalue()


def test_connect_paste_mode_accepts_a_bare_code_and_redirect_uri_option(db, cc_api, monkeypatch):
    out = io.StringIO()
    fake_browser(monkeypatch, out, lambda p: "  bare-code  ")
    cc_api.post(
        TOKEN_URL,
        json=token_body(),
        match=[
            matchers.header_matcher(BASIC),
            matchers.urlencoded_params_matcher(
                {
                    "grant_type": "authorization_code",
                    "code": "bare-code",
                    "redirect_uri": "https://other.example/cb",
                }
            ),
        ],
    )
    expect_account_and_lists(cc_api)
    call_command("cc_sync_connect", "--redirect-uri", "https://other.example/cb", stdout=out)
    assert Connection.load().status == Connection.Status.CONNECTED


@pytest.mark.parametrize(
    "pasted",
    [
        f"{REDIRECT_URI}?code=pasted-code&state=not-the-issued-state",
        f"{REDIRECT_URI}?code=pasted-code",
        f"{REDIRECT_URI}?code=pasted-code&state=%C3%A9t%C3%A9",
    ],
    ids=["wrong-state", "no-state", "non-ascii-state"],
)
def test_connect_paste_mode_with_wrong_state_raises_command_error_and_stores_nothing(
    db, cc_api, monkeypatch, pasted
):
    out = io.StringIO()
    fake_browser(monkeypatch, out, lambda p: pasted)
    with pytest.raises(CommandError, match="different state"):
        call_command("cc_sync_connect", stdout=out)
    assert_nothing_stored()


def test_connect_paste_mode_with_access_denied_raises_command_error(db, cc_api, monkeypatch):
    out = io.StringIO()
    fake_browser(monkeypatch, out, lambda p: f"{REDIRECT_URI}?error=access_denied&state={p['state']}")
    with pytest.raises(CommandError, match="access_denied"):
        call_command("cc_sync_connect", stdout=out)
    assert_nothing_stored()


def test_connect_paste_mode_with_refused_code_raises_command_error(db, cc_api, monkeypatch):
    out = io.StringIO()
    fake_browser(monkeypatch, out, lambda p: f"{REDIRECT_URI}?code=used-code&state={p['state']}")
    cc_api.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "bad code"},
        match=[matchers.header_matcher(BASIC)],
    )
    with pytest.raises(CommandError, match="invalid_grant") as raised:
        call_command("cc_sync_connect", stdout=out)
    assert "used-code" not in str(raised.value)
    assert_nothing_stored()


def test_connect_paste_mode_without_redirect_uri_raises_command_error(db, cc_api, cc_settings):
    del cc_settings["REDIRECT_URI"]
    with pytest.raises(CommandError, match="--redirect-uri"):
        call_command("cc_sync_connect", stdout=io.StringIO())


# -- cc_sync_connect --device ---------------------------------------------------------------------------


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Make the device flow's waits instant (and recorded)."""
    recorded: list[float] = []
    ticks = itertools.count()
    monkeypatch.setattr(
        oauth,
        "finish_device_flow",
        functools.partial(oauth.finish_device_flow, sleep=recorded.append, clock=lambda: float(next(ticks))),
    )
    return recorded


def expect_device_authorize(cc_api):
    return cc_api.post(
        DEVICE_URL,
        json=DEVICE,
        match=[
            no_authorization_header,
            matchers.urlencoded_params_matcher({"client_id": "test-client-id", "scope": SCOPES}),
        ],
    )


def expect_poll(cc_api, **kwargs):
    return cc_api.post(
        TOKEN_URL, match=[no_authorization_header, matchers.urlencoded_params_matcher(POLL)], **kwargs
    )


def test_connect_device_mode_polls_until_approved(db, cc_api, sleeps):
    authorize = expect_device_authorize(cc_api)
    expect_poll(cc_api, status=400, json={"error": "authorization_pending", "error_description": "Waiting"})
    expect_poll(cc_api, json=token_body())
    expect_account_and_lists(cc_api)
    out = io.StringIO()

    call_command("cc_sync_connect", "--device", stdout=out)

    assert authorize.call_count == 1
    assert [call.request.url for call in cc_api.calls[1:3]] == [TOKEN_URL, TOKEN_URL]
    assert sleeps == [5.0, 5.0]
    printed = out.getvalue()
    assert DEVICE["verification_uri_complete"] in printed
    assert DEVICE["user_code"] in printed
    assert "Connected to Constant Contact account Acme Inc." in printed
    assert DEVICE["device_code"] not in printed
    stored = Connection.load()
    assert stored.status == Connection.Status.CONNECTED
    assert (stored.access_token, stored.refresh_token) == (NEW_ACCESS, NEW_REFRESH)


def test_device_flow_slow_down_increases_the_interval(db, cc_api):
    expect_poll(cc_api, status=400, json={"error": "slow_down"})
    expect_poll(cc_api, status=400, json={"error": "authorization_pending"})
    expect_poll(cc_api, json=token_body())
    expect_account_and_lists(cc_api)
    waits: list[float] = []
    ticks = itertools.count()

    connection = oauth.finish_device_flow(dict(DEVICE), sleep=waits.append, clock=lambda: float(next(ticks)))

    assert waits == [5.0, 10.0, 10.0]
    assert connection.status == Connection.Status.CONNECTED


def test_device_flow_gives_up_when_nobody_approves_in_time(db, cc_api):
    expect_poll(cc_api, status=400, json={"error": "authorization_pending"})
    now = iter([0.0, 0.0, 700.0])
    with pytest.raises(AuthorizationFailed, match="in time"):
        oauth.finish_device_flow(dict(DEVICE), sleep=lambda s: None, clock=lambda: next(now))
    assert_nothing_stored()


@pytest.mark.parametrize("error", ["access_denied", "expired_token"])
def test_connect_device_mode_denied_raises_command_error_and_stores_nothing(db, cc_api, sleeps, error):
    expect_device_authorize(cc_api)
    expect_poll(
        cc_api, status=400, json={"error": error, "error_description": "The user denied the request."}
    )
    with pytest.raises(CommandError, match=error):
        call_command("cc_sync_connect", "--device", stdout=io.StringIO())
    assert sleeps == [5.0]
    assert_nothing_stored()


def test_connect_device_mode_that_cannot_start_raises_command_error(db, cc_api, sleeps):
    cc_api.post(
        DEVICE_URL,
        status=400,
        json={"error": "unauthorized_client", "error_description": "Device flow is not enabled."},
    )
    with pytest.raises(CommandError, match="device flow could not be started"):
        call_command("cc_sync_connect", "--device", stdout=io.StringIO())
    assert sleeps == []
    assert_nothing_stored()


# -- cc_sync_status ---------------------------------------------------------------------------------------


def test_status_exits_non_zero_when_not_connected(db):
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("cc_sync_status", stdout=out)
    assert raised.value.returncode == 1
    assert "Constant Contact is disconnected." in str(raised.value)
    assert "connection: disconnected" in out.getvalue()
    assert "ok" not in out.getvalue().splitlines()


def test_status_prints_ok_when_connected_with_list_and_nothing_failed(connection):
    Signup.objects.create(email="s@example.com", status=Signup.Status.SYNCED, synced_at=timezone.now())
    out = io.StringIO()
    call_command("cc_sync_status", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "connection: connected (Acme Inc)"
    assert f"lists: {LIST_ID}" in lines
    assert lines[-1] == "ok"
    assert "synced (24 h): 1" in out.getvalue()
    assert ACCESS_TOKEN not in out.getvalue()
    assert REFRESH_TOKEN not in out.getvalue()


def test_status_exits_non_zero_when_a_signup_failed(connection):
    Signup.objects.create(email="f@example.com", status=Signup.Status.FAILED)
    with pytest.raises(CommandError, match="1 signups failed") as raised:
        call_command("cc_sync_status", stdout=io.StringIO())
    assert raised.value.returncode == 1


def test_status_exits_non_zero_when_no_list_is_chosen(db, cc_settings):
    cc_settings["LIST_IDS"] = []
    make_connection(list_ids=[])
    with pytest.raises(CommandError, match="No Constant Contact list is chosen"):
        call_command("cc_sync_status", stdout=io.StringIO())


def test_status_exits_non_zero_when_connection_needs_reconnect(db):
    make_connection(status=Connection.Status.NEEDS_RECONNECT, expires_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(CommandError, match="needs reconnect"):
        call_command("cc_sync_status", stdout=io.StringIO())


def test_status_exit_code_from_command_line_is_one(db):
    utility = ManagementUtility(["manage.py", "cc_sync_status"])
    with pytest.raises(SystemExit) as raised:
        utility.execute()
    assert raised.value.code == 1


def test_status_counts_every_status_including_the_new_holds(connection):
    for status, count in ((Signup.Status.AWAITING_CONFIRMATION, 2), (Signup.Status.WAITING_LIST, 3)):
        for i in range(count):
            Signup.objects.create(email=f"{status}{i}@example.com", status=status)
    out = io.StringIO()
    with pytest.raises(CommandError, match="3 signups are held until a list is chosen"):
        call_command("cc_sync_status", stdout=out)
    lines = out.getvalue().splitlines()
    for line in ("pending: 0", "syncing: 0", "waiting for a connection: 0", "failed: 0"):
        assert line in lines
    assert "awaiting confirmation: 2" in lines
    assert "waiting for a list: 3" in lines


def test_status_shows_the_signups_in_unfinished_bulk_imports(connection, cc_settings):
    cc_settings["LIST_IDS"] = [LIST_ID]
    running = SurgeBatch.objects.create(status=SurgeBatch.Status.SUBMITTED, activity_id="a-1")
    done = SurgeBatch.objects.create(status=SurgeBatch.Status.COMPLETED)
    for i in range(3):
        Signup.objects.create(email=f"bulk{i}@example.com", status=Signup.Status.SYNCING, surge_batch=running)
    Signup.objects.create(email="one@example.com", status=Signup.Status.SYNCING)
    Signup.objects.create(email="imported@example.com", status=Signup.Status.SYNCED, surge_batch=done)
    out = io.StringIO()
    call_command("cc_sync_status", stdout=out)
    lines = out.getvalue().splitlines()
    assert "syncing: 4" in lines
    assert "in bulk imports (surge mode): 3 signups in 1 imports" in lines


QUOTA_NOW = timezone.make_aware(timezone.datetime(2031, 3, 4, 22, 30))


def test_status_says_when_the_daily_quota_is_spent_and_until_when(connection, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: QUOTA_NOW)
    RateLimitState.objects.update_or_create(
        name="api", defaults={"blocked_until": QUOTA_NOW + timedelta(hours=2, minutes=5)}
    )
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("cc_sync_status", stdout=out)
    assert (
        "Constant Contact's daily quota is spent; cc_sync waits until 2031-03-05 00:35 UTC and probes "
        "sparingly." in out.getvalue().splitlines()
    )
    # Past the time, the block holds until CC accepts a probe: its day may not end at 00:00 UTC.
    RateLimitState.objects.filter(name="api").update(blocked_until=QUOTA_NOW - timedelta(seconds=1))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("cc_sync_status", stdout=out)
    assert "daily quota was spent; cc_sync probes whether it is back" in out.getvalue()
    RateLimitState.objects.filter(name="api").update(blocked_until=None)  # a probe was accepted
    out = io.StringIO()
    call_command("cc_sync_status", stdout=out)
    assert "daily quota" not in out.getvalue()


def test_status_names_a_list_that_no_longer_exists(db, cc_settings):
    cc_settings["LIST_IDS"] = []
    make_connection(list_ids=[LIST_ID], missing_list_ids=[LIST_ID])
    with pytest.raises(
        CommandError, match=f"List {LIST_ID} no longer exists at Constant Contact; choose another"
    ):
        call_command("cc_sync_status", stdout=io.StringIO())


def test_status_reports_tokens_the_keys_cannot_read_instead_of_crashing(connection, cc_settings):
    cc_settings["ENCRYPTION_KEYS"] = ["Zm9yZWlnbi1rZXktbm90LXVzZWQtYnktdGhpcy1zaXQ="]
    with pytest.raises(CommandError, match="cannot be read with the configured ENCRYPTION_KEYS"):
        call_command("cc_sync_status", stdout=io.StringIO())


# Several connections: each one's block, its own signups and lists, its application's budget.
OTHER_LIST = "1bd5b9a2-8f0c-11ee-b9d1-0242ac120002"
OWN_LIST = "2c4a7e10-8f0c-11ee-b9d1-0242ac120002"


def blocks(output: str) -> dict[str, list[str]]:
    """The lines of each connection's block of the status output, by slug."""
    found = {}
    for block in output.split("\n\n"):
        lines = block.splitlines()
        found[re.match(r"connection ([^\s:]+)", lines[0]).group(1)] = lines
    return found


@pytest.fixture
def three(connection, monkeypatch):
    """The default connection, "b" (the settings' application too) and "own" (its own application)."""
    monkeypatch.setattr(timezone, "now", lambda: QUOTA_NOW)
    monkeypatch.setattr("time.time", QUOTA_NOW.timestamp)
    connected = {"status": Connection.Status.CONNECTED, "expires_at": QUOTA_NOW + timedelta(hours=1)}
    b = Connection.objects.create(
        slug="b", name="Shop B", account_name="B Corp", list_ids=[OTHER_LIST], **connected
    )
    own = Connection.objects.create(
        slug="own",
        account_name="C Corp",
        client_id="own-client",
        client_secret="own-secret",
        list_ids=[OWN_LIST],
        **connected,
    )
    return connection, b, own


def test_status_reports_each_connection_with_its_own_signups_lists_and_application_budget(three):
    default, b, own = three
    Signup.objects.create(email="a@example.com")
    Signup.objects.create(
        email="a2@example.com", status=Signup.Status.SYNCED, synced_at=QUOTA_NOW, connection=default
    )
    for n in range(3):
        Signup.objects.create(email=f"b{n}@example.com", connection=b)
    RateLimitState.objects.create(name="api", day=QUOTA_NOW.date(), day_count=7)
    RateLimitState.objects.create(name=own.application().budget("api"), day=QUOTA_NOW.date(), day_count=2)
    out = io.StringIO()
    call_command("cc_sync_status", stdout=out)
    *_, last = out.getvalue().splitlines()
    assert last == "ok"
    found = blocks(out.getvalue().rpartition("\n")[0])
    assert list(found) == ["default", "b", "own"]
    assert found["default"][:2] == [
        "connection default: connected (Acme Inc)",
        "application: test-client-id",
    ]
    assert found["b"][:2] == ["connection b (Shop B): connected (B Corp)", "application: test-client-id"]
    assert found["own"][:2] == ["connection own: connected (C Corp)", "application: own-client"]
    assert "own-secret" not in out.getvalue()
    assert (f"lists: {LIST_ID}", f"lists: {OTHER_LIST}", f"lists: {OWN_LIST}") == tuple(
        next(line for line in found[slug] if line.startswith("lists:")) for slug in found
    )
    assert ("pending: 1" in found["default"], "synced (24 h): 1" in found["default"]) == (True, True)
    assert ("pending: 3" in found["b"], "synced (24 h): 0" in found["b"]) == (True, True)
    assert "pending: 0" in found["own"]
    # CC counts per application: default and b share one budget, own has its own.
    shared = "API requests today (UTC): 7 / 10000 (shared by default, b)"
    assert shared in found["default"] and shared in found["b"]
    assert "API requests today (UTC): 2 / 10000" in found["own"]


def test_status_names_the_connection_of_each_problem_and_its_quota_block_only_where_it_applies(three):
    default, b, own = three
    Connection.objects.filter(pk=b.pk).update(status=Connection.Status.NEEDS_RECONNECT)
    for n in range(2):
        Signup.objects.create(
            email=f"held{n}@example.com", connection=b, status=Signup.Status.WAITING_RECONNECT
        )
    RateLimitState.objects.create(name="api", blocked_until=QUOTA_NOW + timedelta(hours=1))
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("cc_sync_status", stdout=out)
    quota = "Constant Contact's daily quota is spent; cc_sync waits until 2031-03-04 23:30 UTC and probes sparingly."
    assert str(raised.value) == (
        f"needs attention: [default] {quota} [b] Constant Contact is needs reconnect. "
        f"[b] 2 signups are held until Constant Contact is reconnected. [b] {quota}"
    )
    found = blocks(out.getvalue())
    assert "waiting for a connection: 0" in found["default"] and "waiting for a connection: 2" in found["b"]
    assert quota in found["default"] and quota in found["b"] and quota not in found["own"]


def test_status_with_a_connection_reports_only_that_one(three):
    default, b, own = three
    Signup.objects.create(email="f@example.com", connection=b, status=Signup.Status.FAILED)
    out = io.StringIO()
    call_command("cc_sync_status", "--connection", "own", stdout=out)
    assert out.getvalue().splitlines()[0] == "connection own: connected (C Corp)"
    assert "connection b" not in out.getvalue() and out.getvalue().splitlines()[-1] == "ok"
    with pytest.raises(CommandError, match=r"^needs attention: \[b\] 1 signups failed\.$"):
        call_command("cc_sync_status", "--connection", "b", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"known: default, b, own") as raised:
        call_command("cc_sync_status", "--connection", "nope", stdout=io.StringIO())
    assert raised.value.returncode == 2


# -- cc_sync_unsuppress -------------------------------------------------------------------------------------


def test_unsuppress_deletes_the_suppression_and_leaves_a_record(db, monkeypatch):
    privacy.erase("Anna@Example.com")
    out = io.StringIO()
    call_command(
        "cc_sync_unsuppress",
        "anna@example.com",
        "--reason",
        "asked to subscribe again, ticket 42",
        "--by",
        "ops",
        stdout=out,
    )
    assert not privacy.is_suppressed("anna@example.com")
    [lift] = SuppressionLift.objects.all()
    assert lift.email_hash == privacy.email_hash("anna@example.com")
    assert lift.original_reason == Suppression.Reason.ERASED
    assert lift.reason == "asked to subscribe again, ticket 42"
    assert lift.lifted_by == "ops"
    assert lift.lifted_at is not None
    assert "suppression lifted (was: Erased on request)" in out.getvalue()
    assert "anna" not in out.getvalue().lower()


def test_unsuppress_records_the_operating_system_user_by_default(db, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    privacy.suppress("b@example.com")
    call_command("cc_sync_unsuppress", "b@example.com", "--reason", "re-opted in", stdout=io.StringIO())
    assert SuppressionLift.objects.get().lifted_by == "deploy"


def test_unsuppress_needs_a_reason(db):
    privacy.suppress("c@example.com")
    with pytest.raises(CommandError, match="--reason"):
        call_command("cc_sync_unsuppress", "c@example.com", "--reason", "  ", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("cc_sync_unsuppress", "c@example.com", stdout=io.StringIO())
    assert privacy.is_suppressed("c@example.com")
    assert not SuppressionLift.objects.exists()


def test_unsuppress_of_an_address_not_suppressed_changes_nothing(db):
    with pytest.raises(CommandError, match="not on the suppression list"):
        call_command("cc_sync_unsuppress", "d@example.com", "--reason", "x", stdout=io.StringIO())
    assert not SuppressionLift.objects.exists()


# -- cc_sync_backfill --report ------------------------------------------------------------------------------


def test_backfill_report_neutralises_spreadsheet_formulas(db, tmp_path):
    import csv

    source = tmp_path / "people.csv"
    source.write_text(
        "email,first_name,consent\n"
        '"=HYPERLINK(""http://evil.example"",""x"")",A,yes\n'
        "+1+2,B,yes\n"
        "-3-4,C,yes\n"
        "@SUM(A1),D,yes\n"
        "plain-not-an-email,F,yes\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.csv"
    with pytest.raises(CommandError):  # invalid rows: exit 1
        call_command(
            "cc_sync_backfill",
            "--csv",
            str(source),
            "--dry-run",
            "--report",
            str(report),
            stdout=io.StringIO(),
        )
    with report.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    emails = [row["email"] for row in rows]
    assert emails == [
        '\'=HYPERLINK("http://evil.example","x")',
        "'+1+2",
        "'-3-4",
        "'@SUM(A1)",
        "plain-not-an-email",
    ]
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
        (7, 7),
    ],
)
def test_report_cells_that_a_spreadsheet_would_run_get_a_quote(value, written):
    from cc_sync.management.commands.cc_sync_backfill import safe_cell

    assert safe_cell(value) == written


# -- cc_sync_generate_key ---------------------------------------------------------------------------------


def test_generate_key_prints_a_valid_fernet_key():
    out = io.StringIO()
    call_command("cc_sync_generate_key", stdout=out)
    key = out.getvalue().strip()
    assert len(key) == 44
    assert len(base64.urlsafe_b64decode(key)) == 32
    fernet = Fernet(key.encode())
    assert fernet.decrypt(fernet.encrypt(b"secret")) == b"secret"
    again = io.StringIO()
    call_command("cc_sync_generate_key", stdout=again)
    assert again.getvalue().strip() != key


def test_generate_key_makes_a_hash_key_too():
    out = io.StringIO()
    call_command("cc_sync_generate_key", "--hash-key", stdout=out)
    key = out.getvalue().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", key)
    again = io.StringIO()
    call_command("cc_sync_generate_key", "--hash-key", stdout=again)
    assert again.getvalue().strip() != key


def test_generate_key_env_prints_both_keys_as_environment_lines():
    out = io.StringIO()
    call_command("cc_sync_generate_key", "--env", stdout=out)
    lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert sorted(lines) == ["CC_SYNC_ENCRYPTION_KEYS", "CC_SYNC_HASH_KEY"]
    Fernet(lines["CC_SYNC_ENCRYPTION_KEYS"].encode())
    assert len(lines["CC_SYNC_HASH_KEY"]) == 64


def test_generate_key_runs_while_the_settings_are_still_incomplete(tmp_path):
    """The documented order: write the settings (keys read from the environment, still unset), make the keys.

    No CC_SYNC keys, no CC application, nothing in the environment: the command still prints keys, where
    before ``KeyError: 'CC_CLIENT_ID'`` (from ``os.environ[...]`` in the documented snippet) stopped it.
    """
    import os
    import subprocess
    import sys

    (tmp_path / "incomplete_settings.py").write_text(
        "import os\n"
        "SECRET_KEY = 'x'\n"
        "INSTALLED_APPS = ['cc_sync', 'django.contrib.admin', 'django.contrib.auth',\n"
        "    'django.contrib.contenttypes', 'django.contrib.sessions', 'django.contrib.messages']\n"
        "DATABASES = {}\n"
        "CC_SYNC = {\n"
        "    'CLIENT_ID': os.environ.get('CC_CLIENT_ID', ''),\n"
        "    'ENCRYPTION_KEYS': os.environ.get('CC_SYNC_ENCRYPTION_KEYS', ''),\n"
        "    'HASH_KEY': os.environ.get('CC_SYNC_HASH_KEY', ''),\n"
        "}\n"
        "CELERY_BROKER_URL = 'redis://127.0.0.1:6379/0'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CC_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "-m", "django", "cc_sync_generate_key", "--env", "--settings=incomplete_settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CC_SYNC_ENCRYPTION_KEYS=")


# -- commands with tokens the keys cannot read ----------------------------------------------------------------


def test_cc_sync_commands_run_despite_e007_which_still_stops_other_commands(db, cc_settings):
    from django.core.management.base import SystemCheckError

    make_connection()
    cc_settings["ENCRYPTION_KEYS"] = ["Zm9yZWlnbi1rZXktbm90LXVzZWQtYnktdGhpcy1zaXQ="]
    # The status command reports the problem itself instead of being stopped by the system check.
    with pytest.raises(CommandError, match="cannot be read with the configured ENCRYPTION_KEYS"):
        call_command("cc_sync_status", skip_checks=False, stdout=io.StringIO())
    # Erasing a person does not wait for the key.
    call_command("cc_sync_erase", "x@example.com", skip_checks=False, stdout=io.StringIO())
    assert privacy.is_suppressed("x@example.com")
    # Django's own commands, and those that need the tokens, stop on it.
    with pytest.raises(SystemCheckError, match="cc_sync.E007"):
        call_command("check")
    with pytest.raises(SystemCheckError, match="cc_sync.E007"):
        call_command("cc_sync_backfill", "--csv", "nothing.csv", skip_checks=False)
