"""The sandbox's OAuth server: the authorization and token endpoints, PKCE and the device flow."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import requests

from cc_sync.sandbox import DEFAULT_SCOPE
from rig.sandbox import (
    AUTH,
    CLIENT_ID,
    DEVICE_GRANT,
    INVALID_CODE,
    INVALID_REFRESH,
    REDIRECT,
    THROTTLED,
    authorize,
    bearer,
    exchange,
    get_code,
    pkce_pair,
    poll,
    query_of,
    refresh,
    start_device,
)

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
