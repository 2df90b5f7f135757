"""The HTTP seam: requests sent, statuses mapped to exceptions, pagination, pacing."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
import requests
from django.db import connection as db_connection
from django.utils import timezone
from responses import matchers

from cc_sync import ratelimit, sync
from cc_sync.client import THROTTLED_RESENDS, ConstantContactClient, describe_error, get_client, redact
from cc_sync.conf import app_settings
from cc_sync.exceptions import (
    AccessTokenRejected,
    ActivityQueueFull,
    QuotaExceeded,
    ReconnectRequired,
    Rejected,
    RetryLater,
    Throttled,
)
from cc_sync.models import Application, RateLimitState, Signup
from rig.cc import make_connection
from rig.constants import LIST_ID

API = "https://api.cc.test/v3"
BEARER = {"Authorization": "Bearer tok"}


def test_contact_lists_follows_every_next_link(db, cc_api):
    cc_api.get(
        f"{API}/contact_lists",
        match=[matchers.query_param_matcher({"limit": "500"}), matchers.header_matcher(BEARER)],
        json={
            "lists": [{"list_id": "a", "name": "A"}],
            "_links": {"next": {"href": "/v3/contact_lists?cursor=c2&limit=500"}},
        },
    )
    cc_api.get(
        f"{API}/contact_lists",
        match=[matchers.query_param_matcher({"cursor": "c2", "limit": "500"})],
        json={
            "lists": [{"list_id": "b", "name": "B"}],
            "_links": {"next": {"href": "/v3/contact_lists?cursor=c3&limit=500"}},
        },
    )
    cc_api.get(
        f"{API}/contact_lists",
        match=[matchers.query_param_matcher({"cursor": "c3", "limit": "500"})],
        json={"lists": [{"list_id": "c", "name": "C"}]},
    )
    lists = ConstantContactClient().contact_lists("tok")
    assert [item["list_id"] for item in lists] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error_key": "unauthorized"}, AccessTokenRejected),
        (403, [{"error_key": "forbidden", "error_message": "Forbidden"}], ReconnectRequired),
        (429, {"error_key": "throttled", "error_message": "Too Many Requests"}, Throttled),
        (429, {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}, QuotaExceeded),
        (409, [{"error_key": "conflict"}], RetryLater),
        (408, {}, RetryLater),
        (500, {}, RetryLater),
        (400, [{"error_key": "contacts.api.validation.error", "error_message": "bad"}], Rejected),
        (404, [{"error_key": "contacts.api.not_found", "error_message": "no list"}], Rejected),
        (415, [{"error_key": "unsupported", "error_message": "json only"}], Rejected),
    ],
)
def test_statuses_map_to_what_to_do(db, cc_api, status, body, error):
    cc_api.get(f"{API}/account/summary", status=status, json=body)
    with pytest.raises(error) as excinfo:
        ConstantContactClient().account_summary("tok")
    assert excinfo.value.status_code == status


def test_throttled_waits_at_least_a_second_even_with_a_shorter_retry_after(db, cc_api):
    cc_api.get(
        f"{API}/account/summary", status=429, json={"error_key": "throttled"}, headers={"Retry-After": "0"}
    )
    with pytest.raises(Throttled) as excinfo:
        ConstantContactClient().account_summary("tok")
    assert excinfo.value.retry_after == 1.0


def test_quota_exceeded_retries_after_midnight_utc(db, cc_api, monkeypatch):
    Clock(monkeypatch, "2028-02-29 23:59:30")  # the clock is pinned: midnight must not pass mid-test
    cc_api.get(f"{API}/account/summary", status=429, json={"error_key": "quota_exceeded"})
    with pytest.raises(QuotaExceeded) as excinfo:
        ConstantContactClient().account_summary("tok")
    assert excinfo.value.retry_after == ratelimit.seconds_until_utc_midnight() + ratelimit.RESET_MARGIN == 90


def test_a_429_on_a_bulk_activity_post_means_a_full_activity_queue_not_throttling(db, cc_api):
    # CC's spec: on /activities/* POSTs a 429 means more than 1,000 queued activities (minutes, not seconds).
    cc_api.post(f"{API}/activities/contacts_json_import", status=429, json={"error_key": "too_many_requests"})
    with pytest.raises(ActivityQueueFull) as excinfo:
        ConstantContactClient().import_contacts_json("tok", [{"email": "a@example.com"}], ["l"])
    assert excinfo.value.retry_after >= 60
    assert isinstance(excinfo.value, RetryLater) and not isinstance(excinfo.value, (Throttled, QuotaExceeded))


def test_a_429_quota_exceeded_on_a_bulk_activity_post_is_the_daily_quota(db, cc_api, monkeypatch):
    Clock(monkeypatch, "2028-02-29 23:58:30")
    cc_api.post(f"{API}/activities/contacts_json_import", status=429, json={"error_key": "quota_exceeded"})
    with pytest.raises(QuotaExceeded) as excinfo:
        ConstantContactClient().import_contacts_json("tok", [{"email": "a@example.com"}], ["l"])
    assert excinfo.value.retry_after == 90 + ratelimit.RESET_MARGIN
    assert ratelimit.quota_status()["blocked"] is True


def test_a_429_while_polling_an_activity_is_ordinary_throttling(db, cc_api):
    cc_api.get(f"{API}/activities/a-1", status=429, json={"error_key": "throttled"})
    with pytest.raises(Throttled):
        ConstantContactClient().activity("tok", "a-1")


def test_the_local_daily_budget_stops_requests_before_cc_does(db, cc_api, cc_settings, monkeypatch):
    Clock(monkeypatch, "2028-02-29 23:59:59")  # a day that ends mid-test would reset the count
    cc_settings["DAILY_LIMIT"] = 2
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client = ConstantContactClient()
    client.account_summary("tok")
    client.account_summary("tok")
    with pytest.raises(QuotaExceeded):
        client.account_summary("tok")  # not sent: cc_api would fail an unexpected third call
    assert ratelimit.requests_today("api") == 2


def test_slots_are_spaced_so_no_second_holds_more_than_the_rate(db, monkeypatch):
    # The clock is pinned: on a loaded host reserving nine slots takes long enough to shift the delays.
    Clock(monkeypatch, "2028-02-29 10:00:00")
    delays = [ratelimit.reserve("test", rate=4.0) for _ in range(9)]
    # Reserved back to back: the n-th slot is n spacings after the first.
    spacing = ratelimit.SPACING_MARGIN / 4.0
    for n, delay in enumerate(delays):
        assert delay == pytest.approx(n * spacing, abs=1e-6)
    assert 4 * spacing > 1.0  # so a one-second window never holds 5


def test_an_own_applications_token_slots_are_spaced_as_widely_as_the_settings_applications(db, monkeypatch):
    # A refresh is not late-checked (it waits for the connection row's lock after its slot), so each token
    # budget keeps the wider margin: the settings' application's and that of an application of its own.
    Clock(monkeypatch, "2028-02-29 10:00:00")
    own = Application("shop-client-id", "shop-client-secret", own=True).budget("token")
    margin = ratelimit.TOKEN_SPACING_MARGIN
    for name in ("token", own):
        delays = [ratelimit.reserve(name, rate=1.0) for _ in range(3)]
        assert delays == pytest.approx([0.0, margin, 2 * margin], abs=1e-6), name


def test_every_request_carries_the_user_agent_and_accept_headers(db, cc_api):
    cc_api.get(
        f"{API}/account/summary",
        json={},
        match=[
            matchers.header_matcher(
                {"Accept": "application/json", "User-Agent": "cc-sync/0.1.0"}, strict_match=False
            )
        ],
    )
    ConstantContactClient().account_summary("tok")


def test_errors_never_carry_tokens():
    response = requests.Response()
    response.status_code = 400
    response._content = (
        b'{"error": "invalid_grant", "refresh_token": "rt-secret", "access_token": "at-secret"}'
    )
    key, message, errors = describe_error(response)
    assert key == "invalid_grant"
    assert "rt-secret" not in message + repr(errors)
    assert redact({"code": "c", "nested": [{"code_verifier": "v"}]}) == {
        "code": "***",
        "nested": [{"code_verifier": "***"}],
    }


def test_html_error_bodies_are_described_briefly():
    response = requests.Response()
    response.status_code = 502
    response.headers["Content-Type"] = "text/html"
    response._content = b"<html>" + b"x" * 5000 + b"</html>"
    _key, message, _errors = describe_error(response)
    assert message.startswith("HTTP 502 (text/html): <html>")
    assert len(message) < 260


def test_a_process_reuses_its_client_but_threads_and_forked_children_get_their_own():
    client = get_client()
    assert get_client() is client  # its session keeps connections to CC alive between tasks
    in_thread: list[ConstantContactClient] = []
    thread = threading.Thread(target=lambda: in_thread.append(get_client()))
    thread.start()
    thread.join()
    assert in_thread[0] is not client
    pid = os.fork()
    if pid == 0:  # a prefork pool child: it must not write to the parent's sockets
        os._exit(0 if get_client() is not client else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- the daily quota, decided from behaviour (issue 12 section 2) -----------------------------------------


class Clock:
    """A pinned wall clock for ratelimit (``time.time``) and Django (``timezone.now``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
        self.set(moment)
        monkeypatch.setattr(time, "time", lambda: self.now)
        monkeypatch.setattr(time, "sleep", lambda seconds: None)
        monkeypatch.setattr(timezone, "now", lambda: datetime.fromtimestamp(self.now, tz=dt_timezone.utc))

    def set(self, moment: str) -> None:
        self.now = datetime.fromisoformat(moment).replace(tzinfo=dt_timezone.utc).timestamp()


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment).replace(tzinfo=dt_timezone.utc)


THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}


def test_five_paced_429s_in_a_row_mean_the_quota_whatever_the_error_key(db, cc_api, monkeypatch):
    clock = Clock(monkeypatch, "2028-02-29 10:00:00")
    for _ in range(ratelimit.QUOTA_429S):
        cc_api.get(f"{API}/account/summary", status=429, json=THROTTLED)
    client = ConstantContactClient()
    # Each call sends a throttled request once more in a later slot; the fifth 429 in a row means the quota.
    with pytest.raises(QuotaExceeded) as excinfo:
        for _ in range(ratelimit.QUOTA_429S):
            with contextlib.suppress(Throttled):
                client.account_summary("tok")
    assert len(cc_api.calls) == ratelimit.QUOTA_429S
    # Only behaviour says so: look again after a probe interval (3600 s), not only after 00:00 UTC.
    assert excinfo.value.retry_after == 3600
    state = RateLimitState.objects.get(name="api")
    assert (state.blocked_until, state.quota_429s) == (at("2028-02-29 11:00:00"), 5)
    clock.set("2028-02-29 10:59:59")
    with pytest.raises(QuotaExceeded) as excinfo:
        client.account_summary("tok")  # nothing is sent while blocked: cc_api would fail an unexpected call
    assert excinfo.value.retry_after == 1
    status = ratelimit.quota_status()
    assert status["blocked"] and status["blocked_until"] == at("2028-02-29 11:00:00")
    assert "5 requests in a row" in status["reason"]
    assert status["last_429_at"] == at("2028-02-29 10:00:00")


