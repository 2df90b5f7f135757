"""The sandbox's fault injection, on the token endpoint and /v3."""

from __future__ import annotations

import time

import pytest
import requests

from cc_sync.sandbox import DEFAULT_SCOPE
from rig.sandbox import CLIENT_ID, INVALID_REFRESH, THROTTLED, lists_page, refresh, sign_up

# -- faults ----------------------------------------------------------------------------------------


def test_fault_error_5xx_does_not_store_the_contact(make_sandbox):
    sandbox = make_sandbox(faults={"error_5xx": 1.0})
    token = sandbox.issue_tokens()["access_token"]
    statuses = {sign_up(sandbox, token).status_code for _ in range(8)}
    assert statuses <= {500, 502, 503} and len(statuses) > 1
    assert sandbox.contacts() == []
    assert {entry["fault"] for entry in sandbox.requests()} == {"error_5xx"}


def test_fault_timeout_stores_the_contact_then_answers_late(make_sandbox):
    sandbox = make_sandbox(faults={"timeout": 1.0}, timeout_seconds=0.5)
    token = sandbox.issue_tokens()["access_token"]
    with pytest.raises(requests.exceptions.ReadTimeout):
        sign_up(sandbox, token, timeout=(1, 0.15))
    [contact] = sandbox.contacts()
    started = time.monotonic()
    late = sign_up(sandbox, token, timeout=5)
    assert time.monotonic() - started >= 0.45
    assert late.json() == {"contact_id": contact["contact_id"], "action": "updated"}
    sandbox.configure(faults={})
    assert sign_up(sandbox, token).status_code == 200


def test_fault_drop_closes_the_connection_without_an_answer(make_sandbox):
    sandbox = make_sandbox(faults={"drop": 1.0})
    token = sandbox.issue_tokens()["access_token"]
    with pytest.raises(requests.exceptions.ConnectionError):
        sign_up(sandbox, token)
    assert sandbox.contacts() == []
    [entry] = sandbox.requests()
    assert entry["status"] is None and entry["fault"] == "drop"


def test_fault_throttle_answers_429_and_stores_nothing(make_sandbox):
    sandbox = make_sandbox(faults={"throttle": 1.0})
    token = sandbox.issue_tokens()["access_token"]
    response = sign_up(sandbox, token)
    assert response.status_code == 429
    assert response.json() == THROTTLED
    assert sandbox.contacts() == []
    assert sandbox.state()["quota"] == {CLIENT_ID: 0}


def test_fault_html_200_stores_the_contact(make_sandbox):
    sandbox = make_sandbox(faults={"html_200": 1.0})
    response = sign_up(sandbox, sandbox.issue_tokens()["access_token"])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<html>")
    assert len(sandbox.contacts()) == 1


def test_fault_empty_200_stores_the_contact(make_sandbox):
    sandbox = make_sandbox(faults={"empty_200": 1.0})
    response = sign_up(sandbox, sandbox.issue_tokens()["access_token"])
    assert response.status_code == 200
    assert response.content == b""
    assert len(sandbox.contacts()) == 1


def test_fault_truncated_json_stores_the_contact(make_sandbox):
    sandbox = make_sandbox(faults={"truncated_json": 1.0})
    response = sign_up(sandbox, sandbox.issue_tokens()["access_token"])
    assert response.status_code == 200
    assert response.text.startswith('{"contact_id": "')
    with pytest.raises(ValueError):
        response.json()
    assert len(sandbox.contacts()) == 1


def test_fault_missing_contact_id_stores_the_contact(make_sandbox):
    sandbox = make_sandbox(faults={"missing_contact_id": 1.0})
    response = sign_up(sandbox, sandbox.issue_tokens()["access_token"])
    assert response.status_code == 201
    assert response.json() == {"action": "created"}
    assert len(sandbox.contacts()) == 1


def test_garbling_faults_leave_error_answers_alone(make_sandbox):
    sandbox = make_sandbox(faults={"missing_contact_id": 1.0})
    token = sandbox.issue_tokens()["access_token"]
    response = sign_up(sandbox, token, {"email_address": "ann@example.com"})
    assert response.status_code == 400
    assert response.json()[0]["error_message"] == "'list_memberships' is required."
    assert sandbox.contacts() == []


def test_token_fault_missing_field_keeps_the_token_response_without_tokens(make_sandbox):
    sandbox = make_sandbox(token_faults={"missing_contact_id": 1.0})
    token = sandbox.issue_tokens()["refresh_token"]
    response = refresh(sandbox, token)
    assert response.status_code == 200
    assert response.json() == {"token_type": "Bearer", "expires_in": 86400, "scope": DEFAULT_SCOPE}
    sandbox.configure(token_faults={})
    assert refresh(sandbox, token).json() == INVALID_REFRESH


def test_faults_are_seeded_and_reproducible(make_sandbox):
    def statuses(sandbox):
        token = sandbox.issue_tokens()["access_token"]
        return [sign_up(sandbox, token).status_code for _ in range(12)]

    one = make_sandbox(faults={"error_5xx": 0.5}, seed=7)
    two = make_sandbox(faults={"error_5xx": 0.5}, seed=7)
    first = statuses(one)
    assert statuses(two) == first
    assert any(status >= 500 for status in first) and any(status < 300 for status in first)
    one.reset()
    assert statuses(one) == first


def test_token_faults_apply_to_the_token_endpoint(make_sandbox):
    sandbox = make_sandbox(token_faults={"error_5xx": 1.0})
    token = sandbox.issue_tokens()["refresh_token"]
    assert refresh(sandbox, token).status_code in (500, 502, 503)
    # Not processed: the refresh token is still good.
    sandbox.configure(token_faults={"html_200": 1.0})
    lost = refresh(sandbox, token)
    assert lost.status_code == 200 and lost.headers["Content-Type"].startswith("text/html")
    # Processed: CC rotated the token but the answer was lost, so the old one is dead.
    sandbox.configure(token_faults={})
    assert refresh(sandbox, token).json() == INVALID_REFRESH
    assert [entry["fault"] for entry in sandbox.requests()] == ["error_5xx", "html_200", None]


def test_delay_adds_latency_to_api_answers_only(make_sandbox):
    sandbox = make_sandbox(delay=0.25)
    tokens = sandbox.issue_tokens()
    started = time.monotonic()
    assert lists_page(sandbox, tokens["access_token"]).status_code == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    assert refresh(sandbox, tokens["refresh_token"]).status_code == 200
    assert time.monotonic() - started < 0.2
