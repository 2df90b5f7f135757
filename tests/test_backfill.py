"""The bulk backfill: sources, batching, polling, reports, resuming, and the sandbox's bulk import."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from responses import matchers

from cc_sync import backfill, privacy
from cc_sync.client import ConstantContactClient
from cc_sync.exceptions import Rejected
from cc_sync.models import BackfillBatch, BackfillRun, Connection
from cc_sync.sandbox import DEFAULT_LISTS, Sandbox
from rig.cc import make_connection
from rig.constants import ACCESS_TOKEN, LIST_ID

API = "https://api.cc.test/v3"
IMPORT_URL = f"{API}/activities/contacts_json_import"
BEARER = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
ACTIVITY_A = "11111111-1111-4111-8111-111111111111"
ACTIVITY_B = "22222222-2222-4222-8222-222222222222"
ACTIVITY_C = "33333333-3333-4333-8333-333333333333"
OTHER_LIST = DEFAULT_LISTS[1]["list_id"]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backfill, "RETRY_BASE", 0.0)


def write_csv(tmp_path: Path, text: str, name: str = "people.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def people(count: int, start: int = 1) -> str:
    return "".join(f"person{n}@example.com,First{n},Last{n},yes\n" for n in range(start, start + count))


def contact(n: int) -> dict[str, str]:
    return {"email": f"person{n}@example.com", "first_name": f"First{n}", "last_name": f"Last{n}"}


def run_command(*args: str) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("cc_sync_backfill", *args, "--poll-interval", "0", stdout=out, stderr=err)
        code = 0
    except CommandError as error:
        err.write(str(error))
        code = error.returncode
    return out.getvalue(), err.getvalue(), code


def expect_import(
    cc_api: Any, contacts: list[dict[str, str]], activity_id: str, lists: list[str] | None = None
):
    return cc_api.post(
        IMPORT_URL,
        match=[
            matchers.header_matcher(BEARER),
            matchers.json_params_matcher({"import_data": contacts, "list_ids": lists or [LIST_ID]}),
        ],
        status=201,
        json={
            "activity_id": activity_id,
            "state": "initialized",
            "percent_done": 0,
            "_links": {"self": {"href": f"/v3/activities/{activity_id}"}},
        },
    )


def expect_activity(cc_api: Any, activity_id: str, state: str = "completed", percent: int = 100, errors=()):
    return cc_api.get(
        f"{API}/activities/{activity_id}",
        match=[matchers.header_matcher(BEARER)],
        json={
            "activity_id": activity_id,
            "state": state,
            "percent_done": percent,
            "activity_errors": list(errors),
        },
    )


def read_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- sources and validation ------------------------------------------------------------------------


def test_batches_never_exceed_the_contact_limit(connection, cc_api, tmp_path, monkeypatch):
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 2)
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(5))
    calls = [
        expect_import(cc_api, [contact(1), contact(2)], ACTIVITY_A),
        expect_import(cc_api, [contact(3), contact(4)], ACTIVITY_B),
        expect_import(cc_api, [contact(5)], ACTIVITY_C),
    ]
    for activity_id in (ACTIVITY_A, ACTIVITY_B, ACTIVITY_C):
        expect_activity(cc_api, activity_id)

    out, err, code = run_command("--csv", path)

    assert code == 0, err
    assert [call.call_count for call in calls] == [1, 1, 1]
    assert "5 contacts in 3 batches: 3 completed, 0 failed" in out
    assert "5/5 contacts, batch 3/3, activity 100%" in err


def test_batches_stay_under_the_byte_limit(connection, cc_api, tmp_path, monkeypatch):
    one = len(json.dumps(contact(1)))
    base = len(backfill.request_body([], [LIST_ID]))
    # Room for two contacts but not three (each after the first adds ", ").
    monkeypatch.setattr(backfill, "MAX_BYTES", base + 3 * one + 4)
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(5))
    cc_api.post(IMPORT_URL, status=201, json={"activity_id": ACTIVITY_A, "state": "initialized"})
    expect_activity(cc_api, ACTIVITY_A)

    _out, err, code = run_command("--csv", path)

    assert code == 0, err
    bodies = [call.request.body for call in cc_api.calls if call.request.method == "POST"]
    assert [len(json.loads(body)["import_data"]) for body in bodies] == [2, 2, 1]
    assert all(len(body) < backfill.MAX_BYTES for body in bodies)


def test_polls_until_the_activity_is_completed(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(2))
    expect_import(cc_api, [contact(1), contact(2)], ACTIVITY_A)
    polls = [
        expect_activity(cc_api, ACTIVITY_A, "processing", 50),
        expect_activity(cc_api, ACTIVITY_A, "processing", 90),
        expect_activity(cc_api, ACTIVITY_A, "completed", 100),
    ]
    source = backfill.load_source(csv_path=path, list_ids=[LIST_ID])
    slept: list[float] = []
    seen: list[tuple[int, int]] = []

    run, how = backfill.run_backfill(
        source,
        [LIST_ID],
        poll_interval=7.5,
        sleep=slept.append,
        progress=lambda p: seen.append((p.done, p.percent)),
    )

    assert how == "new"
    assert [call.call_count for call in polls] == [1, 1, 1]
    assert slept == [7.5, 7.5, 7.5]
    assert seen[-1] == (2, 100)
    assert (1, 50) in seen
    batch = run.batches.get()
    assert (batch.status, batch.state, batch.activity_id) == ("completed", "completed", ACTIVITY_A)
    assert run.status == BackfillRun.Status.FINISHED


def test_contact_errors_from_cc_are_reported_with_the_email(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(3))
    expect_import(cc_api, [contact(1), contact(2), contact(3)], ACTIVITY_A)
    # CC documents activity_errors as plain strings: one names a line, one quotes the address.
    expect_activity(
        cc_api,
        ACTIVITY_A,
        errors=["Line 2: Invalid email address.", "person3@example.com: the contact cannot be added."],
    )
    report = tmp_path / "report.csv"

    out, _err, code = run_command("--csv", path, "--report", str(report))

    assert code == 1
    assert "2 contacts refused by Constant Contact" in out
    assert read_report(report) == [
        {
            "row": "3",
            "email": "person2@example.com",
            "stage": "constant_contact",
            "error": "Line 2: Invalid email address.",
        },
        {
            "row": "4",
            "email": "person3@example.com",
            "stage": "constant_contact",
            "error": "person3@example.com: the contact cannot be added.",
        },
    ]


def test_suppressed_emails_are_never_sent(connection, cc_api, tmp_path):
    privacy.suppress("Person2@Example.com")
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(3))
    expect_import(cc_api, [contact(1), contact(3)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)

    out, err, code = run_command("--csv", path)

    assert code == 0, err
    assert "2 to import, 0 invalid, 0 without consent, 0 duplicates, 1 suppressed" in out


def test_an_email_suppressed_after_planning_is_dropped_before_sending(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(2))
    source = backfill.load_source(csv_path=path, list_ids=[LIST_ID])
    run, _how = backfill.find_or_create_run(source, [LIST_ID])
    privacy.erase("person1@example.com")
    expect_import(cc_api, [contact(2)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)

    backfill.run_backfill(
        backfill.load_source(csv_path=path, list_ids=[LIST_ID]), [LIST_ID], sleep=lambda s: None
    )

    assert run.batches.get().rows == [1]


def test_invalid_rows_are_reported_and_never_sent(connection, cc_api, tmp_path):
    path = write_csv(
        tmp_path,
        "email,first_name,last_name,consent\n"
        "not-an-email,A,B,yes\n"
        f"person1@example.com,{'x' * 51},B,yes\n"
        "person2@example.com,First2,Last2,yes\n"
        "person3@example.com,Line\u2028break,B,yes\n",
    )
    expect_import(cc_api, [contact(2)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)
    report = tmp_path / "report.csv"

    out, _err, code = run_command("--csv", path, "--report", str(report))

    assert code == 1
    assert "1 to import, 3 invalid" in out
    rows = read_report(report)
    assert [(r["row"], r["email"], r["stage"]) for r in rows] == [
        ("2", "not-an-email", "validation"),
        ("3", "person1@example.com", "validation"),
        ("5", "person3@example.com", "validation"),
    ]
    assert "at most 50 characters" in rows[1]["error"]


def test_rows_without_consent_and_duplicates_are_skipped(connection, cc_api, tmp_path):
    path = write_csv(
        tmp_path,
        "email,first_name,last_name,consent\n"
        "person1@example.com,First1,Last1,yes\n"
        "person2@example.com,First2,Last2,no\n"
        "person3@example.com,First3,Last3,\n"
        "PERSON1@example.com,First1,Last1,1\n",
    )
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)

    out, err, code = run_command("--csv", path)

    assert code == 0, err
    assert "1 to import, 0 invalid, 2 without consent, 1 duplicates" in out


def test_csv_without_consent_column_needs_all_consented(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name\nperson1@example.com,First1\n")

    _out, err, code = run_command("--csv", path)

    assert code == 2
    assert "no consent column" in err
    assert BackfillRun.objects.count() == 0

    expect_import(cc_api, [{"email": "person1@example.com", "first_name": "First1"}], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)
    assert run_command("--csv", path, "--all-consented")[2] == 0


@pytest.mark.parametrize(
    "header, message",
    [
        ("name,first_name\n", "no email column"),
        ("email,first_name,nickname,consent\n", "unknown columns: nickname"),
        ("email,email,consent\n", "repeats columns: email"),
        ("", "empty"),
    ],
)
def test_a_bad_csv_header_stops_before_anything_is_sent(connection, cc_api, tmp_path, header, message):
    path = write_csv(tmp_path, header + "person1@example.com,x,y\n" if header else "")

    _out, err, code = run_command("--csv", path)

    assert code == 2
    assert message in err
    assert BackfillRun.objects.count() == 0


def test_custom_fields_and_phone_are_sent_with_cc_names(connection, cc_api, tmp_path):
    path = write_csv(
        tmp_path, "email,phone_number,cf:favourite_colour,consent\nperson1@example.com,555-0100,Blue,yes\n"
    )
    expect_import(
        cc_api,
        [{"email": "person1@example.com", "phone": "555-0100", "cf:favourite_colour": "Blue"}],
        ACTIVITY_A,
    )
    expect_activity(cc_api, ACTIVITY_A)

    assert run_command("--csv", path)[2] == 0


def test_phones_follow_the_import_limit_of_50_not_the_signup_form_limit(connection, cc_api, tmp_path):
    # CC's spec: import_data's "phone" takes 50 characters; sign_up_form's phone_number takes 25.
    long_phone = "+44 (0)20 7946 0000 extension 12345 to 7"  # 40 characters
    too_long = "1" * 51
    path = write_csv(
        tmp_path,
        "email,phone_number,consent\n"
        f"person1@example.com,{long_phone},yes\n"
        f"person2@example.com,{'2' * 50},yes\n"
        f"person3@example.com,{too_long},yes\n",
    )
    expect_import(
        cc_api,
        [
            {"email": "person1@example.com", "phone": long_phone},
            {"email": "person2@example.com", "phone": "2" * 50},
        ],
        ACTIVITY_A,
    )
    expect_activity(cc_api, ACTIVITY_A)
    report = tmp_path / "report.csv"

    out, _err, code = run_command("--csv", path, "--report", str(report))

    assert code == 1
    assert "2 to import, 1 invalid" in out
    assert [(r["email"], r["stage"]) for r in read_report(report)] == [("person3@example.com", "validation")]
    assert "phone_number: Constant Contact accepts at most 50 characters" in read_report(report)[0]["error"]


def consented_users() -> list[Any]:
    class User:
        def __init__(self, email: str, first_name: str) -> None:
            self.email, self.first_name = email, first_name

    return [User("person1@example.com", "First1"), {"email": "person2@example.com", "last_name": "Last2"}]


def test_a_callable_source_and_explicit_lists(connection, cc_api):
    expect_import(
        cc_api,
        [
            {"email": "person1@example.com", "first_name": "First1"},
            {"email": "person2@example.com", "last_name": "Last2"},
        ],
        ACTIVITY_A,
        lists=[LIST_ID, OTHER_LIST],
    )
    expect_activity(cc_api, ACTIVITY_A)

    out, err, code = run_command(
        "--queryset", "tests.test_backfill.consented_users", "--list-id", LIST_ID, "--list-id", OTHER_LIST
    )

    assert code == 0, err
    assert "callable:tests.test_backfill.consented_users: 2 rows; 2 to import" in out


def test_dry_run_sends_nothing_and_stores_nothing(connection, cc_api, tmp_path, monkeypatch):
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 2)
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(5) + "bad,x,y,yes\n")

    out, _err, code = run_command("--csv", path, "--dry-run")

    assert code == 1  # one invalid row
    assert "5 to import, 1 invalid" in out
    assert "would send 3 import requests" in out
    assert out.count("  batch ") == 3
    assert len(cc_api.calls) == 0
    assert BackfillRun.objects.count() == 0 and BackfillBatch.objects.count() == 0


def test_dry_run_needs_no_connection_and_creates_none(db, cc_api, tmp_path, cc_settings):
    cc_settings["LIST_IDS"] = []
    path = write_csv(tmp_path, "email,consent\nperson1@example.com,yes\n")

    out, err, code = run_command("--csv", path, "--dry-run", "--list-id", LIST_ID)

    assert code == 0, err
    assert "would send 1 import requests" in out
    assert Connection.objects.count() == 0 and len(cc_api.calls) == 0


# -- resuming ---------------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_by_polling_the_submitted_activity(
    connection, cc_api, tmp_path, monkeypatch
):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(2))
    submit = expect_import(cc_api, [contact(1), contact(2)], ACTIVITY_A)

    def crash(self: Any, seconds: float) -> None:
        raise KeyboardInterrupt  # Ctrl-C (or a kill) after CC accepted the batch, before it completed

    monkeypatch.setattr(backfill.Backfill, "_sleep", crash)
    _out, err, code = run_command("--csv", path)
    assert code == 3
    assert "run the same command again to resume" in err
    batch = BackfillBatch.objects.get()
    assert (batch.status, batch.activity_id) == ("submitted", ACTIVITY_A)

    monkeypatch.setattr(backfill.Backfill, "_sleep", lambda self, seconds: None)
    poll = expect_activity(cc_api, ACTIVITY_A)
    out, err, code = run_command("--csv", path)

    assert code == 0, err
    assert "(resumed)" in out
    assert submit.call_count == 1  # the batch was not imported a second time
    assert poll.call_count == 1
    assert BackfillRun.objects.get().status == BackfillRun.Status.FINISHED


def test_a_stopped_run_sends_only_the_batches_not_yet_sent(connection, cc_api, tmp_path, monkeypatch):
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 1)
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(2))
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    # CC is unavailable when the second batch is sent, through every retry: the command stops.
    for _attempt in range(backfill.RETRY_ATTEMPTS):
        cc_api.post(IMPORT_URL, status=503, body="<html>Service Unavailable</html>")
    _out, err, code = run_command("--csv", path)
    assert code == 3
    assert "run the same command again to resume" in err

    cc_api.reset()
    second = expect_import(cc_api, [contact(2)], ACTIVITY_B)
    first_poll = expect_activity(cc_api, ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_B)
    out, err, code = run_command("--csv", path)

    assert code == 0, err
    assert second.call_count == 1 and first_poll.call_count == 1  # batch 1 polled, not imported again
    assert len(cc_api.calls) == 3
    assert "2 contacts in 2 batches: 2 completed" in out


def test_a_finished_source_is_not_sent_again_unless_restarted(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(1))
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)
    assert run_command("--csv", path)[2] == 0

    out, _err, code = run_command("--csv", path)
    assert code == 0
    assert "already imported by run" in out
    assert len(cc_api.calls) == 2

    out, _err, code = run_command("--csv", path, "--restart")
    assert code == 0
    assert len(cc_api.calls) == 4
    assert list(BackfillRun.objects.order_by("pk").values_list("status", flat=True)) == [
        "abandoned",
        "finished",
    ]


def test_a_failed_batch_is_retried_by_the_next_run(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(1))
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A, state="failed", percent=10, errors=["Internal error."])
    report = tmp_path / "report.csv"
    out, _err, code = run_command("--csv", path, "--report", str(report))
    assert code == 1
    assert "failed batch 1: Internal error." in out
    assert [(r["email"], r["stage"], r["error"]) for r in read_report(report)] == [
        ("person1@example.com", "batch_failed", "Internal error.")
    ]

    cc_api.reset()
    expect_import(cc_api, [contact(1)], ACTIVITY_B)
    expect_activity(cc_api, ACTIVITY_B)
    out, err, code = run_command("--csv", path)
    assert code == 0, err
    assert "(failed batches retried)" in out


# -- CC's queue of bulk activities is full (429) ----------------------------------------------------------

QUEUE_FULL = {"error_key": "too_many_requests", "error_message": "Too many requests."}


def test_a_429_on_the_import_waits_minutes_while_the_batches_already_sent_are_polled(
    connection, cc_api, tmp_path, monkeypatch
):
    # CC's spec: a 429 on contacts_json_import means more than 1,000 activities are queued in the account
    # (Activities429ErrorResponse), not "too fast". Today's code retried it within seconds and gave up.
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 1)
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(2))
    first = expect_import(cc_api, [contact(1)], ACTIVITY_A)
    refused = [cc_api.post(IMPORT_URL, status=429, json=QUEUE_FULL) for _try in range(2)]
    second = expect_import(cc_api, [contact(2)], ACTIVITY_B)
    polls_a = [
        expect_activity(cc_api, ACTIVITY_A, "processing", 50),
        expect_activity(cc_api, ACTIVITY_A, "completed", 100),
    ]
    poll_b = expect_activity(cc_api, ACTIVITY_B)
    slept: list[float] = []
    notices: list[tuple[str, str]] = []

    def notice(message: str) -> None:
        notices.append((message, BackfillBatch.objects.get(number=2).last_error))

    run, _how = backfill.run_backfill(
        backfill.load_source(csv_path=path, list_ids=[LIST_ID]),
        [LIST_ID],
        poll_interval=5,
        sleep=slept.append,
        notice=notice,
    )

    # Batch 2 is refused right after batch 1 was sent; batch 1 is polled to its end meanwhile (5 s apart), the
    # rest of the first minute is waited out, then 2 minutes after the second refusal.
    assert slept == [5, 5, 50, 120, 5]
    assert [call.call_count for call in (first, *refused, second, *polls_a, poll_b)] == [1, 1, 1, 1, 1, 1, 1]
    assert len(notices) == 2
    for (message, last_error), minutes in zip(notices, ("1 min", "2 min"), strict=True):
        assert "more than 1,000 bulk activities queued (HTTP 429)" in message
        assert f"Trying again in {minutes}" in message
        assert last_error == message  # the admin shows why the batch waits
    assert run.status == BackfillRun.Status.FINISHED
    assert list(run.batches.values_list("status", "last_error")) == [("completed", ""), ("completed", "")]


def test_queue_full_waits_double_up_to_15_minutes_and_never_give_up(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(1))
    for _try in range(7):
        cc_api.post(IMPORT_URL, status=429, json=QUEUE_FULL)
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)
    slept: list[float] = []

    run, _how = backfill.run_backfill(
        backfill.load_source(csv_path=path, list_ids=[LIST_ID]),
        [LIST_ID],
        poll_interval=5,
        sleep=slept.append,
    )

    assert slept == [60, 120, 240, 480, 900, 900, 900, 5]
    assert run.batches.get().status == BackfillBatch.Status.COMPLETED


def test_the_command_tells_the_operator_why_it_waits(connection, cc_api, tmp_path, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(backfill.Backfill, "_sleep", lambda self, seconds: slept.append(seconds))
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(1))
    cc_api.post(IMPORT_URL, status=429, json=QUEUE_FULL)
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    expect_activity(cc_api, ACTIVITY_A)

    out, err, code = run_command("--csv", path)

    assert code == 0, err
    assert "Constant Contact refused batch 1 for now: this account has more than 1,000 bulk activities" in err
    assert "Trying again in 1 min" in err
    assert slept == [60, 0]
    assert "1 contacts in 1 batches: 1 completed" in out


def test_a_401_refreshes_the_token_once_and_retries(connection, cc_api, tmp_path, cc_settings):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(1))
    cc_api.post(IMPORT_URL, status=401, json={"error_key": "unauthorized", "error_message": "Unauthorized"})
    cc_api.post(
        cc_settings["TOKEN_URL"],
        json={"access_token": "new-access-token", "refresh_token": "new-refresh", "expires_in": 3600},
    )
    cc_api.post(
        IMPORT_URL,
        match=[matchers.header_matcher({"Authorization": "Bearer new-access-token"})],
        status=201,
        json={"activity_id": ACTIVITY_A, "state": "initialized"},
    )
    cc_api.get(
        f"{API}/activities/{ACTIVITY_A}",
        match=[matchers.header_matcher({"Authorization": "Bearer new-access-token"})],
        json={"activity_id": ACTIVITY_A, "state": "completed", "percent_done": 100, "activity_errors": []},
    )

    assert run_command("--csv", path)[2] == 0


def test_transient_failures_are_retried_with_backoff(connection, cc_api, tmp_path):
    path = write_csv(tmp_path, "email,first_name,last_name,consent\n" + people(1))
    cc_api.post(IMPORT_URL, status=503, body="<html>Service Unavailable</html>")
    expect_import(cc_api, [contact(1)], ACTIVITY_A)
    cc_api.get(f"{API}/activities/{ACTIVITY_A}", status=500, json=[{"error_key": "server_error"}])
    expect_activity(cc_api, ACTIVITY_A)

    assert run_command("--csv", path)[2] == 0
    assert len(cc_api.calls) == 4


def test_activity_ids_that_are_not_ids_are_refused_without_a_request(cc_api):
    with pytest.raises(Rejected):
        ConstantContactClient().activity(ACCESS_TOKEN, "../contacts")


# -- the sandbox ------------------------------------------------------------------------------------


@pytest.fixture
def sandbox():
    with Sandbox(api_rate=None, token_rate=None) as started:
        yield started


@pytest.fixture
def sandbox_token(sandbox) -> str:
    return sandbox.issue_tokens()["access_token"]


def post_import(sandbox: Sandbox, token: str, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(
        f"{sandbox.api_url}/activities/contacts_json_import",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        **kwargs,
    )


def get_activity(sandbox: Sandbox, token: str, activity_id: str) -> requests.Response:
    return requests.get(
        f"{sandbox.api_url}/activities/{activity_id}", headers={"Authorization": f"Bearer {token}"}
    )


def test_sandbox_import_progresses_to_completed_and_imports_with_implicit_permission(sandbox, sandbox_token):
    requests.post(
        f"{sandbox.api_url}/contacts/sign_up_form",
        json={"email_address": "known@example.com", "list_memberships": [LIST_ID]},
        headers={"Authorization": f"Bearer {sandbox_token}"},
    ).raise_for_status()
    body = {
        "import_data": [
            {"email": "new@example.com", "first_name": "New"},
            {"email": "known@example.com", "last_name": "Known"},
            {"email": "broken@localhost"},
        ],
        "list_ids": [OTHER_LIST],
    }

    created = post_import(sandbox, sandbox_token, body)
    assert created.status_code == 201
    activity = created.json()
    assert activity["state"] == "initialized"
    assert activity["_links"]["self"]["href"] == f"/v3/activities/{activity['activity_id']}"
    assert len(sandbox.contacts()) == 1  # nothing imported until CC's background job runs

    first = get_activity(sandbox, sandbox_token, activity["activity_id"]).json()
    second = get_activity(sandbox, sandbox_token, activity["activity_id"]).json()

    assert (first["state"], first["percent_done"]) == ("processing", 50)
    assert (second["state"], second["percent_done"]) == ("completed", 100)
    assert second["activity_errors"] == ["Line 3: Invalid email address."]
    assert second["status"]["error_count"] == 1
    contacts = {c["email_address"]: c for c in sandbox.contacts()}
    assert set(contacts) == {"known@example.com", "new@example.com"}
    assert (
        contacts["new@example.com"]["permission_to_send"],
        contacts["new@example.com"]["opt_in_source"],
    ) == (
        "implicit",
        "Account",
    )
    assert contacts["known@example.com"]["permission_to_send"] == "explicit"  # unchanged by an import
    assert contacts["known@example.com"]["list_memberships"] == [LIST_ID, OTHER_LIST]
    assert contacts["known@example.com"]["last_name"] == "Known"


def test_sandbox_import_limits_and_errors_use_cc_shapes(sandbox, sandbox_token):
    too_many = {"import_data": [{"email": f"p{n}@e.co"} for n in range(40_001)], "list_ids": [LIST_ID]}
    answer = post_import(sandbox, sandbox_token, too_many)
    assert answer.status_code == 400
    assert answer.json() == [
        {
            "error_key": "contacts.api.validation.error",
            "error_message": "'import_data' must contain at most 40000 contacts.",
        }
    ]

    too_big = {
        "import_data": [{"email": f"p{n}@e.co", "cf:notes": "x" * 200} for n in range(20_000)],
        "list_ids": [LIST_ID],
    }
    # CC: "If the request body exceeds 4 MB, this method only imports the first 4 MB and drops the remaining
    # data" (spec build 3.0.161): accepted, and cut (the sandbox says so in activity_errors).
    answer = post_import(sandbox, sandbox_token, too_big)
    assert answer.status_code == 201
    activity_id = answer.json()["activity_id"]
    get_activity(sandbox, sandbox_token, activity_id)
    done = get_activity(sandbox, sandbox_token, activity_id).json()
    assert done["state"] == "completed"
    assert any("exceeded 4 MB" in error for error in done["activity_errors"])
    assert 0 < len(sandbox.contacts()) < 20_000

    answer = post_import(sandbox, sandbox_token, {"import_data": [], "list_ids": []})
    assert answer.status_code == 400 and len(answer.json()) == 2

    wrong_type = requests.post(
        f"{sandbox.api_url}/activities/contacts_json_import",
        data="email\nx@example.com",
        headers={"Authorization": f"Bearer {sandbox_token}", "Content-Type": "text/csv"},
    )
    assert wrong_type.status_code == 415

    assert (
        post_import(
            sandbox, "not-a-token", {"import_data": [{"email": "a@b.co"}], "list_ids": [LIST_ID]}
        ).status_code
        == 401
    )
    unknown_list = "99999999-9999-4999-8999-999999999999"
    assert (
        post_import(
            sandbox, sandbox_token, {"import_data": [{"email": "a@b.co"}], "list_ids": [unknown_list]}
        ).status_code
        == 404
    )
    assert get_activity(sandbox, sandbox_token, "00000000-0000-4000-8000-000000000000").status_code == 404


def test_sandbox_import_and_polls_count_against_the_quota_and_show_in_the_log():
    with Sandbox(api_rate=None, token_rate=None, daily_quota=2, import_polls=1) as sandbox:
        token = sandbox.issue_tokens()["access_token"]
        created = post_import(sandbox, token, {"import_data": [{"email": "a@b.co"}], "list_ids": [LIST_ID]})
        activity_id = created.json()["activity_id"]
        assert get_activity(sandbox, token, activity_id).json()["state"] == "completed"
        assert get_activity(sandbox, token, activity_id).status_code == 429

        log = sandbox.requests()
        assert [(e["method"], e["status"], e["detail"]) for e in log] == [
            ("POST", 201, "1 contacts"),
            ("GET", 200, None),
            ("GET", 429, None),
        ]
        page = requests.get(sandbox.base_url + "/").text
        assert "Bulk imports" in page and activity_id in page
        assert sandbox.state()["activities"][0]["activity_id"] == activity_id


def test_sandbox_import_polls_setting_is_validated():
    with pytest.raises(ValueError, match="import_polls"):
        Sandbox(import_polls=0)


# -- end to end -----------------------------------------------------------------------------------


@pytest.fixture
def connected_to_sandbox(db, sandbox, cc_settings) -> Sandbox:
    cc_settings.update(sandbox.cc_sync_settings())
    tokens = sandbox.issue_tokens()
    make_connection(access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    return sandbox


def test_command_imports_a_csv_into_the_sandbox_end_to_end(connected_to_sandbox, tmp_path, monkeypatch):
    sandbox = connected_to_sandbox
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 3)
    path = write_csv(
        tmp_path,
        "email,first_name,last_name,consent\n"
        + people(4)
        + "someone@localhost,Local,Host,yes\nnobody@example.com,No,Body,no\n",
    )
    report = tmp_path / "report.csv"

    out, err, code = run_command("--csv", path, "--report", str(report))

    assert code == 1, err  # the sandbox refused one contact
    assert "5 contacts in 2 batches: 2 completed, 0 failed; 1 contacts refused" in out
    emails = sorted(c["email_address"] for c in sandbox.contacts())
    assert emails == [f"person{n}@example.com" for n in range(1, 5)]
    assert {c["permission_to_send"] for c in sandbox.contacts()} == {"implicit"}
    assert read_report(report) == [
        {
            "row": "6",
            "email": "someone@localhost",
            "stage": "constant_contact",
            "error": "Line 2: Invalid email address.",
        }
    ]
    log = [(entry["method"], entry["path"]) for entry in sandbox.requests()]
    assert log.count(("POST", "/v3/activities/contacts_json_import")) == 2
    assert sum(method == "GET" for method, _path in log) == 4  # two polls per activity (import_polls=2)
    assert len(log) == 6

    out, _err, code = run_command("--csv", path)
    assert "already imported" in out


def test_backfill_runs_are_shown_read_only_in_the_admin_with_their_batches(admin_client):
    run = BackfillRun.objects.create(
        fingerprint="f" * 64, source="csv:people.csv", list_ids=[LIST_ID], contacts=3
    )
    BackfillBatch.objects.create(
        run=run,
        number=1,
        rows=[0, 1, 2],
        status=BackfillBatch.Status.SUBMITTED,
        activity_id="a-1",
        state="processing",
    )
    listing = admin_client.get("/admin/cc_sync/backfillrun/")
    assert listing.status_code == 200
    assert "csv:people.csv" in listing.content.decode()
    page = admin_client.get(f"/admin/cc_sync/backfillrun/{run.pk}/change/")
    assert page.status_code == 200
    assert "a-1" in page.content.decode() and "processing" in page.content.decode()
    assert "f" * 64 not in page.content.decode()
    assert admin_client.get("/admin/cc_sync/backfillrun/add/").status_code == 403
    admin_client.post(f"/admin/cc_sync/backfillrun/{run.pk}/change/", {"source": "changed"})
    assert BackfillRun.objects.get(pk=run.pk).source == "csv:people.csv"
