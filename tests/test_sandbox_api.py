"""The sandbox's /v3 front door: Bearer tokens, scopes, routes, the rate limit and the daily quota."""

from __future__ import annotations

import time

import pytest
import requests

from rig.sandbox import AUTH, CLIENT_ID, PINNED, THROTTLED, bearer, lists_page, sign_up

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


# -- daily quota: error key, reset hour --------------------------------------------


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
