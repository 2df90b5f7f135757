"""The HTTP seam: requests sent, statuses mapped to exceptions, pagination, pacing."""

from __future__ import annotations

import os
import threading

import pytest
import requests
from responses import matchers

from cc_sync import ratelimit
from cc_sync.client import ConstantContactClient, describe_error, get_client, redact
from cc_sync.exceptions import (
    AccessTokenRejected,
    ActivityQueueFull,
    QuotaExceeded,
    ReconnectRequired,
    Rejected,
    RetryLater,
    Throttled,
)

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


def test_quota_exceeded_retries_after_midnight_utc(db, cc_api):
    cc_api.get(f"{API}/account/summary", status=429, json={"error_key": "quota_exceeded"})
    with pytest.raises(QuotaExceeded) as excinfo:
        ConstantContactClient().account_summary("tok")
    assert excinfo.value.retry_after > ratelimit.seconds_until_utc_midnight()


def test_a_429_on_a_bulk_activity_post_means_a_full_activity_queue_not_throttling(db, cc_api):
    # CC's spec: on /activities/* POSTs a 429 means more than 1,000 queued activities (minutes, not seconds).
    cc_api.post(f"{API}/activities/contacts_json_import", status=429, json={"error_key": "too_many_requests"})
    with pytest.raises(ActivityQueueFull) as excinfo:
        ConstantContactClient().import_contacts_json("tok", [{"email": "a@example.com"}], ["l"])
    assert excinfo.value.retry_after >= 60
    assert isinstance(excinfo.value, RetryLater) and not isinstance(excinfo.value, (Throttled, QuotaExceeded))


def test_a_429_while_polling_an_activity_is_ordinary_throttling(db, cc_api):
    cc_api.get(f"{API}/activities/a-1", status=429, json={"error_key": "throttled"})
    with pytest.raises(Throttled):
        ConstantContactClient().activity("tok", "a-1")


def test_the_local_daily_budget_stops_requests_before_cc_does(db, cc_api, cc_settings):
    cc_settings["DAILY_LIMIT"] = 2
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    cc_api.get(f"{API}/account/summary", json={"organization_name": "A"})
    client = ConstantContactClient()
    client.account_summary("tok")
    client.account_summary("tok")
    with pytest.raises(QuotaExceeded):
        client.account_summary("tok")  # not sent: cc_api would fail an unexpected third call
    assert ratelimit.requests_today("api") == 2


def test_slots_are_spaced_so_no_second_holds_more_than_the_rate(db):
    delays = [ratelimit.reserve("test", rate=4.0) for _ in range(9)]
    # Reserved back to back: the n-th slot is n spacings after the first.
    spacing = ratelimit.SPACING_MARGIN / 4.0
    for n, delay in enumerate(delays):
        assert delay == pytest.approx(n * spacing, abs=0.05)
    assert 4 * spacing > 1.0  # so a one-second window never holds 5


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
