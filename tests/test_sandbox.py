"""The Constant Contact sandbox, exercised over real HTTP with ``requests``."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cc_sync.sandbox import DEFAULT_LISTS, DEFAULT_SCOPE, Sandbox, cli

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "sandbox-client-id"
AUTH = (CLIENT_ID, "sandbox-client-secret")
REDIRECT = "http://127.0.0.1:8000/admin/cc_sync/connection/callback/"
LIST_A = DEFAULT_LISTS[0]["list_id"]
LIST_B = DEFAULT_LISTS[1]["list_id"]
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}
INVALID_REFRESH = {"error": "invalid_grant", "error_description": "The refresh token is invalid or expired."}
INVALID_CODE = {
    "error": "invalid_grant",
    "error_description": "The authorization code is invalid or has expired.",
}


@pytest.fixture
def make_sandbox(cc_sandbox_factory):
    """Start sandboxes; the 1/s token and 4/s API limits are off unless a test turns them on."""
    return lambda **config: cc_sandbox_factory(**{"token_rate": None, "api_rate": None, **config})


@pytest.fixture
def sb(make_sandbox):
    return make_sandbox()


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def authorize(
    sandbox, *, decision="allow", client_id=CLIENT_ID, redirect_uri=REDIRECT, scope=DEFAULT_SCOPE, **extra
):
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "state": "st-123",
        **extra,
    }
    return requests.post(sandbox.authorize_url, data={**params, "decision": decision}, allow_redirects=False)


def get_code(sandbox, **kwargs) -> str:
    response = authorize(sandbox, **kwargs)
    assert response.status_code == 302, response.text
    return query_of(response.headers["Location"])["code"]


def exchange(sandbox, code, *, redirect_uri=REDIRECT, auth=AUTH, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra}
    return requests.post(sandbox.token_url, data=data, auth=auth)


def refresh(sandbox, token, *, auth=AUTH, **extra):
    return requests.post(
        sandbox.token_url, data={"grant_type": "refresh_token", "refresh_token": token, **extra}, auth=auth
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(sandbox, token, body=None, **kwargs):
    body = {"email_address": "ann@example.com", "list_memberships": [LIST_A]} if body is None else body
    return requests.post(
        sandbox.api_url + "/contacts/sign_up_form", json=body, headers=bearer(token), **kwargs
    )


def lists_page(sandbox, token, **params):
    return requests.get(sandbox.api_url + "/contact_lists", params=params, headers=bearer(token))


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# -- authorization endpoint --------------------------------------------------------------------------


def test_consent_page_shows_app_name_scopes_and_allow_deny_buttons(sb):
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "contact_data offline_access",
        "state": "st-<1>",
    }
    response = requests.get(sb.authorize_url, params=params, allow_redirects=False)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "cc_sync sandbox app" in page
    assert "<code>contact_data</code>" in page and "<code>offline_access</code>" in page
    assert '<form method="post" action="/oauth2/default/v1/authorize">' in page
    assert 'name="decision" value="allow">Allow</button>' in page
    assert 'name="decision" value="deny">Deny</button>' in page
    assert '<input type="hidden" name="state" value="st-&lt;1&gt;">' in page
    assert f'<input type="hidden" name="redirect_uri" value="{REDIRECT}">' in page


def test_allow_redirects_to_the_redirect_uri_with_code_and_state(sb):
    response = authorize(sb)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    params = query_of(location)
    assert params["state"] == "st-123"
    assert len(params["code"]) >= 40
    assert "error" not in params


def test_deny_redirects_with_access_denied(sb):
    response = authorize(sb, decision="deny")
    assert response.status_code == 302
    params = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT + "?")
    assert params["error"] == "access_denied"
    assert params["error_description"]
    assert params["state"] == "st-123"
    assert "code" not in params


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT.rstrip("/"),
        REDIRECT.upper(),
        REDIRECT + "?next=/",
        "http://127.0.0.1:8001/admin/cc_sync/connection/callback/",
        "https://127.0.0.1:8000/admin/cc_sync/connection/callback/",
        "https://evil.example/callback/",
    ],
)
def test_redirect_uri_must_match_exactly(sb, redirect_uri):
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": DEFAULT_SCOPE,
    }
    page = requests.get(sb.authorize_url, params=params, allow_redirects=False)
    assert page.status_code == 400
    assert "Location" not in page.headers
    assert "redirect_uri" in page.text
    decision = authorize(sb, redirect_uri=redirect_uri)
    assert decision.status_code == 400
    assert "Location" not in decision.headers


def test_every_registered_redirect_uri_is_accepted(sb):
    other = "http://localhost:8000/admin/cc_sync/connection/callback/"
    response = authorize(sb, redirect_uri=other)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(other + "?code=")


def test_unknown_client_gets_an_error_page_not_a_redirect(sb):
    response = authorize(sb, client_id="who-is-this")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "invalid_client" in response.text


def test_bad_scope_and_response_type_are_redirected_as_oauth_errors(sb):
    bad_scope = query_of(authorize(sb, scope="contact_data superpowers").headers["Location"])
    assert bad_scope["error"] == "invalid_scope"
    assert bad_scope["state"] == "st-123"
    no_scope = query_of(authorize(sb, scope="").headers["Location"])
    assert no_scope["error"] == "invalid_scope"
    bad_type = query_of(authorize(sb, response_type="token").headers["Location"])
    assert bad_type["error"] == "unsupported_response_type"


# -- token endpoint: authorization code ------------------------------------------------------------


def test_code_exchange_returns_cc_token_shape(sb):
    response = exchange(sb, get_code(sb))
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"token_type", "expires_in", "access_token", "refresh_token", "scope"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 86400
    assert tokens["scope"] == DEFAULT_SCOPE
    assert len(tokens["access_token"]) >= 40 and len(tokens["refresh_token"]) >= 40
    assert tokens["access_token"] != tokens["refresh_token"]
    summary = requests.get(sb.api_url + "/account/summary", headers=bearer(tokens["access_token"]))
    assert summary.status_code == 200
    assert summary.json() == {
        "organization_name": "Sandbox Organization",
        "encoded_account_id": "sandbox-account",
    }


def test_access_token_is_a_jwt_with_exp_and_client_id(sb):
    token = sb.issue_tokens()["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "RS256"
    assert claims["cid"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 86400
    assert claims["scp"] == DEFAULT_SCOPE.split()
    assert len(signature) >= 40


def test_token_exchange_accepts_query_string_parameters(sb):
    code = get_code(sb)
    params = {"code": code, "redirect_uri": REDIRECT, "grant_type": "authorization_code"}
    response = requests.post(sb.token_url, params=params, auth=AUTH)
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


def test_code_is_single_use(sb):
    code = get_code(sb)
    assert exchange(sb, code).status_code == 200
    second = exchange(sb, code)
    assert second.status_code == 400
    assert second.json() == INVALID_CODE


def test_code_expires_after_code_lifetime(make_sandbox):
    sandbox = make_sandbox(code_lifetime=0.2)
    code = get_code(sandbox)
    time.sleep(0.3)
    response = exchange(sandbox, code)
    assert response.status_code == 400
    assert response.json() == INVALID_CODE


def test_code_exchange_needs_the_redirect_uri_used_at_authorize(sb):
    code = get_code(sb)
    wrong = exchange(sb, code, redirect_uri="http://localhost:8000/admin/cc_sync/connection/callback/")
    assert wrong.status_code == 400
    assert wrong.json() == INVALID_CODE
    missing = requests.post(sb.token_url, data={"grant_type": "authorization_code", "code": code}, auth=AUTH)
    assert missing.json() == INVALID_CODE
    assert exchange(sb, code).status_code == 200


def test_confidential_client_must_authenticate_with_basic_auth(sb):
    code = get_code(sb)
    wrong_secret = exchange(sb, code, auth=(CLIENT_ID, "nope"))
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    in_body = exchange(sb, code, auth=None, client_id=CLIENT_ID, client_secret="sandbox-client-secret")
    assert in_body.status_code == 401
    assert in_body.json()["error"] == "invalid_client"
    assert exchange(sb, code).status_code == 200


def test_unsupported_grant_type(sb):
    response = requests.post(sb.token_url, data={"grant_type": "password"}, auth=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_token_body_must_be_form_encoded(sb):
    response = requests.post(
        sb.token_url, json={"grant_type": "refresh_token", "refresh_token": "x"}, auth=AUTH
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# -- token endpoint: refresh -----------------------------------------------------------------------


def test_rotating_refresh_token_is_single_use(sb):
    old = sb.issue_tokens()["refresh_token"]
    first = refresh(sb, old)
    assert first.status_code == 200
    new = first.json()["refresh_token"]
    assert new != old
    reused = refresh(sb, old)
    assert reused.status_code == 400
    assert reused.json() == INVALID_REFRESH
    assert refresh(sb, new).status_code == 200


def test_rotation_invalidates_every_earlier_refresh_token_of_the_grant(sb):
    first = sb.issue_tokens()["refresh_token"]
    second = refresh(sb, first).json()["refresh_token"]
    third = refresh(sb, second).json()["refresh_token"]
    assert refresh(sb, first).json() == INVALID_REFRESH
    assert refresh(sb, second).json() == INVALID_REFRESH
    assert refresh(sb, third).status_code == 200


def test_long_lived_refresh_token_is_returned_again(make_sandbox):
    sandbox = make_sandbox(refresh_tokens="long_lived")
    issued = sandbox.issue_tokens()
    one, two = (
        refresh(sandbox, issued["refresh_token"]).json(),
        refresh(sandbox, issued["refresh_token"]).json(),
    )
    assert one["refresh_token"] == two["refresh_token"] == issued["refresh_token"]
    assert len({issued["access_token"], one["access_token"], two["access_token"]}) == 3


def test_no_refresh_token_without_offline_access(sb):
    tokens = exchange(sb, get_code(sb, scope="contact_data")).json()
    assert tokens["scope"] == "contact_data"
    assert "refresh_token" not in tokens
    assert "access_token" in tokens


def test_refresh_token_only_works_for_its_own_client(make_sandbox):
    other = {"client_id": "other-app", "client_secret": "other-secret", "redirect_uris": [REDIRECT]}
    sandbox = make_sandbox(apps=[{"client_id": CLIENT_ID, "client_secret": "sandbox-client-secret"}, other])
    token = sandbox.issue_tokens()["refresh_token"]
    assert refresh(sandbox, token, auth=("other-app", "other-secret")).json() == INVALID_REFRESH
    assert refresh(sandbox, token).status_code == 200


def test_token_endpoint_rejects_second_call_within_a_second(make_sandbox):
    sandbox = make_sandbox(token_rate=1.0)
    token = sandbox.issue_tokens()["refresh_token"]
    first = refresh(sandbox, token)
    assert first.status_code == 200
    token = first.json()["refresh_token"]
    second = refresh(sandbox, token)
    assert second.status_code == 429
    assert second.json() == THROTTLED
    time.sleep(1.05)
    # The throttled call did nothing, so its refresh token is still the valid one.
    assert refresh(sandbox, token).status_code == 200
    assert sandbox.token_calls() == 3


def test_token_calls_are_counted_by_grant_type_including_rejected_ones(sb):
    exchange(sb, "not-a-code")
    refresh(sb, "not-a-token")
    refresh(sb, "not-a-token-either")
    requests.post(sb.token_url, data={"grant_type": "password"}, auth=AUTH)
    assert sb.token_calls() == 4
    assert sb.token_calls("authorization_code") == 1
    assert sb.token_calls("refresh_token") == 2
    assert sb.token_calls("password") == 1
    assert sb.token_calls(DEVICE_GRANT) == 0
    assert sb.state()["token_calls"] == {"authorization_code": 1, "refresh_token": 2, "password": 1}


# -- PKCE ------------------------------------------------------------------------------------------


def test_pkce_verifier_is_checked(make_sandbox):
    sandbox = make_sandbox(flow="pkce")
    verifier, challenge = pkce_pair()
    code = get_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    public = {"auth": None, "client_id": CLIENT_ID}
    wrong = exchange(sandbox, code, code_verifier=pkce_pair()[0], **public)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    missing = exchange(sandbox, code, **public)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_grant"
    right = exchange(sandbox, code, code_verifier=verifier, **public)
    assert right.status_code == 200
    assert right.json()["refresh_token"]


def test_pkce_app_requires_an_s256_challenge(make_sandbox):
    sandbox = make_sandbox(flow="pkce")
    missing = query_of(authorize(sandbox).headers["Location"])
    assert missing["error"] == "invalid_request"
    plain = query_of(
        authorize(sandbox, code_challenge="a" * 43, code_challenge_method="plain").headers["Location"]
    )
    assert plain["error"] == "invalid_request"


def test_pkce_non_ascii_challenge_fails_verification_not_the_server(make_sandbox):
    sandbox = make_sandbox(flow="pkce")
    code = get_code(sandbox, code_challenge="é" * 43, code_challenge_method="S256")
    response = exchange(sandbox, code, auth=None, client_id=CLIENT_ID, code_verifier="é" * 43)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_pkce_app_refreshes_with_client_id_and_rejects_basic_auth(make_sandbox):
    sandbox = make_sandbox(flow="pkce")
    assert sandbox.cc_sync_settings()["CLIENT_SECRET"] == ""
    token = sandbox.issue_tokens()["refresh_token"]
    with_secret = refresh(sandbox, token, auth=(CLIENT_ID, "sandbox-client-secret"))
    assert with_secret.status_code == 401
    response = refresh(sandbox, token, auth=None, client_id=CLIENT_ID)
    assert response.status_code == 200
    assert response.json()["refresh_token"] != token


# -- device flow -----------------------------------------------------------------------------------


def start_device(sandbox, **params):
    data = {"client_id": CLIENT_ID, "scope": DEFAULT_SCOPE, **params}
    response = requests.post(sandbox.device_authorize_url, data=data)
    assert response.status_code == 200, response.text
    return response.json()


def poll(sandbox, device_code):
    data = {"grant_type": DEVICE_GRANT, "client_id": CLIENT_ID, "device_code": device_code}
    return requests.post(sandbox.token_url, data=data)


def test_device_flow_pending_until_approved(make_sandbox):
    sandbox = make_sandbox(flow="device", device_interval=0)
    device = start_device(sandbox)
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", device["user_code"])
    assert device["verification_uri"] == sandbox.base_url + "/device"
    assert device["verification_uri_complete"] == f"{sandbox.base_url}/device?user_code={device['user_code']}"
    assert device["expires_in"] == 600
    assert device["interval"] == 0
    assert len(device["device_code"]) >= 40
    pending = poll(sandbox, device["device_code"])
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    sandbox.approve_device(device["user_code"].lower().replace("-", ""))
    granted = poll(sandbox, device["device_code"])
    assert granted.status_code == 200
    tokens = granted.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    assert poll(sandbox, device["device_code"]).json()["error"] == "invalid_grant"
    renewed = refresh(sandbox, tokens["refresh_token"], auth=None, client_id=CLIENT_ID)
    assert renewed.status_code == 200


def test_device_verification_page_allow_and_deny(make_sandbox):
    sandbox = make_sandbox(flow="device", device_interval=0)
    denied, allowed = start_device(sandbox), start_device(sandbox)
    page = requests.get(denied["verification_uri_complete"])
    assert page.status_code == 200
    assert denied["user_code"] in page.text
    assert 'value="allow">Allow</button>' in page.text and 'value="deny">Deny</button>' in page.text
    result = requests.post(
        sandbox.base_url + "/device", data={"user_code": denied["user_code"], "decision": "deny"}
    )
    assert result.status_code == 200 and "Access denied" in result.text
    assert poll(sandbox, denied["device_code"]).json()["error"] == "access_denied"
    result = requests.post(
        sandbox.base_url + "/device", data={"user_code": allowed["user_code"], "decision": "allow"}
    )
    assert "Device activated" in result.text
    assert poll(sandbox, allowed["device_code"]).status_code == 200
    unknown = requests.get(sandbox.base_url + "/device", params={"user_code": "BBBB-CCCC"})
    assert unknown.status_code == 400
    with pytest.raises(LookupError):
        sandbox.approve_device(denied["user_code"])


def test_device_flow_slow_down_when_polling_faster_than_interval(make_sandbox):
    sandbox = make_sandbox(flow="device", device_interval=5)
    device = start_device(sandbox)
    assert device["interval"] == 5
    assert poll(sandbox, device["device_code"]).json()["error"] == "authorization_pending"
    fast = poll(sandbox, device["device_code"])
    assert fast.status_code == 400
    assert fast.json()["error"] == "slow_down"


def test_device_code_expires(make_sandbox):
    sandbox = make_sandbox(flow="device", device_lifetime=0.2, device_interval=0)
    device = start_device(sandbox)
    time.sleep(0.3)
    assert poll(sandbox, device["device_code"]).json()["error"] == "expired_token"
    with pytest.raises(LookupError):
        sandbox.approve_device(device["user_code"])


def test_device_authorize_takes_query_parameters_and_checks_the_app(make_sandbox, sb):
    device_app = make_sandbox(flow="device")
    response = requests.post(
        device_app.device_authorize_url, params={"client_id": CLIENT_ID, "scope": DEFAULT_SCOPE}
    )
    assert response.status_code == 200
    assert response.json()["user_code"]
    refused = requests.post(sb.device_authorize_url, data={"client_id": CLIENT_ID, "scope": DEFAULT_SCOPE})
    assert refused.status_code == 400
    assert refused.json()["error"] == "unauthorized_client"
    assert authorize(device_app).status_code == 400


# -- /v3 authentication, scopes and limits ---------------------------------------------------------


def test_expired_token_gets_401(sb):
    token = sb.issue_tokens()["access_token"]
    assert lists_page(sb, token).status_code == 200
    assert sb.expire_access_tokens() == 1
    response = lists_page(sb, token)
    assert response.status_code == 401
    assert response.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}


def test_access_token_expires_after_token_lifetime(make_sandbox):
    sandbox = make_sandbox(token_lifetime=0.3)
    tokens = sandbox.issue_tokens()
    assert tokens["expires_in"] == 1
    assert lists_page(sandbox, tokens["access_token"]).status_code == 200
    time.sleep(0.35)
    assert lists_page(sandbox, tokens["access_token"]).status_code == 401


def test_missing_or_unknown_bearer_token_gets_401(sb):
    assert requests.get(sb.api_url + "/contact_lists").status_code == 401
    assert lists_page(sb, "made-up").status_code == 401
    basic = requests.get(sb.api_url + "/contact_lists", auth=AUTH)
    assert basic.status_code == 401


def test_account_summary_needs_account_read(sb):
    token = sb.issue_tokens(scope="contact_data offline_access")["access_token"]
    response = requests.get(sb.api_url + "/account/summary", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()[0]["error_key"] == "forbidden"
    assert lists_page(sb, token).status_code == 200


def test_unknown_api_path_is_404_and_wrong_method_is_405(sb):
    token = sb.issue_tokens()["access_token"]
    missing = requests.get(sb.api_url + "/contacts/nothing-here", headers=bearer(token))
    assert missing.status_code == 404
    assert isinstance(missing.json(), list)
    wrong = requests.get(sb.api_url + "/contacts/sign_up_form", headers=bearer(token))
    assert wrong.status_code == 405


def test_api_rate_limit_throttles_above_four_per_second(make_sandbox):
    sandbox = make_sandbox(api_rate=4)
    token = sandbox.issue_tokens()["access_token"]
    with requests.Session() as session:
        session.headers.update(bearer(token))
        responses = [session.get(sandbox.api_url + "/contact_lists") for _ in range(6)]
        assert [r.status_code for r in responses] == [200, 200, 200, 200, 429, 429]
        assert responses[-1].json() == THROTTLED
        time.sleep(1.05)
        assert session.get(sandbox.api_url + "/contact_lists").status_code == 200
    # Throttled requests are not accepted ones, so they do not use the daily quota.
    assert sandbox.state()["quota"] == {CLIENT_ID: 5}


def test_daily_quota_exceeded(make_sandbox):
    sandbox = make_sandbox(daily_quota=3)
    token = sandbox.issue_tokens()["access_token"]
    assert [lists_page(sandbox, token).status_code for _ in range(3)] == [200, 200, 200]
    over = lists_page(sandbox, token)
    assert over.status_code == 429
    assert over.json() == {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}
    assert sign_up(sandbox, token).status_code == 429
    assert sandbox.contacts() == []
    sandbox.reset_quota()
    assert lists_page(sandbox, token).status_code == 200


# -- GET /v3/contact_lists -------------------------------------------------------------------------


def test_contact_lists_paginate(make_sandbox):
    names = [f"List {n}" for n in range(7)]
    sandbox = make_sandbox(lists=[{"list_id": str(uuid.uuid4()), "name": name} for name in names])
    token = sandbox.issue_tokens()["access_token"]
    first = lists_page(sandbox, token, limit=3, include_count="true").json()
    assert [item["name"] for item in first["lists"]] == names[:3]
    assert first["lists_count"] == 7
    assert set(first["lists"][0]) == {
        "list_id",
        "name",
        "description",
        "favorite",
        "created_at",
        "updated_at",
    }
    href = first["_links"]["next"]["href"]
    assert href.startswith("/v3/contact_lists?cursor=")
    assert "limit=3" in href
    second = requests.get(sandbox.base_url + href, headers=bearer(token)).json()
    assert [item["name"] for item in second["lists"]] == names[3:6]
    third = requests.get(sandbox.base_url + second["_links"]["next"]["href"], headers=bearer(token)).json()
    assert [item["name"] for item in third["lists"]] == names[6:]
    assert "_links" not in third
    everything = lists_page(sandbox, token).json()
    assert len(everything["lists"]) == 7
    assert "_links" not in everything and "lists_count" not in everything


def test_contact_lists_limit_is_1_to_1000_as_the_spec_schema_says(sb):
    token = sb.issue_tokens()["access_token"]
    for limit in (0, 1001, "ten"):
        response = lists_page(sb, token, limit=limit)
        assert response.status_code == 400
        assert response.json()[0]["error_key"] == "contacts.api.validation.error"
    # getAllLists' schema: `maximum: 1000` (its prose says 500; the schema is the contract).
    assert lists_page(sb, token, limit=501).status_code == 200
    assert lists_page(sb, token, limit=1000).status_code == 200
    assert lists_page(sb, token, cursor="garbage!").status_code == 400


def test_contact_lists_status_takes_comma_separated_values(sb):
    token = sb.issue_tokens()["access_token"]
    sb.delete_list(LIST_B)
    names = lambda **params: [item["list_id"] for item in lists_page(sb, token, **params).json()["lists"]]  # noqa: E731
    active = [LIST_A, DEFAULT_LISTS[2]["list_id"]]
    assert names() == active
    assert names(status="deleted") == [LIST_B]
    assert names(status="active,deleted") == [LIST_A, LIST_B, DEFAULT_LISTS[2]["list_id"]]
    assert names(status="all") == names(status="active,deleted")
    [deleted] = lists_page(sb, token, status="deleted").json()["lists"]
    assert deleted["deleted_at"].endswith("Z")
    assert lists_page(sb, token, status="active,gone").status_code == 400


def test_contact_lists_membership_count(sb):
    token = sb.issue_tokens()["access_token"]
    sign_up(sb, token, {"email_address": "a@example.com", "list_memberships": [LIST_A, LIST_B]})
    sign_up(sb, token, {"email_address": "b@example.com", "list_memberships": [LIST_A]})
    lists = lists_page(sb, token, include_membership_count="all").json()["lists"]
    assert {item["list_id"]: item["membership_count"] for item in lists} == {
        LIST_A: 2,
        LIST_B: 1,
        DEFAULT_LISTS[2]["list_id"]: 0,
    }


# -- POST /v3/contacts/sign_up_form ----------------------------------------------------------------


def test_sign_up_form_upserts_by_email_case_insensitively(sb):
    token = sb.issue_tokens()["access_token"]
    created = sign_up(
        sb, token, {"email_address": "ann@example.com", "last_name": "Lee", "list_memberships": [LIST_A]}
    )
    assert created.status_code == 201
    assert created.json()["action"] == "created"
    contact_id = created.json()["contact_id"]
    assert uuid.UUID(contact_id).version == 4
    updated = sign_up(
        sb,
        token,
        {"email_address": "ANN@Example.COM", "first_name": "Ann", "list_memberships": [LIST_B, LIST_A]},
    )
    assert updated.status_code == 200
    assert updated.json() == {"contact_id": contact_id, "action": "updated"}
    [contact] = sb.contacts()
    assert contact["contact_id"] == contact_id
    assert contact["email_address"] == "ann@example.com"
    assert contact["first_name"] == "Ann"
    assert contact["last_name"] == "Lee"
    assert contact["list_memberships"] == [LIST_A, LIST_B]
    assert contact["created_at"] <= contact["updated_at"]


def test_concurrent_sign_ups_for_one_email_create_one_contact(sb):
    token = sb.issue_tokens()["access_token"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: sign_up(sb, token).status_code, range(20)))
    assert sorted(statuses) == [200] * 19 + [201]
    assert len(sb.contacts()) == 1


def test_sign_up_form_rejects_wrong_content_type_with_415(sb):
    token = sb.issue_tokens()["access_token"]
    body = json.dumps({"email_address": "ann@example.com", "list_memberships": [LIST_A]})
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        headers = {**bearer(token), "Content-Type": content_type}
        response = requests.post(sb.api_url + "/contacts/sign_up_form", data=body, headers=headers)
        assert response.status_code == 415
        errors = response.json()
        assert isinstance(errors, list) and set(errors[0]) == {"error_key", "error_message"}
    assert sb.contacts() == []
    headers = {**bearer(token), "Content-Type": "application/json; charset=utf-8"}
    assert requests.post(sb.api_url + "/contacts/sign_up_form", data=body, headers=headers).status_code == 201


def test_sign_up_form_rejects_malformed_json(sb):
    token = sb.issue_tokens()["access_token"]
    headers = {**bearer(token), "Content-Type": "application/json"}
    response = requests.post(
        sb.api_url + "/contacts/sign_up_form", data='{"email_address": ', headers=headers
    )
    assert response.status_code == 400
    assert isinstance(response.json(), list)


EMAIL_50 = "a" * 38 + "@example.com"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email_address": "b" + EMAIL_50}, "'email_address' must be at most 50 characters."),
        ({"email_address": "not-an-email"}, "'email_address' is not a valid email address."),
        ({"email_address": None}, "'email_address' is required."),
        ({"first_name": "x" * 51}, "'first_name' must be at most 50 characters."),
        ({"last_name": "x" * 51}, "'last_name' must be at most 50 characters."),
        ({"job_title": "x" * 51}, "'job_title' must be at most 50 characters."),
        ({"company_name": "x" * 51}, "'company_name' must be at most 50 characters."),
        ({"phone_number": "1" * 26}, "'phone_number' must be at most 25 characters."),
        ({"first_name": 7}, "'first_name' must be a string."),
        ({"list_memberships": []}, "'list_memberships' must contain between 1 and 50 list ids."),
        ({"list_memberships": [LIST_A] * 51}, "'list_memberships' must contain between 1 and 50 list ids."),
        ({"list_memberships": None}, "'list_memberships' is required."),
        ({"list_memberships": ["newsletter"]}, "'list_memberships[0]' is not a valid list id."),
        ({"birthday_month": 3}, "'birthday_month' and 'birthday_day' must be sent together."),
        ({"birthday_month": 13, "birthday_day": 1}, "'birthday_month' must be an integer from 1 to 12."),
        ({"birthday_month": 1, "birthday_day": 32}, "'birthday_day' must be an integer from 1 to 31."),
        ({"anniversary": "next tuesday"}, "'anniversary' must be a date such as MM/DD/YYYY or YYYY-MM-DD."),
        (
            {"street_address": {"city": "Boston"}},
            "'street_address.kind' is required and must be one of home, work, other.",
        ),
        (
            {"custom_fields": [{"custom_field_id": "x", "value": "v"}]},
            "'custom_fields[0].custom_field_id' must be a custom field id.",
        ),
    ],
)
def test_sign_up_form_validates_cc_field_limits(sb, change, message):
    token = sb.issue_tokens()["access_token"]
    body = {"email_address": "ann@example.com", "list_memberships": [LIST_A], **change}
    body = {name: value for name, value in body.items() if value is not None}
    response = sign_up(sb, token, body)
    assert response.status_code == 400
    assert {"error_key": "contacts.api.validation.error", "error_message": message} in response.json()
    assert sb.contacts() == []


def test_sign_up_form_accepts_values_at_the_limits(sb):
    token = sb.issue_tokens()["access_token"]
    body = {
        "email_address": EMAIL_50,
        "first_name": "f" * 50,
        "last_name": "l" * 50,
        "job_title": "j" * 50,
        "company_name": "c" * 50,
        "phone_number": "1" * 25,
        "birthday_month": 12,
        "birthday_day": 31,
        "anniversary": "2020-6-1",
        "street_address": {"kind": "home", "street": "s" * 255, "city": "Boston"},
        "custom_fields": [{"custom_field_id": str(uuid.uuid4()), "value": "v" * 255}],
        "list_memberships": [str(item["list_id"]) for item in DEFAULT_LISTS],
    }
    response = sign_up(sb, token, body)
    assert response.status_code == 201, response.text
    contact = sb.contact(EMAIL_50)
    assert [phone["phone_number"] for phone in contact["phone_numbers"]] == ["1" * 25]
    assert [address["city"] for address in contact["street_addresses"]] == ["Boston"]
    assert len(contact["list_memberships"]) == 3


def test_unknown_list_is_404(sb):
    token = sb.issue_tokens()["access_token"]
    missing = str(uuid.uuid4())
    response = sign_up(sb, token, {"email_address": "ann@example.com", "list_memberships": [LIST_A, missing]})
    assert response.status_code == 404
    [error] = response.json()
    assert error["error_key"] == "contacts.api.not_found"
    assert missing in error["error_message"]
    assert sb.contacts() == []


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


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="bogus"):
        Sandbox(bogus=1)
    with pytest.raises(ValueError, match="unknown fault"):
        Sandbox(faults={"meteor": 0.1})
    with pytest.raises(ValueError, match="probability"):
        Sandbox(faults={"drop": 2})
    with pytest.raises(ValueError, match="client_secret must be None"):
        Sandbox(flow="pkce", client_secret="s")
    with pytest.raises(ValueError, match="refresh_tokens"):
        Sandbox(refresh_tokens="forever")
    with pytest.raises(ValueError, match="UUID"):
        Sandbox(lists=[{"list_id": "newsletter", "name": "Newsletter"}])
    sandbox = Sandbox(
        client_id="my-key", client_secret="my-secret", redirect_uris=["https://example.org/cb/"]
    )
    app = sandbox.config()["apps"][0]
    assert (app["client_id"], app["client_secret"], app["redirect_uris"]) == (
        "my-key",
        "my-secret",
        ["https://example.org/cb/"],
    )
    assert Sandbox(flow="device").config()["apps"][0]["client_secret"] is None


def test_urls_settings_and_restart_on_the_same_port(make_sandbox):
    sandbox = make_sandbox()
    base = sandbox.base_url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
    assert sandbox.cc_sync_settings() == {
        "AUTHORIZE_URL": base + "/oauth2/default/v1/authorize",
        "TOKEN_URL": base + "/oauth2/default/v1/token",
        "DEVICE_AUTHORIZE_URL": base + "/oauth2/default/v1/device/authorize",
        "API_URL": base + "/v3",
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": "sandbox-client-secret",
    }
    token = sandbox.issue_tokens()["access_token"]
    sandbox.stop()
    assert not sandbox.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base + "/_sandbox/state", timeout=2)
    sandbox.start()
    assert sandbox.base_url == base
    assert lists_page(sandbox, token).status_code == 200


def test_stop_cuts_sleeping_requests_short(make_sandbox):
    sandbox = make_sandbox(faults={"timeout": 1.0}, timeout_seconds=30)
    token = sandbox.issue_tokens()["access_token"]
    timer = threading.Timer(0.2, sandbox.stop)
    timer.start()
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        sign_up(sandbox, token, timeout=10)
    timer.join()
    assert time.monotonic() - started < 2


def test_context_manager_starts_and_stops():
    with Sandbox() as sandbox:
        url = sandbox.base_url + "/_sandbox/state"
        assert requests.get(url).status_code == 200
    assert not sandbox.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=2)


# -- entry points ----------------------------------------------------------------------------------


def test_server_module_does_not_import_django():
    code = "import sys, cc_sync.sandbox.server; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "False", result.stderr


def test_python_m_runs_the_sandbox_and_prints_the_urls():
    process = subprocess.Popen(
        [sys.executable, "-m", "cc_sync.sandbox", "--port", "0", "--quiet", "--flow", "pkce"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        match = re.search(r"running at (http://127\.0\.0\.1:\d+)", first)
        assert match, first + process.stderr.read()
        base = match.group(1)
        banner = "".join(iter(process.stdout.readline, "}\n"))
        assert f'"TOKEN_URL": "{base}/oauth2/default/v1/token",' in banner
        assert '"OAUTH_FLOW": "pkce",' in banner
        state = requests.get(base + "/_sandbox/state", timeout=5).json()
        assert state["config"]["apps"][0]["flow"] == "pkce"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def test_management_command_prints_settings_and_serves_until_interrupted(monkeypatch):
    from django.core.management.base import OutputWrapper

    from cc_sync.management.commands.cc_sync_sandbox import Command

    seen = {}

    def fake_wait(sandbox, poll=0.5):
        seen["state"] = requests.get(sandbox.base_url + "/_sandbox/state", timeout=5).json()
        sandbox.stop()

    monkeypatch.setattr(cli, "wait_until_interrupted", fake_wait)
    command = Command()
    out = io.StringIO()
    command.stdout = OutputWrapper(out)
    argv = [
        "--port", "0", "--quiet", "--client-id", "cmd-key", "--client-secret", "cmd-secret",
        "--redirect-uri", "https://example.org/a/", "--redirect-uri", "https://example.org/b/",
        "--refresh-tokens", "long_lived", "--token-lifetime", "60", "--api-rate", "2", "--daily-quota", "9",
        "--fault", "error_5xx=0.1",
    ]  # fmt: skip
    options = vars(command.create_parser("manage.py", "cc_sync_sandbox").parse_args(argv))
    command.handle(**options)
    config = seen["state"]["config"]
    app = config["apps"][0]
    assert (app["client_id"], app["redirect_uris"], app["confidential"]) == (
        "cmd-key",
        ["https://example.org/a/", "https://example.org/b/"],
        True,
    )
    assert (
        config["refresh_tokens"],
        config["token_lifetime"],
        config["api_rate"],
        config["daily_quota"],
    ) == (
        "long_lived",
        60,
        2,
        9,
    )
    assert config["faults"] == {"error_5xx": 0.1}
    printed = out.getvalue()
    assert "Constant Contact sandbox running at http://127.0.0.1:" in printed
    assert '"CLIENT_ID": "cmd-key",' in printed and '"CLIENT_SECRET": "cmd-secret",' in printed
    assert "https://example.org/b/" in printed


def test_wait_until_interrupted_returns_once_the_sandbox_stops():
    sandbox = Sandbox().start()
    timer = threading.Timer(0.1, sandbox.stop)
    timer.start()
    started = time.monotonic()
    cli.wait_until_interrupted(sandbox, poll=0.02)
    timer.join()
    assert not sandbox.running
    assert time.monotonic() - started < 2


def test_pytest_plugin_fixtures(tmp_path):
    (tmp_path / "plugin_settings.py").write_text(
        'SECRET_KEY = "x"\nINSTALLED_APPS = []\nCC_SYNC = {"LIST_IDS": ["keep-me"]}\n'
    )
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            import requests

            def test_cc_sandbox(cc_sandbox):
                assert requests.get(cc_sandbox.base_url + "/_sandbox/state").status_code == 200

            def test_factory(cc_sandbox_factory):
                assert cc_sandbox_factory(flow="device").cc_sync_settings()["CLIENT_SECRET"] == ""

            def test_settings(cc_sandbox_settings, settings):
                assert settings.CC_SYNC["TOKEN_URL"] == cc_sandbox_settings.token_url
                assert settings.CC_SYNC["LIST_IDS"] == ["keep-me"]
            """
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "cc_sync.sandbox.pytest_plugin",
            "--ds",
            "plugin_settings",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_uses_plugin.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


