"""The sandbox's control endpoints (/_sandbox/...), request log, reset and HTML pages."""

from __future__ import annotations

import json
import time
import uuid

import requests

from cc_sync.sandbox import DEFAULT_LISTS
from rig.sandbox import (
    CLIENT_ID,
    INVALID_REFRESH,
    LIST_A,
    LIST_B,
    LIST_C,
    api,
    exchange,
    find,
    get_code,
    lists_page,
    new_contact,
    poll,
    refresh,
    sign_up,
    start_device,
)

# -- request log, control endpoints, pages ---------------------------------------------------------


def test_request_log_records_every_call_except_control_calls(sb):
    started = time.time()
    requests.get(sb.authorize_url, params={"client_id": CLIENT_ID})
    code = get_code(sb)
    tokens = exchange(sb, code).json()
    sign_up(sb, tokens["access_token"])
    sign_up(sb, "bad-token", {"email_address": "eve@example.com", "list_memberships": [LIST_A]})
    requests.get(sb.base_url + "/_sandbox/state")
    requests.post(sb.base_url + "/_sandbox/reset_quota")
    requests.get(sb.base_url + "/")
    log = sb.requests()
    assert [(e["kind"], e["method"], e["path"], e["status"]) for e in log] == [
        ("authorize", "GET", "/oauth2/default/v1/authorize", 400),
        ("authorize", "POST", "/oauth2/default/v1/authorize", 302),
        ("token", "POST", "/oauth2/default/v1/token", 200),
        ("api", "POST", "/v3/contacts/sign_up_form", 201),
        ("api", "POST", "/v3/contacts/sign_up_form", 401),
    ]
    assert [e["grant_type"] for e in log] == [None, None, "authorization_code", None, None]
    assert [e["email"] for e in log] == [None, None, None, "ann@example.com", "eve@example.com"]
    assert [e["fault"] for e in log] == [None] * 5
    assert log[-1]["error"] == "unauthorized"
    times = [e["time"] for e in log]
    assert times == sorted(times) and started <= times[0] <= time.time()


def test_state_endpoint_hides_secrets_and_shows_everything_else(sb):
    token = sb.issue_tokens()["access_token"]
    sign_up(sb, token)
    state = requests.get(sb.base_url + "/_sandbox/state").json()
    assert set(state) >= {"contacts", "lists", "requests", "token_calls", "config"}
    assert [c["email_address"] for c in state["contacts"]] == ["ann@example.com"]
    assert set(state["contacts"][0]) >= {
        "contact_id",
        "first_name",
        "last_name",
        "list_memberships",
        "created_at",
        "updated_at",
    }
    assert [item["list_id"] for item in state["lists"]] == [item["list_id"] for item in DEFAULT_LISTS]
    assert state["config"]["apps"][0]["client_id"] == CLIENT_ID
    assert state["config"]["apps"][0]["confidential"] is True
    assert "sandbox-client-secret" not in json.dumps(state)
    assert state == json.loads(json.dumps(sb.state()))


def test_control_endpoints(make_sandbox):
    sandbox = make_sandbox(flow="device", device_interval=0)
    control = sandbox.base_url + "/_sandbox/"
    configured = requests.post(control + "configure", json={"daily_quota": 1, "faults": {"drop": 0.25}})
    assert configured.status_code == 200
    assert configured.json()["config"]["daily_quota"] == 1
    assert sandbox.config()["faults"] == {"drop": 0.25}
    bad = requests.post(control + "configure", json={"daily_qouta": 1})
    assert bad.status_code == 400 and "daily_qouta" in bad.json()["error"]
    tokens = requests.post(control + "issue_tokens", json={}).json()
    assert requests.post(control + "expire_tokens").json() == {"expired": 1}
    assert lists_page(sandbox, tokens["access_token"]).status_code == 401
    device = start_device(sandbox)
    assert requests.post(control + "approve_device", json={"user_code": "ZZZZ-ZZZZ"}).status_code == 404
    assert (
        requests.post(control + "approve_device", json={"user_code": device["user_code"]}).status_code == 200
    )
    assert poll(sandbox, device["device_code"]).status_code == 200
    assert requests.post(control + "reset_quota").status_code == 200
    assert requests.post(control + "reset").status_code == 200
    assert sandbox.requests() == [] and sandbox.token_calls() == 0
    assert sandbox.config()["daily_quota"] == 1
    assert requests.get(control + "nothing").status_code == 404


