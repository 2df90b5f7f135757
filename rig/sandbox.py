"""What the sandbox's own tests (tests/test_sandbox_*.py) share: its default app and lists, and requests to
its endpoints."""

from __future__ import annotations

import base64
import hashlib
import os
from urllib.parse import parse_qs, urlsplit

import requests

from cc_sync.sandbox import DEFAULT_LISTS, DEFAULT_SCOPE

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


LIST_C = DEFAULT_LISTS[2]["list_id"]


FIELD_ID = "1618ae62-4752-11e9-9c8a-fa163e6b01c1"


PINNED = 1_767_225_600.0  # 2026-01-01T00:00:00Z


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


def start_device(sandbox, **params):
    data = {"client_id": CLIENT_ID, "scope": DEFAULT_SCOPE, **params}
    response = requests.post(sandbox.device_authorize_url, data=data)
    assert response.status_code == 200, response.text
    return response.json()


def poll(sandbox, device_code):
    data = {"grant_type": DEVICE_GRANT, "client_id": CLIENT_ID, "device_code": device_code}
    return requests.post(sandbox.token_url, data=data)


def new_contact(**changes):
    body = {
        "email_address": {"address": "ann@example.com", "permission_to_send": "explicit"},
        "first_name": "Ann",
        "create_source": "Contact",
        "list_memberships": [LIST_A],
        **changes,
    }
    return {name: value for name, value in body.items() if value is not None}


# -- several accounts and applications (tests/test_sandbox_accounts.py) ----------------------------

OTHER_CLIENT_ID = "second-client-id"


OTHER_AUTH = (OTHER_CLIENT_ID, "second-client-secret")


def control(sandbox, name, **body):
    """POST one ``/_sandbox/<name>`` control call, as a test in another process would."""
    return requests.post(f"{sandbox.base_url}/_sandbox/{name}", json=body)


def connect(sandbox, *, account=None, client_id=CLIENT_ID, auth=AUTH) -> dict:
    """Connect over HTTP: Allow on the consent form (for ``account`` if given, else the account signed
    in), then exchange the code; returns the token response."""
    extra = {"account": account} if account else {}
    response = exchange(sandbox, get_code(sandbox, client_id=client_id, **extra), auth=auth)
    assert response.status_code == 200, response.text
    return response.json()


def account_of(sandbox, token) -> str:
    """The ``encoded_account_id`` an access token sees at ``GET /v3/account/summary``."""
    response = requests.get(sandbox.api_url + "/account/summary", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["encoded_account_id"]