# -- spec conformance helpers ----------------------------------------------------------------------

SPEC_PATH = ROOT.parent / "shared" / "reference" / "cc-v3-openapi.yaml"
LIST_C = DEFAULT_LISTS[2]["list_id"]
FIELD_ID = "1618ae62-4752-11e9-9c8a-fa163e6b01c1"
PINNED = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def spec_schema():
    """``check(body, schema_name)`` validates a body against a schema of CC's spec (build 3.0.161)."""
    if not SPEC_PATH.exists():
        pytest.skip(f"CC's OpenAPI file is not at {SPEC_PATH}")
    import yaml
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    spec = yaml.load(SPEC_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    registry = Registry().with_resource("spec", Resource.from_contents(spec, default_specification=DRAFT4))

    def check(body, name):
        schema = {"$ref": f"spec#/components/schemas/{name}"}
        validator = OAS30Validator(schema, registry=registry, format_checker=OAS30Validator.FORMAT_CHECKER)
        errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(body)]
        assert errors == [], errors
        return body

    return check


def api(sandbox, token, method, path, **kwargs):
    return requests.request(method, sandbox.api_url + path, headers=bearer(token), **kwargs)


def find(sandbox, token, email, **params):
    return api(sandbox, token, "GET", "/contacts", params={"email": email, **params})


