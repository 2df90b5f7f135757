"""The signup task: claim, push to CC, and classify every outcome (contact safety: tests/test_contact_safety.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
import requests
from django.utils import timezone
from responses import matchers

from cc_sync import publisher, ratelimit, sync
from cc_sync.models import Connection, Signup
from rig.cc import make_connection
from rig.constants import ACCESS_TOKEN, CONTACTS_URL, LIST_ID, TOKEN_URL

CONTACT_ID = "ab7ab702-b935-11e9-8a58-fa163e6b01c1"
S = Signup.Status


@pytest.fixture
def signup(db):
    return Signup.objects.create(
        email="jdodge@example.com", first_name="Jake", last_name="Dodge", list_ids=[LIST_ID]
    )


def expect_create(cc_api, token=ACCESS_TOKEN, status=201, json=None, body=None, **kwargs):
    """Register the exact ``POST /contacts`` request a new signup must produce (its first request)."""
    content = {"json": json if json is not None else {"contact_id": CONTACT_ID}}
    if body is not None:
        content = {"body": body}
    return cc_api.post(
        CONTACTS_URL,
        status=status,
        match=[
            matchers.header_matcher(
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                }
            ),
            matchers.json_params_matcher(
                {
                    "email_address": {"address": "jdodge@example.com", "permission_to_send": "explicit"},
                    "create_source": "Contact",
                    "first_name": "Jake",
                    "last_name": "Dodge",
                    "list_memberships": [LIST_ID],
                }
            ),
        ],
        **content,
        **kwargs,
    )


def test_success_marks_synced_with_contact_id(connection, cc_api, signup, run):
    expect_create(cc_api)
    signup = run(signup)
    assert signup.status == S.SYNCED
    assert signup.contact_id == CONTACT_ID
    assert signup.created_in_cc is True
    assert signup.synced_at is not None
    assert signup.attempts == 1


def test_a_second_delivery_of_the_same_message_does_nothing(connection, cc_api, signup, run):
    expect_create(cc_api)
    run(signup)
    run(signup)  # cc_api would fail on a second, unregistered request
    assert Signup.objects.get(pk=signup.pk).attempts == 1


def test_a_row_claimed_by_a_live_worker_is_not_taken_twice(connection, cc_api, signup):
    assert sync.claim(signup.pk) is not None
    assert sync.claim(signup.pk) is None


def test_a_delivery_finding_the_row_held_comes_back_when_the_lease_ends(
    connection, cc_api, signup, published, cc_settings, monkeypatch, run
):
    # A broker redelivers a dead worker's message at once (RabbitMQ, or a killed pool process): the row is
    # still under the dead worker's lease, so the delivery is published again for the lease's end.
    cc_settings["LEASE"] = 120
    claimed_at = datetime(2026, 2, 28, 23, 59, 30, tzinfo=dt_timezone.utc)
    Signup.objects.filter(pk=signup.pk).update(next_attempt_at=claimed_at)
    monkeypatch.setattr(timezone, "now", lambda: claimed_at)
    assert sync.claim(signup.pk) is not None
    monkeypatch.setattr(timezone, "now", lambda: claimed_at + timedelta(seconds=20))
    assert run(signup).status == S.SYNCING  # cc_api: no request reaches CC
    assert published == [
        {
            "task": "cc_sync.sync_signup",
            "args": (signup.pk,),
            "countdown": 100.0,
            "queue": None,
            "retry": False,
        }
    ]
    assert signup.enqueued_at is None  # the sweeper still sees the row as abandoned once the lease ends


@pytest.mark.parametrize("status", [S.SYNCED, S.PENDING])
def test_a_delivery_finding_the_row_not_held_publishes_nothing(
    connection, cc_api, signup, published, status, run
):
    Signup.objects.filter(pk=signup.pk).update(
        status=status, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert run(signup).status == status
    assert published == []


def test_a_lease_longer_than_max_countdown_is_left_to_the_sweeper(
    connection, cc_api, signup, published, cc_settings, run
):
    cc_settings.update(LEASE=900, MAX_COUNTDOWN=300)
    assert sync.claim(signup.pk) is not None
    assert run(signup).status == S.SYNCING
    assert published == []


def test_a_row_left_syncing_by_a_dead_worker_is_claimable_after_its_lease(connection, cc_api, signup, run):
    Signup.objects.filter(pk=signup.pk).update(
        status=S.SYNCING, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    expect_create(cc_api)
    assert run(signup).status == S.SYNCED


@pytest.mark.parametrize("status", [400, 404, 415])
def test_permanent_rejections_fail_once_with_ccs_message(connection, cc_api, signup, published, status, run):
    expect_create(
        cc_api,
        status=status,
        json=[
            {"error_key": "contacts.api.validation.error", "error_message": "list_memberships is invalid."}
        ],
    )
    signup = run(signup)
    assert signup.status == S.FAILED
    assert "list_memberships is invalid." in signup.last_error
    assert signup.last_error_key == "contacts.api.validation.error"
    assert published == []


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "body": "<html>oops</html>"},
        {"status": 502, "body": "<html>bad gateway</html>"},
        {"status": 503, "json": {}},
        {"status": 200, "body": "<html>maintenance</html>"},
        {"status": 200, "json": {"contact_id": CONTACT_ID}},
        {"status": 200, "body": ""},
        {"status": 200, "body": '{"contact_id": "ab'},
        {"status": 201, "json": {"action": "created"}},
        {"status": 201, "json": {"contact_id": ""}},
        {"status": 202, "json": {"contact_id": CONTACT_ID}},
        {"status": 200, "json": ["not", "an", "object"]},
    ],
    ids=[
        "500",
        "502-html",
        "503",
        "200-html",
        "200-not-created",
        "200-empty",
        "200-truncated",
        "201-no-id",
        "201-empty-id",
        "202",
        "200-array",
    ],
)
def test_transient_outcomes_and_bad_bodies_are_retried_never_synced(
    connection, cc_api, signup, published, answer, run
):
    expect_create(cc_api, **answer)
    before = timezone.now()
    signup = run(signup)
    assert signup.status == S.PENDING
    assert signup.contact_id == ""
    assert (
        before <= signup.next_attempt_at <= timezone.now() + timedelta(seconds=2)
    )  # RETRY_BASE 2 s, attempt 1
    assert signup.last_error
    assert [call["args"] for call in published] == [(signup.pk,)]


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectTimeout("connect"),
        requests.ReadTimeout("read"),
        requests.ConnectionError("Connection reset by peer"),
    ],
)
def test_timeouts_and_resets_are_retried(connection, cc_api, signup, published, error, run):
    cc_api.post(CONTACTS_URL, body=error)
    assert run(signup).status == S.PENDING


def test_every_call_has_connect_and_read_timeouts(connection, signup, monkeypatch, cc_settings, run):
    cc_settings.update(CONNECT_TIMEOUT=3.5, READ_TIMEOUT=12)
    seen = []

    def fake_send(self, request, **kwargs):
        seen.append(kwargs.get("timeout"))
        raise requests.ConnectTimeout("no")

    monkeypatch.setattr(requests.Session, "send", fake_send)
    run(signup)
    assert seen == [(3.5, 12.0)]


def test_backoff_is_capped_exponential_with_full_jitter(monkeypatch, cc_settings):
    from cc_sync.exceptions import RetryLater

    cc_settings.update(RETRY_BASE=2, RETRY_MAX=600)
    monkeypatch.setattr(sync.random, "uniform", lambda low, high: high)  # the top of the jitter range
    assert [sync.retry_delay(n, RetryLater("x")) for n in (1, 2, 3, 10, 30)] == [2, 4, 8, 600, 600]
    monkeypatch.setattr(sync.random, "uniform", lambda low, high: low)
    assert sync.retry_delay(5, RetryLater("x")) == 0


def test_throttled_waits_at_least_a_second(connection, cc_api, signup, published, run):
    expect_create(cc_api, status=429, json={"error_key": "throttled", "error_message": "Too Many Requests"})
    before = timezone.now()
    signup = run(signup)
    assert signup.status == S.PENDING
    assert signup.next_attempt_at >= before + timedelta(seconds=1)
    assert published[0]["countdown"] >= 1


def test_quota_exceeded_waits_until_after_midnight_utc_in_the_database(
    db, cc_api, signup, published, run, monkeypatch
):
    # The clock is pinned far from midnight: at 23:59:30 the wait would be short enough for a countdown.
    pinned = datetime(2028, 2, 29, 10, 0, tzinfo=dt_timezone.utc)
    monkeypatch.setattr(time, "time", pinned.timestamp)
    monkeypatch.setattr(timezone, "now", lambda: pinned)
    make_connection()
    Signup.objects.filter(pk=signup.pk).update(next_attempt_at=pinned)  # due by the pinned clock
    expect_create(cc_api, status=429, json={"error_key": "quota_exceeded", "error_message": "Limit Exceeded"})
    signup = run(signup)
    assert signup.status == S.PENDING
    assert signup.next_attempt_at > datetime(2028, 3, 1, 0, 0, tzinfo=dt_timezone.utc)
    assert signup.last_error_key == "quota_exceeded"
    assert published == []  # a wait of hours is left to the sweeper, never a long Celery countdown


def test_401_refreshes_once_and_retries_once(connection, cc_api, signup, run):
    expect_create(cc_api, status=401, json={"error_key": "unauthorized", "error_message": "Unauthorized"})
    cc_api.post(
        TOKEN_URL,
        json={"access_token": "fresh-token", "refresh_token": "r2", "expires_in": 86400},
        match=[
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": connection.refresh_token}
            )
        ],
    )
    expect_create(cc_api, token="fresh-token")
    signup = run(signup)
    assert signup.status == S.SYNCED
    assert Connection.load().access_token == "fresh-token"


def test_401_right_after_a_refresh_holds_the_row_and_needs_reconnect(
    connection, cc_api, signup, mailoutbox, run
):
    expect_create(cc_api, status=401, json={"error_key": "unauthorized"})
    cc_api.post(TOKEN_URL, json={"access_token": "fresh-token", "refresh_token": "r2", "expires_in": 86400})
    expect_create(cc_api, token="fresh-token", status=401, json={"error_key": "unauthorized"})
    signup = run(signup)
    assert signup.status == S.WAITING_RECONNECT
    assert Connection.load().status == Connection.Status.NEEDS_RECONNECT
    assert len(mailoutbox) == 1


def test_a_401_to_a_token_another_process_put_in_place_is_answered_by_this_calls_own_refresh(
    connection, cc_api, signup, run
):
    def rejected_while_another_process_refreshed(request):
        # Meanwhile another process refreshed: its token, in turn, is revoked before this call uses it.
        other = Connection.load()
        other.access_token = "other-token"
        other.save()
        return 401, {}, '{"error_key": "unauthorized"}'

    cc_api.add_callback(
        "POST",
        CONTACTS_URL,
        callback=rejected_while_another_process_refreshed,
        match=[matchers.header_matcher({"Authorization": f"Bearer {ACCESS_TOKEN}"})],
    )
    expect_create(cc_api, token="other-token", status=401, json={"error_key": "unauthorized"})
    cc_api.post(TOKEN_URL, json={"access_token": "fresh-token", "refresh_token": "r2", "expires_in": 86400})
    expect_create(cc_api, token="fresh-token")
    assert run(signup).status == S.SYNCED
    assert Connection.load().status == Connection.Status.CONNECTED


def test_401s_only_to_tokens_other_processes_put_in_place_are_retried_later_never_a_reconnect(
    connection, cc_api, signup, run
):
    def rejected_while_another_process_refreshed(replacement):
        def reply(request):
            # Meanwhile another process refreshed: its token, in turn, is revoked before this call uses it.
            other = Connection.load()
            other.access_token = replacement
            other.save()
            return 401, {}, '{"error_key": "unauthorized"}'

        return reply

    for token, replacement in ((ACCESS_TOKEN, "second-token"), ("second-token", "third-token")):
        cc_api.add_callback(
            "POST",
            CONTACTS_URL,
            callback=rejected_while_another_process_refreshed(replacement),
            match=[matchers.header_matcher({"Authorization": f"Bearer {token}"})],
        )
    expect_create(cc_api, token="third-token", status=401, json={"error_key": "unauthorized"})
    assert run(signup).status == S.PENDING  # retried later
    assert Connection.load().status == Connection.Status.CONNECTED
    assert not [call for call in cc_api.calls if call.request.url == TOKEN_URL]  # no refresh of its own


def test_403_holds_the_row_and_needs_reconnect(connection, cc_api, signup, run):
    expect_create(cc_api, status=403, json=[{"error_key": "forbidden", "error_message": "Forbidden"}])
    assert run(signup).status == S.WAITING_RECONNECT
    assert Connection.load().status == Connection.Status.NEEDS_RECONNECT


def test_invalid_grant_holds_the_row(db, cc_api, signup, run):
    make_connection(expires_in=-1)
    cc_api.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "expired"})
    assert run(signup).status == S.WAITING_RECONNECT
    assert Connection.load().status == Connection.Status.NEEDS_RECONNECT


def test_signups_are_held_without_any_request_while_not_connected(db, cc_api, signup, run):
    assert run(signup).status == S.WAITING_RECONNECT


def test_past_the_deadline_a_transient_failure_fails_the_row(connection, cc_api, signup, run):
    Signup.objects.filter(pk=signup.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    expect_create(cc_api, status=503, json={})
    signup = run(signup)
    assert signup.status == S.FAILED
    assert signup.last_error.startswith("Gave up after 1 attempts")


def test_retry_now_gives_a_failed_row_a_new_deadline(
    connection, signup, published, django_capture_on_commit_callbacks
):
    Signup.objects.filter(pk=signup.pk).update(status=S.FAILED, deadline_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert sync.retry_now(Signup.objects.all()) == (1, 0)
    signup.refresh_from_db()
    assert signup.status == S.PENDING
    assert signup.deadline_at > timezone.now() + timedelta(days=2)
    assert [call["args"] for call in published] == [(signup.pk,)]


def test_optional_fields_are_sent_only_when_given(connection, cc_api, run):
    signup = Signup.objects.create(email="a@example.com", phone_number="+1 555 0100", list_ids=["l1", "l2"])
    cc_api.post(
        CONTACTS_URL,
        json={"contact_id": CONTACT_ID},
        status=201,
        match=[
            matchers.json_params_matcher(
                {
                    "email_address": {"address": "a@example.com", "permission_to_send": "explicit"},
                    "create_source": "Contact",
                    "phone_numbers": [{"phone_number": "+1 555 0100", "kind": "other"}],
                    "list_memberships": ["l1", "l2"],
                }
            )
        ],
    )
    assert run(signup).status == S.SYNCED


def test_rows_without_lists_use_the_default_lists_at_push_time(connection, cc_api, cc_settings, run):
    signup = Signup.objects.create(email="jdodge@example.com", first_name="Jake", last_name="Dodge")
    expect_create(cc_api)
    assert run(signup).status == S.SYNCED


def test_with_no_list_anywhere_the_row_is_held_for_a_list(connection, cc_api, cc_settings, run):
    cc_settings["LIST_IDS"] = []
    signup = Signup.objects.create(email="a@example.com")
    signup = run(signup)
    assert signup.status == S.WAITING_LIST
    assert "list" in signup.last_error


def test_sweeper_queues_due_rows_whose_message_is_missing(connection, published):
    now = timezone.now()
    never = Signup.objects.create(email="a@example.com")
    lost = Signup.objects.create(email="b@example.com", enqueued_at=now - timedelta(minutes=10))
    Signup.objects.create(email="c@example.com", enqueued_at=now)  # its message is on its way
    Signup.objects.create(email="d@example.com", next_attempt_at=now + timedelta(hours=1))  # not due
    dead = Signup.objects.create(
        email="e@example.com",
        status=S.SYNCING,
        enqueued_at=now - timedelta(minutes=5),
        lease_expires_at=now - timedelta(seconds=1),
    )
    Signup.objects.create(
        email="f@example.com", status=S.SYNCING, lease_expires_at=now + timedelta(minutes=1)
    )
    Signup.objects.create(email="g@example.com", status=S.SYNCED)
    assert sync.sweep() == 3
    assert sorted(call["args"][0] for call in published) == sorted([never.pk, lost.pk, dead.pk])
    published.clear()
    assert sync.sweep() == 0  # just queued: not again until REQUEUE_AFTER


def test_sweeper_leaves_a_long_backlog_waiting_its_turn_instead_of_queueing_it_again(
    connection, published, cc_settings
):
    cc_settings.update(API_RATE=4, REQUEUE_AFTER=300)
    now = timezone.now()
    # 2,000 messages queued 10 minutes ago: at 4/s they need over 8 minutes more to drain.
    Signup.objects.bulk_create(
        Signup(email=f"queued{n}@example.com", enqueued_at=now - timedelta(minutes=10)) for n in range(2000)
    )
    assert sync.sweep() == 0
    # Once older than REQUEUE_AFTER plus the time the backlog needs, they are taken as lost.
    Signup.objects.update(enqueued_at=now - timedelta(seconds=300 + 2000 * ratelimit.SPACING_MARGIN / 4 + 5))
    assert sync.sweep() == 500  # SWEEP_BATCH per sweep


def test_overlapping_sweeps_never_queue_a_row_twice(connection, published, monkeypatch):
    # Beat's next sweep can start on another worker while this one is still publishing its batch.
    Signup.objects.bulk_create(Signup(email=f"due{n}@example.com") for n in range(5))
    send = publisher._send
    overlapping: list[int] = []

    def send_while_another_sweep_runs(signup_ids, countdown):
        if not overlapping:
            overlapping.append(sync.sweep())
        return send(signup_ids, countdown)

    monkeypatch.setattr(publisher, "_send", send_while_another_sweep_runs)
    assert sync.sweep() + overlapping[0] == 5
    queued = [call["args"][0] for call in published]
    assert sorted(queued) == sorted(set(queued)) and len(queued) == 5


def test_rows_the_broker_did_not_take_stay_due_for_the_next_sweep(connection, published, monkeypatch):
    Signup.objects.bulk_create(Signup(email=f"due{n}@example.com") for n in range(3))
    monkeypatch.setattr(
        publisher, "_send", lambda signup_ids, countdown: signup_ids[:1]
    )  # then the broker went
    assert sync.sweep() == 1
    assert Signup.objects.filter(enqueued_at__isnull=True).count() == 2
    monkeypatch.setattr(publisher, "_send", lambda signup_ids, countdown: signup_ids)
    assert sync.sweep() == 2


def test_sweeper_releases_held_rows_once_connected(connection, published, django_capture_on_commit_callbacks):
    held = Signup.objects.create(email="a@example.com", status=S.WAITING_RECONNECT)
    with django_capture_on_commit_callbacks(execute=True):
        sync.sweep()
    held.refresh_from_db()
    assert held.status == S.PENDING
    assert (held.pk,) in [call["args"] for call in published]


def test_mark_failed_leaves_synced_rows_alone(connection):
    Signup.objects.create(email="a@example.com", status=S.SYNCED)
    Signup.objects.create(email="b@example.com", status=S.PENDING)
    assert sync.mark_failed(Signup.objects.all(), "by hand") == (1, 0)
    assert Signup.objects.filter(status=S.FAILED).count() == 1


def test_tokens_the_keys_cannot_read_hold_signups_and_ask_for_a_reconnect(connection, cc_api, signup, run):
    from cryptography.fernet import Fernet
    from django.db import connection as db

    foreign = Fernet(Fernet.generate_key()).encrypt(b"a-token-under-a-dropped-key").decode()
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE cc_sync_connection SET access_token = %s, refresh_token = %s", [foreign, foreign]
        )
    signup = run(signup)  # cc_api fails the test on any request
    assert signup.status == S.WAITING_RECONNECT
    assert signup.last_error_key == "tokens_unreadable"
    assert Connection.objects.get().status == Connection.Status.NEEDS_RECONNECT