def test_an_answer_between_429s_ends_the_streak(db, cc_api, monkeypatch):
    Clock(monkeypatch, "2028-02-29 10:00:00")
    client = ConstantContactClient()
    for _ in range(2):
        for _ in range(ratelimit.QUOTA_429S - 1):
            cc_api.get(f"{API}/account/summary", status=429, json=THROTTLED)
        cc_api.get(f"{API}/account/summary", status=404, json=[{"error_key": "not_found"}])
        with pytest.raises(Rejected):  # CC processed the last one: the quota is not spent
            for _ in range(ratelimit.QUOTA_429S):
                with contextlib.suppress(Throttled):
                    client.account_summary("tok")
    state = RateLimitState.objects.get(name="api")
    assert (state.blocked_until, state.quota_429s) == (None, 0)


def test_429s_on_requests_sent_late_for_their_slot_do_not_count(db, cc_api, monkeypatch):
    clock = Clock(monkeypatch, "2028-02-29 10:00:00")

    def busy_host() -> float:  # every look at the clock finds it 0.3 s on: requests leave late
        clock.now += 0.3
        return clock.now

    monkeypatch.setattr(time, "time", busy_host)
    sends = THROTTLED_RESENDS + 1  # each call sends a throttled request once more in a later slot
    for _ in range(sends * (ratelimit.QUOTA_429S + 1)):
        cc_api.get(f"{API}/account/summary", status=429, json=THROTTLED)
    for _ in range(ratelimit.QUOTA_429S + 1):
        with pytest.raises(Throttled):
            ConstantContactClient().account_summary("tok")
    assert RateLimitState.objects.get(name="api").quota_429s == 0