def poll_until_done(sandbox, token, activity):
    for _ in range(10):
        body = api(sandbox, token, "GET", f"/activities/{activity['activity_id']}").json()
        if body["state"] == "completed":
            return body
    raise AssertionError(body)


# -- GET /v3/contacts and GET /v3/contacts/{contact_id} ---------------------------------------------


def test_get_contacts_by_email_answers_in_the_spec_shape(sb, spec_schema):
    token = sb.issue_tokens()["access_token"]
    sb.add_contact(
        "Ann@Example.com", first_name="Ann", list_memberships=[LIST_A], permission_to_send="implicit"
    )
    body = spec_schema(
        find(sb, token, "ann@example.COM", status="all", include="list_memberships").json(),
        "getAllContacts_200_response",
    )
    [contact] = body["contacts"]
    assert contact["email_address"]["address"] == "Ann@Example.com"
    assert contact["email_address"]["permission_to_send"] == "implicit"
    assert contact["first_name"] == "Ann"
    assert contact["list_memberships"] == [LIST_A]
    assert "custom_fields" not in contact and "_links" in body
    assert find(sb, token, "nobody@example.com").json()["contacts"] == []
    everything = api(sb, token, "GET", "/contacts", params={"include": ",".join(
        ["custom_fields", "list_memberships", "phone_numbers", "street_addresses", "taggings", "notes"]
    )}).json()  # fmt: skip
    assert set(everything["contacts"][0]) >= {"custom_fields", "phone_numbers", "notes", "taggings"}
    by_id = api(
        sb, token, "GET", f"/contacts/{contact['contact_id']}", params={"include": "list_memberships"}
    )
    assert spec_schema(by_id.json(), "getContactById_200_response") == contact
    missing = api(sb, token, "GET", f"/contacts/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()[0]["error_key"] == "contacts.api.not_found"


def test_deleted_contacts_are_returned_only_with_status_all_or_deleted(sb):
    token = sb.issue_tokens()["access_token"]
    sb.add_contact("gone@example.com", deleted=True)
    sb.add_contact("here@example.com")
    emails = lambda **params: [  # noqa: E731
        c["email_address"]["address"]
        for c in api(sb, token, "GET", "/contacts", params=params).json()["contacts"]
    ]
    assert emails() == ["here@example.com"]
    assert emails(status="all") == ["gone@example.com", "here@example.com"]
    assert emails(status="deleted") == ["gone@example.com"]
    [gone] = find(sb, token, "gone@example.com", status="all").json()["contacts"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", gone["deleted_at"])  # the spec's `format: date`
    assert find(sb, token, "gone@example.com").json()["contacts"] == []


def test_get_contacts_status_takes_comma_separated_permission_states(sb):
    token = sb.issue_tokens()["access_token"]
    for permission in (
        "explicit",
        "implicit",
        "not_set",
        "pending_confirmation",
        "temp_hold",
        "unsubscribed",
    ):
        sb.add_contact(f"{permission}@example.com", permission_to_send=permission)

    def permissions(status):
        answer = api(sb, token, "GET", "/contacts", params={"status": status})
        assert answer.status_code == 200, answer.text
        return sorted(c["email_address"]["permission_to_send"] for c in answer.json()["contacts"])

    assert permissions("unsubscribed") == ["unsubscribed"]
    assert permissions("temp_hold,pending_confirmation") == ["pending_confirmation", "temp_hold"]
    assert permissions("active") == ["explicit", "implicit"]
    assert permissions("not_set,unsubscribed") == ["not_set", "unsubscribed"]
    assert api(sb, token, "GET", "/contacts", params={"status": "active,bogus"}).status_code == 400


def test_get_contacts_validates_limit_include_and_pages(sb):
    token = sb.issue_tokens()["access_token"]
    for n in range(5):
        sb.add_contact(f"p{n}@example.com", list_memberships=[LIST_A] if n % 2 else [LIST_B])
    for params in ({"limit": 0}, {"limit": 501}, {"include": "everything"}, {"segment_id": "1"}):
        answer = api(sb, token, "GET", "/contacts", params=params)
        assert answer.status_code == 400, params
        assert answer.json()[0]["error_key"] == "contacts.api.validation.error"
    assert api(sb, token, "GET", "/contacts", params={"limit": 500}).status_code == 200
    first = api(sb, token, "GET", "/contacts", params={"limit": 2, "include_count": "true"}).json()
    assert first["contacts_count"] == 5 and len(first["contacts"]) == 2
    second = requests.get(sb.base_url + first["_links"]["next"]["href"], headers=bearer(token)).json()
    assert [c["email_address"]["address"] for c in second["contacts"]] == ["p2@example.com", "p3@example.com"]
    on_a = api(sb, token, "GET", "/contacts", params={"lists": LIST_A}).json()["contacts"]
    assert [c["email_address"]["address"] for c in on_a] == ["p1@example.com", "p3@example.com"]


# -- POST /v3/contacts -------------------------------------------------------------------------------


def new_contact(**changes):
    body = {
        "email_address": {"address": "ann@example.com", "permission_to_send": "explicit"},
        "first_name": "Ann",
        "create_source": "Contact",
        "list_memberships": [LIST_A],
        **changes,
    }
    return {name: value for name, value in body.items() if value is not None}


def test_post_contacts_creates_a_contact_and_answers_201_with_it(sb, spec_schema):
    token = sb.issue_tokens()["access_token"]
    body = new_contact(
        custom_fields=[{"custom_field_id": FIELD_ID, "value": "Tesla"}],
        phone_numbers=[{"phone_number": "555-0100", "kind": "mobile"}],
        street_addresses=[{"kind": "home", "city": "Boston"}],
    )
    answer = api(sb, token, "POST", "/contacts", json=body)
    assert answer.status_code == 201, answer.text
    contact = spec_schema(answer.json(), "getContactById_200_response")
    assert contact["email_address"]["permission_to_send"] == "explicit"
    assert contact["email_address"]["opt_in_source"] == "Contact"
    assert contact["create_source"] == "Contact"
    assert contact["list_memberships"] == [LIST_A]
    assert contact["custom_fields"] == [{"custom_field_id": FIELD_ID, "value": "Tesla"}]
    assert contact["phone_numbers"][0]["kind"] == "mobile"
    assert sb.contact("ANN@example.com") == contact


def test_post_contacts_without_permission_stores_implicit(sb):
    token = sb.issue_tokens()["access_token"]
    body = new_contact(email_address={"address": "ann@example.com"}, create_source="Account")
    contact = api(sb, token, "POST", "/contacts", json=body).json()
    assert contact["email_address"]["permission_to_send"] == "implicit"
    assert contact["email_address"]["opt_in_source"] == "Account"


@pytest.mark.parametrize(
    "seed",
    [{}, {"permission_to_send": "unsubscribed"}, {"deleted": True}],
    ids=["active", "unsubscribed", "deleted"],
)
def test_post_contacts_answers_409_for_an_existing_email(sb, seed):
    token = sb.issue_tokens()["access_token"]
    existing = sb.add_contact("ann@example.com", first_name="Old", **seed)
    answer = api(
        sb, token, "POST", "/contacts", json=new_contact(email_address={"address": "ANN@example.com"})
    )
    assert answer.status_code == 409
    [error] = answer.json()
    assert error["error_key"] == "contacts.api.conflict" and existing["contact_id"] in error["error_message"]
    assert sb.contact("ann@example.com") == existing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"create_source": None}, "'create_source' is required and must be Contact or Account."),
        ({"create_source": "Website"}, "'create_source' is required and must be Contact or Account."),
        (
            {"email_address": None, "first_name": None},
            "At least one of first_name, last_name, email_address or sms_channel is required.",
        ),
        (
            {"email_address": {"address": "a" * 69 + "@example.com"}},
            "'email_address.address' must be at most 80 characters.",
        ),
        (
            {"email_address": {"address": "ann@example.com", "permission_to_send": "yes"}},
            "'email_address.permission_to_send' must be one of explicit, implicit, not_set, "
            "pending_confirmation, temp_hold, unsubscribed.",
        ),
        ({"first_name": "x" * 51}, "'first_name' must be a string of at most 50 characters."),
        (
            {"custom_fields": [{"custom_field_id": str(uuid.uuid4())} for _ in range(26)]},
            "'custom_fields' must contain at most 25 items.",
        ),
        (
            {"custom_fields": [{"custom_field_id": "shoe_size", "value": "9"}]},
            "'custom_fields[0].custom_field_id' must be a custom field id.",
        ),
        (
            {"phone_numbers": [{"phone_number": "1"}] * 4},
            "'phone_numbers' must contain at most 3 items.",
        ),
        (
            {"street_addresses": [{"kind": "home"}] * 4},
            "'street_addresses' must contain at most 3 items.",
        ),
        (
            {"list_memberships": [str(uuid.uuid4()) for _ in range(51)]},
            "'list_memberships' must contain at most 50 ids.",
        ),
        ({"list_memberships": ["newsletter"]}, "'list_memberships[0]' is not a valid id."),
    ],
)
def test_post_contacts_validates_the_spec_limits(sb, change, message):
    token = sb.issue_tokens()["access_token"]
    answer = api(sb, token, "POST", "/contacts", json=new_contact(**change))
    assert answer.status_code == 400
    assert {"error_key": "contacts.api.validation.error", "error_message": message} in answer.json()
    assert sb.contacts() == []