def test_reset_forgets_contacts_tokens_and_logs_but_keeps_config_and_lists(make_sandbox):
    custom = [{"list_id": str(uuid.uuid4()), "name": "Members"}]
    sandbox = make_sandbox(lists=custom, refresh_tokens="long_lived")
    tokens = sandbox.issue_tokens()
    sign_up(
        sandbox,
        tokens["access_token"],
        {"email_address": "a@example.com", "list_memberships": [custom[0]["list_id"]]},
    )
    refresh(sandbox, tokens["refresh_token"])
    sandbox.reset()
    assert sandbox.contacts() == [] and sandbox.requests() == [] and sandbox.token_calls() == 0
    assert [item["name"] for item in sandbox.lists()] == ["Members"]
    assert sandbox.config()["refresh_tokens"] == "long_lived"
    assert lists_page(sandbox, tokens["access_token"]).status_code == 401
    assert refresh(sandbox, tokens["refresh_token"]).json() == INVALID_REFRESH


def test_index_page_shows_contacts_and_requests_escaped(sb):
    token = sb.issue_tokens()["access_token"]
    assert (
        sign_up(sb, token, {"email_address": "x<b>@example.com", "list_memberships": [LIST_B]}).status_code
        == 201
    )
    page = requests.get(sb.base_url + "/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "x&lt;b&gt;@example.com" in page.text and "x<b>@" not in page.text
    assert "Newsletter" in page.text
    assert "/v3/contacts/sign_up_form" in page.text
    assert '<meta http-equiv="refresh"' in page.text


def test_control_endpoints_seed_contacts_and_delete_lists(sb):
    control = sb.base_url + "/_sandbox/"
    answer = requests.post(
        control + "add_contact",
        json={"email": "ann@example.com", "first_name": "Ann", "list_memberships": [LIST_A], "deleted": True},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == sb.contact("ann@example.com") and answer.json()["deleted_at"]
    assert requests.post(control + "add_contact", json={"first_name": "Ann"}).status_code == 400
    assert requests.post(control + "add_contact", json={"email": "ann@example.com"}).status_code == 400
    assert requests.post(control + "delete_list", json={"list_id": LIST_A}).json()["list_id"] == LIST_A
    assert requests.post(control + "delete_list", json={"list_id": LIST_A}).status_code == 404
    assert [item["list_id"] for item in sb.lists() if item["deleted_at"]] == [LIST_A]


def test_requests_are_logged_with_method_path_and_email_for_each_contact_call(sb):
    token = sb.issue_tokens()["access_token"]
    api(sb, token, "POST", "/contacts", json=new_contact())
    find(sb, token, "ann@example.com", status="all", include="list_memberships")
    contact_id = sb.contact("ann@example.com")["contact_id"]
    api(
        sb,
        token,
        "POST",
        "/activities/add_list_memberships",
        json={"source": {"contact_ids": [contact_id]}, "list_ids": [LIST_B]},
    )
    api(
        sb,
        token,
        "PUT",
        f"/contacts/{contact_id}",
        json={"update_source": "Contact", "email_address": {"address": "ann@example.com"}},
    )
    sign_up(sb, token)
    log = [(e["method"], e["path"], e["status"], e["email"]) for e in sb.requests()]
    assert log == [
        ("POST", "/v3/contacts", 201, "ann@example.com"),
        ("GET", "/v3/contacts", 200, "ann@example.com"),
        ("POST", "/v3/activities/add_list_memberships", 201, None),
        ("PUT", f"/v3/contacts/{contact_id}", 200, "ann@example.com"),
        ("POST", "/v3/contacts/sign_up_form", 200, "ann@example.com"),
    ]
    assert sb.requests()[2]["detail"] == "1 contact_ids -> 1 lists"


def test_index_page_shows_permission_deleted_contacts_and_lists_and_sms_only_contacts(sb):
    sb.add_contact("gone@example.com", permission_to_send="unsubscribed", deleted=True)
    sb.delete_list(LIST_C)
    token = sb.issue_tokens()["access_token"]
    channel = {
        "sms_address": "5551230000",
        "dial_code": "1",
        "country_code": "US",
        "sms_channel_consents": [],
    }
    assert sign_up(sb, token, {"sms_channel": channel, "list_memberships": [LIST_A]}).status_code == 201
    page = requests.get(sb.base_url + "/").text
    assert "unsubscribed (deleted)" in page and "Events (deleted)" in page and "5551230000" in page