def test_quota_exceeded_waits_for_the_presumed_reset_then_probes_sparingly(db, cc_api, monkeypatch):
    clock = Clock(monkeypatch, "2028-02-29 10:00:00")
    client = ConstantContactClient()
    cc_api.get(f"{API}/account/summary", status=429, json={"error_key": "quota_exceeded"})
    with pytest.raises(QuotaExceeded) as excinfo:
        client.account_summary("tok")
    assert excinfo.value.retry_after == 14 * 3600 + 60  # CC's word: its documented reset, 00:00 UTC
    clock.set("2028-03-01 00:00:59")
    with pytest.raises(QuotaExceeded):
        client.account_summary("tok")  # not sent
    # CC's day did not end at 00:00 UTC: the probe is refused, and the next one waits a probe interval.
    clock.set("2028-03-01 00:01:00")
    cc_api.get(f"{API}/account/summary", status=429, json=THROTTLED)
    with pytest.raises(QuotaExceeded) as excinfo:
        client.account_summary("tok")
    assert excinfo.value.retry_after == 3600
    assert RateLimitState.objects.get(name="api").blocked_until == at("2028-03-01 01:01:00")
    clock.set("2028-03-01 01:00:00")
    with pytest.raises(QuotaExceeded):
        client.account_summary("tok")  # not sent
    # The next probe is accepted: the block and the streak are gone, and requests flow again.
    clock.set("2028-03-01 01:01:00")
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client.account_summary("tok")
    client.account_summary("tok")
    state = RateLimitState.objects.get(name="api")
    assert (state.blocked_until, state.quota_429s) == (None, 0)
    assert ratelimit.quota_status()["blocked"] is False


def test_only_one_request_probes_the_others_wait_without_sending(db, monkeypatch, cc_settings):
    clock = Clock(monkeypatch, "2028-02-29 23:59:30")
    RateLimitState.objects.create(name="api", blocked_until=at("2028-02-29 23:59:30"), quota_429s=7)
    assert ratelimit.reserve("api", 4.0) == 0  # the probe
    clock.now += 1
    with pytest.raises(QuotaExceeded) as excinfo:
        ratelimit.reserve("api", 4.0)  # waits for the probe's answer, never a request a second
    assert excinfo.value.retry_after >= 60


@pytest.mark.django_db(transaction=True)
def test_after_an_accepted_probe_a_refusal_stops_the_requests_other_workers_already_reserved(
    cc_api, cc_settings, monkeypatch
):
    # CC's day had not ended at 00:00 UTC, but its count was below ours: it takes the probe and one more.
    clock = Clock(monkeypatch, "2028-03-01 00:01:00")
    RateLimitState.objects.create(name="api", blocked_until=at("2028-03-01 00:01:00"), quota_429s=5)
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client = ConstantContactClient()
    client.account_summary("tok")  # the probe
    client.account_summary("tok")
    assert RateLimitState.objects.get(name="api").blocked_until is None
    # A request reserves its slot; while it waits, another worker's request meets CC's refusal.
    cc_api.get(f"{API}/account/summary", status=429, json={"error_key": "quota_exceeded"})

    refused = []

    def other_worker() -> None:
        try:
            ConstantContactClient().account_summary("tok")
        except QuotaExceeded:
            refused.append(True)
        finally:
            db_connection.close()

    def other_worker_refused(seconds: float) -> None:
        clock.now += seconds
        if threading.current_thread() is threading.main_thread():  # this worker's wait, not the other's
            worker = threading.Thread(target=other_worker)
            worker.start()
            worker.join(timeout=30)

    monkeypatch.setattr(time, "sleep", other_worker_refused)
    with pytest.raises(QuotaExceeded):
        client.account_summary("tok")
    # Sent: the probe, the one after it and the other worker's. The reserved request re-read the block.
    assert refused == [True] and len(cc_api.calls) == 3


def test_a_request_that_may_open_a_new_connection_gets_room_after_its_slot(db, cc_api, monkeypatch):
    clock = Clock(monkeypatch, "2028-02-29 10:00:00")
    monotonic = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: monotonic[0])
    for _ in range(3):
        cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client = ConstantContactClient()
    spacing = ratelimit.spacing("api", app_settings.API_RATE)

    def next_slot() -> float:
        return RateLimitState.objects.get(name="api").next_slot

    client.account_summary("tok")  # the session's first request: a TCP and TLS handshake before it
    assert next_slot() == pytest.approx(clock.now + spacing + ratelimit.NEW_CONNECTION_HEADROOM, abs=1e-6)
    clock.now, monotonic[0] = next_slot(), monotonic[0] + 1
    client.account_summary("tok")  # on the kept connection
    assert next_slot() == pytest.approx(clock.now + spacing, abs=1e-6)
    # Idle for longer than servers commonly keep a connection open: it may be new again.
    clock.now, monotonic[0] = clock.now + 60, monotonic[0] + 60
    client.account_summary("tok")
    assert next_slot() == pytest.approx(clock.now + spacing + ratelimit.NEW_CONNECTION_HEADROOM, abs=1e-6)