def test_post_contacts_needs_json_and_known_lists(sb):
    token = sb.issue_tokens()["access_token"]
    body = json.dumps(new_contact())
    headers = {**bearer(token), "Content-Type": "text/plain"}
    wrong = requests.post(sb.api_url + "/contacts", data=body, headers=headers)
    assert wrong.status_code == 415
    missing = str(uuid.uuid4())
    answer = api(sb, token, "POST", "/contacts", json=new_contact(list_memberships=[LIST_A, missing]))
    assert answer.status_code == 404 and missing in answer.json()[0]["error_message"]
    assert sb.contacts() == []


# -- PUT /v3/contacts/{contact_id} -------------------------------------------------------------------


def test_put_contact_overwrites_properties_keeps_subresources_and_revives(sb, spec_schema):
    token = sb.issue_tokens()["access_token"]
    seeded = sb.add_contact(
        "ann@example.com",
        first_name="Ann",
        last_name="Lee",
        job_title="Pilot",
        list_memberships=[LIST_A],
        custom_fields=[{"custom_field_id": FIELD_ID, "value": "kept"}],
        deleted=True,
    )
    body = {"update_source": "Account", "first_name": "Anna", "list_memberships": [LIST_B]}
    answer = api(sb, token, "PUT", f"/contacts/{seeded['contact_id']}", json=body)
    assert answer.status_code == 200, answer.text
    contact = spec_schema(answer.json(), "getContactById_200_response")
    assert contact["first_name"] == "Anna"
    assert "last_name" not in contact and "job_title" not in contact  # overwritten with null
    assert contact["list_memberships"] == [LIST_B]  # sent: replaced
    assert contact["custom_fields"] == [{"custom_field_id": FIELD_ID, "value": "kept"}]  # not sent: kept
    assert contact["email_address"]["address"] == "ann@example.com"
    assert "deleted_at" not in contact and contact["update_source"] == "Account"
    assert find(sb, token, "ann@example.com").json()["contacts"][0]["contact_id"] == seeded["contact_id"]


def test_put_contact_needs_update_source_and_account_to_revive(sb):
    token = sb.issue_tokens()["access_token"]
    seeded = sb.add_contact("ann@example.com", deleted=True)
    path = f"/contacts/{seeded['contact_id']}"
    assert api(sb, token, "PUT", path, json={"first_name": "A"}).json()[0]["error_message"] == (
        "'update_source' is required and must be Contact or Account."
    )
    refused = api(sb, token, "PUT", path, json={"update_source": "Contact"})
    assert refused.status_code == 400 and sb.contact("ann@example.com")["deleted_at"]
    assert (
        api(sb, token, "PUT", f"/contacts/{uuid.uuid4()}", json={"update_source": "Account"}).status_code
        == 404
    )
    other = sb.add_contact("bob@example.com")
    taken = {"update_source": "Account", "email_address": {"address": "bob@example.com"}}
    conflict = api(sb, token, "PUT", path, json=taken)
    assert conflict.status_code == 409 and other["contact_id"] in conflict.json()[0]["error_message"]


# -- POST /v3/contacts/sign_up_form: CC's documented semantics ---------------------------------------


def test_sign_up_form_new_contact_is_explicit_with_opt_in_source_contact(sb):
    token = sb.issue_tokens()["access_token"]
    assert sign_up(sb, token).status_code == 201
    email = sb.contact("ann@example.com")["email_address"]
    assert (email["permission_to_send"], email["opt_in_source"]) == ("explicit", "Contact")