def test_the_usual_request_reads_nothing_more_than_its_reservation(
    db, cc_api, monkeypatch, django_assert_num_queries
):
    Clock(monkeypatch, "2028-02-29 10:00:00")
    RateLimitState.objects.create(name="api", day=at("2028-02-29 10:00:00").date())
    with django_assert_num_queries(1):  # the UPDATE ... RETURNING; no re-read of the block
        ratelimit.wait_for_slot("api", 4.0)


def test_the_local_daily_budget_blocks_until_the_presumed_reset_then_probes(
    db, cc_api, cc_settings, monkeypatch
):
    clock = Clock(monkeypatch, "2028-02-29 23:59:30")
    cc_settings["DAILY_LIMIT"] = 1
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client = ConstantContactClient()
    client.account_summary("tok")
    with pytest.raises(QuotaExceeded) as excinfo:
        client.account_summary("tok")
    assert excinfo.value.retry_after == 30 + 60
    status = ratelimit.quota_status()
    assert status["blocked_until"] == at("2028-03-01 00:01:00")
    assert "local daily budget" in status["reason"] and status["requests_today"] == 1
    clock.set("2028-03-01 00:00:30")  # our day has turned, but the presumed reset is a minute on
    with pytest.raises(QuotaExceeded):
        client.account_summary("tok")
    clock.set("2028-03-01 00:01:00")
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client.account_summary("tok")  # the probe, accepted
    assert ratelimit.quota_status()["blocked"] is False


def test_activity_queue_429s_never_count_towards_the_quota(db, cc_api):
    for _ in range(ratelimit.QUOTA_429S + 1):
        cc_api.post(f"{API}/activities/contacts_json_import", status=429, json=THROTTLED)
    for _ in range(ratelimit.QUOTA_429S + 1):
        with pytest.raises(ActivityQueueFull):
            ConstantContactClient().import_contacts_json("tok", [{"email": "a@example.com"}], ["l"])
    assert not RateLimitState.objects.filter(name="api", quota_429s__gt=0).exists()


def test_a_worker_that_finds_the_quota_blocked_waits_for_the_next_probe_without_sending(
    db, cc_api, monkeypatch, published, django_capture_on_commit_callbacks
):
    Clock(monkeypatch, "2028-02-29 10:00:00")
    make_connection()
    RateLimitState.objects.create(name="api", blocked_until=at("2028-02-29 11:00:00"), quota_429s=5)
    # Due now by the pinned clock (the field's default reads the clock before the pin takes effect).
    signup = Signup.objects.create(
        email="jdodge@example.com", list_ids=[LIST_ID], next_attempt_at=at("2028-02-29 10:00:00")
    )
    with django_capture_on_commit_callbacks(execute=True):
        sync.process_signup(signup.pk)
    signup.refresh_from_db()
    assert signup.status == Signup.Status.PENDING
    assert at("2028-02-29 11:00:00") <= signup.next_attempt_at <= at("2028-02-29 11:01:00")
    assert signup.last_error_key == "quota_exceeded"
    assert published == []  # an hour's wait is the sweeper's, not a Celery countdown


def test_a_signup_throttled_again_and_again_backs_off_beyond_a_second(monkeypatch, cc_settings):
    cc_settings["RETRY_MAX"] = 600
    monkeypatch.setattr(sync.random, "uniform", lambda low, high: high)
    delays = [sync.retry_delay(n, Throttled("x", retry_after=1.0)) for n in (1, 2, 5, 12)]
    assert delays == [2, 3, 17, 601]


def test_a_401_to_the_probe_proves_nothing_and_keeps_the_block(db, cc_api, monkeypatch):
    clock = Clock(monkeypatch, "2028-03-01 00:01:00")
    RateLimitState.objects.create(name="api", blocked_until=at("2028-03-01 00:01:00"), quota_429s=5)
    cc_api.get(f"{API}/account/summary", status=401, json={"error_key": "unauthorized"})
    with pytest.raises(AccessTokenRejected):
        ConstantContactClient().account_summary("tok")
    state = RateLimitState.objects.get(name="api")
    assert state.quota_429s == 5 and state.blocked_until is not None
    clock.now += 1
    with pytest.raises(QuotaExceeded):  # the retry after the refresh waits for the next probe
        ConstantContactClient().account_summary("tok")