def test_sign_up_form_with_confirmed_opt_in_makes_new_contacts_pending(make_sandbox):
    sandbox = make_sandbox(confirmed_opt_in=True)
    token = sandbox.issue_tokens()["access_token"]
    assert sign_up(sandbox, token).status_code == 201
    email = sandbox.contact("ann@example.com")["email_address"]
    assert (email["permission_to_send"], email["confirm_status"]) == ("pending_confirmation", "pending")
    sandbox.add_contact("old@example.com", permission_to_send="unsubscribed")
    # "Updated contacts have their permission_to_send property set as explicit" - COI or not.
    assert (
        sign_up(
            sandbox, token, {"email_address": "old@example.com", "list_memberships": [LIST_A]}
        ).status_code
        == 200
    )
    assert sandbox.contact("old@example.com")["email_address"]["permission_to_send"] == "explicit"
    assert Sandbox().config()["confirmed_opt_in"] is False


@pytest.mark.parametrize(
    "seed", [{"permission_to_send": "unsubscribed"}, {"deleted": True}], ids=["unsubscribed", "deleted"]
)
def test_sign_up_form_reopts_in_and_restores_an_existing_contact_with_a_partial_update(sb, seed):
    token = sb.issue_tokens()["access_token"]
    seeded = sb.add_contact(
        "ann@example.com",
        first_name="Ann",
        last_name="Lee",
        list_memberships=[LIST_A],
        custom_fields=[{"custom_field_id": FIELD_ID, "value": "old"}],
        **seed,
    )
    other_field = str(uuid.uuid4())
    body = {
        "email_address": "ann@example.com",
        "first_name": "Eve",
        "list_memberships": [LIST_B],
        "custom_fields": [{"custom_field_id": other_field, "value": "new"}],
    }
    answer = sign_up(sb, token, body)
    assert answer.status_code == 200
    assert answer.json() == {"contact_id": seeded["contact_id"], "action": "updated"}
    contact = sb.contact("ann@example.com")
    assert contact["email_address"]["permission_to_send"] == "explicit"
    assert "opt_out_date" not in contact["email_address"] and "deleted_at" not in contact
    assert (contact["first_name"], contact["last_name"]) == ("Eve", "Lee")  # only what was sent changes
    assert contact["list_memberships"] == [LIST_A, LIST_B]  # appended
    assert {f["custom_field_id"]: f["value"] for f in contact["custom_fields"]} == {
        FIELD_ID: "old",
        other_field: "new",
    }


def test_sign_up_form_accepts_sms_only_contacts_and_custom_fields_without_value(sb, spec_schema):
    token = sb.issue_tokens()["access_token"]
    consent = {
        "sms_consent_permission": "explicit",
        "consent_type": "promotional_sms",
        "consent_medium_type": "website",
        "consent_medium_url": "https://example.org/signup",
        "consent_medium_details": "checkbox",
    }
    body = {
        "sms_channel": {
            "sms_address": "5551230000",
            "dial_code": "1",
            "country_code": "US",
            "sms_channel_consents": [consent],
        },
        "list_memberships": [LIST_A],
        "custom_fields": [{"custom_field_id": FIELD_ID}],
    }
    spec_schema(body, "createOrUpdateContact_request")
    created = sign_up(sb, token, body)
    assert created.status_code == 201, created.text
    again = sign_up(sb, token, {**body, "first_name": "Sam"})
    assert again.json() == {"contact_id": created.json()["contact_id"], "action": "updated"}
    [stored] = sb.contacts()
    assert stored["email_address"] is None and stored["first_name"] == "Sam"
    contact = api(
        sb, token, "GET", f"/contacts/{stored['contact_id']}", params={"include": "custom_fields"}
    ).json()
    spec_schema(contact, "getContactById_200_response")
    assert contact["sms_channel"]["sms_address"] == "5551230000" and "email_address" not in contact
    assert contact["custom_fields"] == [{"custom_field_id": FIELD_ID}]
    broken = sign_up(sb, token, {"sms_channel": {"sms_address": "1"}, "list_memberships": [LIST_A]})
    assert broken.status_code == 400


def test_sign_up_form_ignores_fields_the_spec_does_not_define(sb):
    token = sb.issue_tokens()["access_token"]
    body = {
        "email_address": "ann@example.com",
        "list_memberships": [LIST_A],
        "permission_to_send": "unsubscribed",
        "favourite_colour": "green",
        "street_address": {"kind": "home", "city": "Boston", "planet": "Mars"},
    }
    assert sign_up(sb, token, body).status_code == 201
    [stored] = sb.contacts()
    assert "favourite_colour" not in stored and stored["permission_to_send"] == "explicit"
    assert "planet" not in json.dumps(sb.contact("ann@example.com"))


def test_sign_up_form_to_a_deleted_list_is_404(sb):
    token = sb.issue_tokens()["access_token"]
    sb.add_contact("ann@example.com", list_memberships=[LIST_B])
    deleted = sb.delete_list(LIST_B)
    assert deleted["deleted_at"]
    assert sb.contact("ann@example.com")["list_memberships"] == []
    answer = sign_up(sb, token, {"email_address": "ann@example.com", "list_memberships": [LIST_B]})
    assert answer.status_code == 404 and LIST_B in answer.json()[0]["error_message"]
    assert api(sb, token, "POST", "/contacts", json=new_contact(list_memberships=[LIST_B])).status_code == 404
    with pytest.raises(LookupError):
        sb.delete_list(LIST_B)


# -- seeding -----------------------------------------------------------------------------------------


def test_add_contact_seeds_a_contact_as_get_returns_it(sb, spec_schema):
    token = sb.issue_tokens()["access_token"]
    seeded = sb.add_contact(
        "ann@example.com",
        first_name="Ann",
        last_name="Lee",
        permission_to_send="unsubscribed",
        list_memberships=[LIST_A],
        job_title="Pilot",
        opt_out_reason="Too many emails",
    )
    spec_schema(seeded, "getContactById_200_response")
    assert seeded["email_address"]["opt_out_reason"] == "Too many emails"
    assert seeded["create_source"] == "Account" and seeded["job_title"] == "Pilot"
    include = "custom_fields,list_memberships,phone_numbers,street_addresses,taggings,notes"
    assert (
        api(sb, token, "GET", f"/contacts/{seeded['contact_id']}", params={"include": include}).json()
        == seeded
    )
    assert sb.contact("nobody@example.com") is None
    # Seeding is not an API request: only the GET was logged.
    assert [entry["path"] for entry in sb.requests()] == [f"/v3/contacts/{seeded['contact_id']}"]
    for bad in (
        {"permission_to_send": "maybe"},
        {"list_memberships": [str(uuid.uuid4())]},
        {"first_name": "x" * 51},
    ):
        with pytest.raises(ValueError):
            sb.add_contact("bob@example.com", **bad)
    with pytest.raises(ValueError, match="exists already"):
        sb.add_contact("ANN@example.com")


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


# -- POST /v3/activities/add_list_memberships --------------------------------------------------------


def test_add_list_memberships_adds_only_lists_when_the_activity_completes(make_sandbox, spec_schema):
    sb = make_sandbox(clock=lambda: PINNED)  # pinned: the activity does not complete by itself meanwhile
    token = sb.issue_tokens()["access_token"]
    ann = sb.add_contact(
        "ann@example.com", first_name="Ann", permission_to_send="unsubscribed", list_memberships=[LIST_A]
    )
    bob = sb.add_contact("bob@example.com", list_memberships=[LIST_A])
    body = {"source": {"contact_ids": [ann["contact_id"]]}, "list_ids": [LIST_B, LIST_C]}
    spec_schema(body, "createListAddActivity_request")
    answer = api(sb, token, "POST", "/activities/add_list_memberships", json=body)
    assert answer.status_code == 201, answer.text
    activity = spec_schema(answer.json(), "createListRemoveActivity_201_response")
    assert activity["state"] == "initialized" and activity["status"]["list_count"] == 2
    assert sb.contact("ann@example.com")["list_memberships"] == [LIST_A]  # nothing until CC's job runs
    done = spec_schema(poll_until_done(sb, token, activity), "getActivityById_200_response")
    assert done["status"]["items_total_count"] == done["status"]["items_completed_count"] == 1
    after = sb.contact("ann@example.com")
    assert after["list_memberships"] == [LIST_A, LIST_B, LIST_C]
    assert after["email_address"]["permission_to_send"] == "unsubscribed" and after["first_name"] == "Ann"
    assert sb.contact("bob@example.com") == bob
    by_list = {
        "source": {"list_ids": [LIST_A]},
        "exclude": {"contact_ids": [bob["contact_id"]]},
        "list_ids": [LIST_C],
    }
    second = api(sb, token, "POST", "/activities/add_list_memberships", json=by_list).json()
    assert poll_until_done(sb, token, second)["status"]["items_total_count"] == 1


def test_add_list_memberships_completes_by_itself_after_list_activity_seconds(make_sandbox):
    now = [PINNED]
    sb = make_sandbox(clock=lambda: now[0], list_activity_seconds=2)
    token = sb.issue_tokens()["access_token"]
    ann = sb.add_contact("ann@example.com", list_memberships=[LIST_A])
    body = {"source": {"contact_ids": [ann["contact_id"]]}, "list_ids": [LIST_B]}
    assert api(sb, token, "POST", "/activities/add_list_memberships", json=body).status_code == 201
    now[0] += 1.9
    assert sb.contact("ann@example.com")["list_memberships"] == [LIST_A]
    now[0] += 0.2  # never polled, as cc_sync does not poll it: CC runs it in the background
    assert sb.contact("ann@example.com")["list_memberships"] == [LIST_A, LIST_B]
    assert sb.activities()[-1]["state"] == "completed"


def test_add_list_memberships_refuses_unknown_lists_and_bad_bodies(sb):
    token = sb.issue_tokens()["access_token"]
    ann = sb.add_contact("ann@example.com")
    missing = str(uuid.uuid4())
    post = lambda body: api(sb, token, "POST", "/activities/add_list_memberships", json=body)  # noqa: E731
    gone = post({"source": {"contact_ids": [ann["contact_id"]]}, "list_ids": [missing]})
    assert gone.status_code == 404 and missing in gone.json()[0]["error_message"]
    for body in (
        {"source": {"contact_ids": [ann["contact_id"]]}, "list_ids": []},
        {"source": {"contact_ids": [ann["contact_id"]], "all_active_contacts": True}, "list_ids": [LIST_A]},
        {"source": {"contact_ids": ["ann"]}, "list_ids": [LIST_A]},
        {"list_ids": [LIST_A]},
    ):
        assert post(body).status_code == 400, body
    assert sb.activities() == []


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


# -- bulk activities: the import keys, the 4 MB cut, the queue limit ---------------------------------


def post_import(sandbox, token, body, **kwargs):
    return api(sandbox, token, "POST", "/activities/contacts_json_import", json=body, **kwargs)


def test_import_accepts_every_key_the_spec_defines(sb, spec_schema):
    token = sb.issue_tokens()["access_token"]
    item = {
        "email": "ann@example.com",
        "first_name": "Ann",
        "phone": "1" * 50,
        "home_phone": "555-0101",
        "work_phone": "555-0102",
        "home_street": "1 Home St",
        "home_street2": "Apt 2",
        "home_city": "Boston",
        "home country": "US",
        "work_street": "2 Work Rd",
        "work_zip": "02110",
        "other_city": "Paris",
        "other_country": "France",
        "birthday_month": 11,
        "birthday_day": 24,
        "anniversary": "2006-11-15",
        "cf:shoe_size": "9",
    }
    body = {
        "import_data": [item, {"sms_number": "5081231235", "sms_consent_date": "07-03-2024"}],
        "list_ids": [LIST_A],
        "sms_permission_to_send": "explicit",
    }
    spec_schema(body, "createImportJSONActivity_request")
    activity = post_import(sb, token, body).json()
    done = poll_until_done(sb, token, activity)
    assert done["activity_errors"] == [] and done["status"]["error_count"] == 0
    contact = sb.contact("ann@example.com")
    assert {p["kind"]: p["phone_number"] for p in contact["phone_numbers"]} == {
        "other": "1" * 50,
        "home": "555-0101",
        "work": "555-0102",
    }
    addresses = {a["kind"]: a for a in contact["street_addresses"]}
    assert addresses["home"]["street"] == "1 Home St Apt 2" and addresses["home"]["country"] == "US"
    assert addresses["work"]["postal_code"] == "02110" and addresses["other"]["city"] == "Paris"
    assert (contact["birthday_month"], contact["anniversary"]) == (11, "2006-11-15")
    assert contact["email_address"]["permission_to_send"] == "implicit"
    [sms_only] = [c for c in sb.contacts() if c["email_address"] is None]
    assert sms_only["sms_channel"]["sms_channel_consents"][0]["sms_consent_permission"] == "explicit"


def test_import_over_4_mb_imports_only_the_contacts_inside_the_first_4_mb(sb):
    token = sb.issue_tokens()["access_token"]
    items = [{"email": f"p{n:05}@example.com", "cf:notes": "x" * 200} for n in range(20_000)]
    body = {"import_data": items, "list_ids": [LIST_A]}
    raw = json.dumps(body).encode()
    assert len(raw) > 4_000_000
    answer = post_import(sb, token, body)
    assert answer.status_code == 201, answer.text[:300]
    inside = sum(raw.index(json.dumps(item).encode()) + len(json.dumps(item)) <= 4_000_000 for item in items)
    assert answer.json()["status"]["person_count"] == inside < len(items)
    done = poll_until_done(sb, token, answer.json())
    assert len(sb.contacts()) == inside
    assert done["activity_errors"] == [
        f"The request body exceeded 4 MB: {len(items) - inside} contacts after the first 4 MB were not imported."
    ]


def test_bulk_activity_posts_answer_429_when_the_queue_is_full(make_sandbox):
    sandbox = make_sandbox(activity_queue_limit=2)
    token = sandbox.issue_tokens()["access_token"]
    body = {"import_data": [{"email": "a@example.com"}], "list_ids": [LIST_A]}
    first, second = post_import(sandbox, token, body).json(), post_import(sandbox, token, body).json()
    full = post_import(sandbox, token, body)
    assert full.status_code == 429
    assert full.json() == {
        "error_key": "too_many_requests",
        "error_message": "Too many requests. You exceeded 1,000 queued activities for this user account.",
    }
    ann = sandbox.add_contact("ann@example.com")
    adding = {"source": {"contact_ids": [ann["contact_id"]]}, "list_ids": [LIST_B]}
    assert api(sandbox, token, "POST", "/activities/add_list_memberships", json=adding).status_code == 429
    assert len(sandbox.activities()) == 2
    poll_until_done(sandbox, token, first)
    assert post_import(sandbox, token, body).status_code == 201
    assert api(sandbox, token, "GET", f"/activities/{second['activity_id']}").status_code == 200
    assert Sandbox().config()["activity_queue_limit"] == 1000


# -- daily quota: error key, reset hour, injectable clock --------------------------------------------


def test_quota_error_key_is_a_setting_and_none_looks_like_throttling(make_sandbox):
    sandbox = make_sandbox(daily_quota=1, quota_error_key=None)
    token = sandbox.issue_tokens()["access_token"]
    assert lists_page(sandbox, token).status_code == 200
    over = lists_page(sandbox, token)
    assert (over.status_code, over.json()) == (429, THROTTLED)
    sandbox.configure(quota_error_key="daily_limit")
    assert lists_page(sandbox, token).json() == {
        "error_key": "daily_limit",
        "error_message": "Limit Exceeded",
    }
    with pytest.raises(ValueError):
        sandbox.configure(quota_error_key="")


def test_quota_day_rolls_over_at_quota_reset_hour_utc_on_the_sandbox_clock(make_sandbox):
    now = [PINNED + 23.5 * 3600]  # 2026-01-01 23:30 UTC
    sandbox = make_sandbox(daily_quota=1, quota_reset_hour_utc=7, clock=lambda: now[0])
    token = sandbox.issue_tokens()["access_token"]
    assert lists_page(sandbox, token).status_code == 200
    assert lists_page(sandbox, token).status_code == 429
    now[0] = PINNED + 24.5 * 3600  # 00:30 UTC: CC's documented reset, not this account's
    assert lists_page(sandbox, token).status_code == 429
    now[0] = PINNED + 31 * 3600  # 07:00 UTC
    assert lists_page(sandbox, token).status_code == 200
    assert sandbox.state()["quota"] == {CLIENT_ID: 1}
    with pytest.raises(ValueError):
        sandbox.configure(quota_reset_hour_utc=24)


def test_timestamps_come_from_the_injected_clock(make_sandbox):
    sandbox = make_sandbox(clock=lambda: PINNED)
    token = sandbox.issue_tokens()["access_token"]
    sign_up(sandbox, token)
    contact = sandbox.contact("ann@example.com")
    assert contact["created_at"] == contact["email_address"]["opt_in_date"] == "2026-01-01T00:00:00.000Z"
    assert sandbox.now() == PINNED


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


def test_command_line_sets_confirmed_opt_in_queue_limit_and_quota_reset_hour():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--confirmed-opt-in", "--activity-queue-limit", "5", "--quota-reset-hour", "8"]
    config = cli.sandbox_from_options(vars(parser.parse_args(argv))).config()
    assert (config["confirmed_opt_in"], config["activity_queue_limit"], config["quota_reset_hour_utc"]) == (
        True,
        5,
        8,
    )
    defaults = cli.sandbox_from_options(vars(parser.parse_args([]))).config()
    assert (defaults["confirmed_opt_in"], defaults["activity_queue_limit"]) == (False, 1000)


def test_an_imported_sms_number_matches_the_sign_up_form_contact_with_that_number(sb):
    token = sb.issue_tokens()["access_token"]
    channel = {
        "sms_address": "5081231235",
        "dial_code": "1",
        "country_code": "US",
        "sms_channel_consents": [],
    }
    created = sign_up(sb, token, {"sms_channel": channel, "list_memberships": [LIST_A]}).json()
    body = {"import_data": [{"sms_number": "508-123-1235", "first_name": "Sam"}], "list_ids": [LIST_B]}
    poll_until_done(sb, token, post_import(sb, token, body).json())
    [contact] = sb.contacts()
    assert contact["contact_id"] == created["contact_id"]
    assert (contact["first_name"], contact["list_memberships"]) == ("Sam", [LIST_A, LIST_B])
