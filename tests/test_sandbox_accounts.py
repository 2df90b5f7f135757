"""Several CC accounts and applications in one sandbox, over real HTTP: tokens bound to an (application,
account) pair, data isolated per account, budgets per application (CC counts per API key)."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timezone

import pytest
import requests

from cc_sync.sandbox import DEFAULT_ACCOUNT, DEFAULT_LISTS, cli
from rig.sandbox import (
    AUTH,
    CLIENT_ID,
    DEVICE_GRANT,
    INVALID_REFRESH,
    LIST_A,
    OTHER_AUTH,
    OTHER_CLIENT_ID,
    THROTTLED,
    account_of,
    api,
    authorize,
    bearer,
    connect,
    control,
    find,
    lists_page,
    poll_until_done,
    refresh,
    sign_up,
    start_device,
)

DEFAULT = DEFAULT_ACCOUNT["encoded_account_id"]
QUOTA_EXCEEDED = {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}

LAST_SECOND_OF_A_DAY = datetime(2028, 2, 29, 23, 59, 59, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def two(make_sandbox):
    """A sandbox with a second account ("acct-b") and a second application, added over HTTP."""
    sandbox = make_sandbox()
    assert control(sandbox, "add_account", account_id="acct-b", organization_name="B Corp").status_code == 200
    added = control(sandbox, "add_app", client_id=OTHER_CLIENT_ID, client_secret=OTHER_AUTH[1])
    assert added.status_code == 200, added.text
    return sandbox


def list_of(sandbox, account):
    return sandbox.lists(account=account)[0]["list_id"]


# -- tokens are bound to the account that approved ----------------------------------------------------


def test_the_consent_form_account_field_binds_the_token_to_that_account(two):
    token_b = connect(two, account="acct-b")["access_token"]
    token_default = connect(two)["access_token"]
    assert account_of(two, token_b) == "acct-b"
    assert account_of(two, token_default) == DEFAULT
    summary = requests.get(two.api_url + "/account/summary", headers=bearer(token_b)).json()
    assert summary == {"organization_name": "B Corp", "encoded_account_id": "acct-b"}


def test_sign_in_chooses_the_account_the_next_approvals_use(two):
    assert control(two, "sign_in", account="acct-b").json()["encoded_account_id"] == "acct-b"
    page = requests.get(
        two.authorize_url,
        params={
            "client_id": CLIENT_ID,
            "redirect_uri": two.config()["apps"][0]["redirect_uris"][0],
            "response_type": "code",
            "scope": "contact_data",
        },
    ).text
    assert "Signed in to <strong>B Corp</strong>" in page
    assert re.search(r'<option value="acct-b" selected>', page)
    assert account_of(two, connect(two)["access_token"]) == "acct-b"
    assert account_of(two, connect(two)["access_token"]) == "acct-b"  # it stays signed in
    control(two, "sign_in")  # back to the default account
    assert account_of(two, connect(two)["access_token"]) == DEFAULT


def test_the_consent_page_offers_no_account_choice_with_one_account(sb):
    redirect = sb.config()["apps"][0]["redirect_uris"][0]
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "contact_data",
    }
    assert 'name="account"' not in requests.get(sb.authorize_url, params=params).text


def test_an_unknown_account_on_the_consent_form_is_an_error_page_not_a_code(two):
    response = authorize(two, account="nobody")
    assert response.status_code == 400
    assert "no account &#x27;nobody&#x27;" in response.text
    assert "Location" not in response.headers


def test_the_device_flow_approves_for_the_account_chosen_on_the_device_page(two):
    two.configure(device_interval=0)
    two.add_app("tv-app", flow="device")
    started = start_device(two, client_id="tv-app")
    page = requests.get(two.base_url + "/device", params={"user_code": started["user_code"]}).text
    assert '<option value="acct-b">' in page
    decided = requests.post(
        two.base_url + "/device",
        data={"user_code": started["user_code"], "decision": "allow", "account": "acct-b"},
    )
    assert decided.status_code == 200
    data = {"grant_type": DEVICE_GRANT, "client_id": "tv-app", "device_code": started["device_code"]}
    token = requests.post(two.token_url, data=data).json()["access_token"]
    assert account_of(two, token) == "acct-b"


def test_a_refreshed_token_keeps_its_account(two):
    tokens = connect(two, account="acct-b")
    refreshed = refresh(two, tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert account_of(two, refreshed.json()["access_token"]) == "acct-b"


def test_a_refresh_token_works_only_with_the_application_that_got_it(two):
    tokens = connect(two, account="acct-b", client_id=OTHER_CLIENT_ID, auth=OTHER_AUTH)
    wrong = refresh(two, tokens["refresh_token"], auth=AUTH)
    assert (wrong.status_code, wrong.json()) == (400, INVALID_REFRESH)
    assert refresh(two, tokens["refresh_token"], auth=OTHER_AUTH).status_code == 200


# -- each account has its own lists, contacts and activities ------------------------------------------


def test_each_account_sees_only_its_own_lists(two):
    token_a = two.issue_tokens()["access_token"]
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    ids_a = [item["list_id"] for item in lists_page(two, token_a).json()["lists"]]
    ids_b = [item["list_id"] for item in lists_page(two, token_b).json()["lists"]]
    assert ids_a == [item["list_id"] for item in DEFAULT_LISTS]
    assert ids_b == [item["list_id"] for item in two.lists(account="acct-b")]
    assert not set(ids_a) & set(ids_b)
    # The same names, as a new CC account's lists would be set up alike.
    assert [item["name"] for item in two.lists(account="acct-b")] == [item["name"] for item in DEFAULT_LISTS]


def test_contacts_are_stored_in_the_token_s_account_and_invisible_to_the_other(two):
    token_a = two.issue_tokens()["access_token"]
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    body_b = {"email_address": "bea@example.com", "list_memberships": [list_of(two, "acct-b")]}
    assert sign_up(two, token_b, body_b).status_code == 201
    assert sign_up(two, token_a).status_code == 201  # ann@ on the default account's LIST_A

    assert [c["email_address"] for c in two.contacts(account="acct-b")] == ["bea@example.com"]
    assert [c["email_address"] for c in two.contacts()] == ["ann@example.com"]
    assert find(two, token_a, "bea@example.com").json()["contacts"] == []
    bea_id = two.contacts(account="acct-b")[0]["contact_id"]
    assert api(two, token_a, "GET", f"/contacts/{bea_id}").status_code == 404
    assert api(two, token_b, "GET", f"/contacts/{bea_id}").status_code == 200


def test_the_same_address_is_a_separate_contact_in_each_account(two):
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    sign_up(two, two.issue_tokens()["access_token"])
    body = {"email_address": "ann@example.com", "list_memberships": [list_of(two, "acct-b")]}
    assert sign_up(two, token_b, body).json()["action"] == "created"
    assert two.contacts()[0]["contact_id"] != two.contacts(account="acct-b")[0]["contact_id"]


def test_a_list_of_another_account_is_not_found(two):
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    response = sign_up(two, token_b, {"email_address": "x@example.com", "list_memberships": [LIST_A]})
    assert response.status_code == 404
    assert two.contacts(account="acct-b") == [] and two.contacts() == []


def test_activities_belong_to_their_account(two):
    token_a = two.issue_tokens()["access_token"]
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    body = {"import_data": [{"email": "imp@example.com"}], "list_ids": [list_of(two, "acct-b")]}
    activity = api(two, token_b, "POST", "/activities/contacts_json_import", json=body).json()
    assert api(two, token_a, "GET", f"/activities/{activity['activity_id']}").status_code == 404
    assert poll_until_done(two, token_b, activity)["state"] == "completed"
    assert [c["email_address"] for c in two.contacts(account="acct-b")] == ["imp@example.com"]
    assert two.activities() == [] and len(two.activities(account="acct-b")) == 1


def test_contacts_and_lists_can_be_seeded_and_deleted_per_account_over_http(two):
    list_b = list_of(two, "acct-b")
    seeded = control(two, "add_contact", email="old@example.com", account="acct-b", list_memberships=[list_b])
    assert seeded.status_code == 200, seeded.text
    assert [c["email_address"] for c in two.contacts(account="acct-b")] == ["old@example.com"]
    assert control(two, "delete_list", list_id=list_b).status_code == 404  # not a default-account list
    assert control(two, "delete_list", list_id=list_b, account="acct-b").status_code == 200
    assert two.contacts(account="acct-b")[0]["list_memberships"] == []
    assert two.contacts() == []


# -- budgets are per application --------------------------------------------------------------------


def test_accounts_of_one_application_share_its_api_rate(two):
    # One accepted request per 5 s: a second within the window is refused, whichever account it is for.
    two.configure(api_rate=0.2)
    token_a = two.issue_tokens()["access_token"]
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    token_other_app = two.issue_tokens(OTHER_CLIENT_ID, account="acct-b")["access_token"]
    assert lists_page(two, token_a).status_code == 200
    throttled = lists_page(two, token_b)
    assert (throttled.status_code, throttled.json()) == (429, THROTTLED)
    assert lists_page(two, token_other_app).status_code == 200


def test_one_application_s_spent_quota_does_not_refuse_another_application(two):
    # The quota day is the sandbox's: pinned a second before 00:00 UTC, it cannot roll over mid-test.
    two.clock = lambda: LAST_SECOND_OF_A_DAY
    token_a = two.issue_tokens()["access_token"]
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    token_other_app = two.issue_tokens(OTHER_CLIENT_ID, account="acct-b")["access_token"]
    assert control(two, "spend_quota", client_id=CLIENT_ID).json() == {"quota": 10000}
    for token in (token_a, token_b):  # both accounts of the spent application
        refused = lists_page(two, token)
        assert (refused.status_code, refused.json()) == (429, QUOTA_EXCEEDED)
    assert lists_page(two, token_other_app).status_code == 200
    assert two.state()["quota"] == {CLIENT_ID: 10000, OTHER_CLIENT_ID: 1}
    control(two, "reset_quota", client_id=CLIENT_ID)
    assert lists_page(two, token_b).status_code == 200


def test_the_token_endpoint_limit_is_per_application(two):
    two.configure(token_rate=0.2)  # one token call per 5 s and application
    first = two.issue_tokens()["refresh_token"]
    second = two.issue_tokens(account="acct-b")["refresh_token"]
    other = two.issue_tokens(OTHER_CLIENT_ID, account="acct-b")["refresh_token"]
    assert refresh(two, first).status_code == 200
    throttled = refresh(two, second)
    assert (throttled.status_code, throttled.json()) == (429, THROTTLED)
    assert refresh(two, other, auth=OTHER_AUTH).status_code == 200


# -- faults aimed at one account or application ----------------------------------------------------


def test_revoking_one_account_s_grant_leaves_the_other_working(two):
    tokens_a = connect(two)
    tokens_b = connect(two, account="acct-b")
    assert control(two, "revoke_grant", account="acct-b").json() == {"revoked": 1}
    assert lists_page(two, tokens_b["access_token"]).status_code == 401
    revoked = refresh(two, tokens_b["refresh_token"])
    assert (revoked.status_code, revoked.json()) == (400, INVALID_REFRESH)
    assert lists_page(two, tokens_a["access_token"]).status_code == 200
    assert refresh(two, tokens_a["refresh_token"]).status_code == 200


def test_revoking_by_application_leaves_other_applications_grants(two):
    mine = two.issue_tokens(account="acct-b")
    theirs = two.issue_tokens(OTHER_CLIENT_ID, account="acct-b")
    assert two.revoke_grant(client_id=OTHER_CLIENT_ID) == 1
    assert lists_page(two, theirs["access_token"]).status_code == 401
    assert lists_page(two, mine["access_token"]).status_code == 200


def test_expiring_one_account_s_tokens_leaves_the_other_s(two):
    token_a = two.issue_tokens()["access_token"]
    token_b = two.issue_tokens(account="acct-b")["access_token"]
    assert control(two, "expire_tokens", account="acct-b").json() == {"expired": 1}
    assert lists_page(two, token_b).status_code == 401
    assert lists_page(two, token_a).status_code == 200
    assert [e["status"] for e in two.requests(account="acct-b")] == [401]


# -- inspection, validation, reset ---------------------------------------------------------------------


def test_the_request_log_says_which_account_and_application_each_request_was_for(two):
    tokens_b = connect(two, account="acct-b", client_id=OTHER_CLIENT_ID, auth=OTHER_AUTH)
    lists_page(two, two.issue_tokens()["access_token"])
    lists_page(two, tokens_b["access_token"])
    refresh(two, tokens_b["refresh_token"], auth=OTHER_AUTH)
    for_b = two.requests(account="acct-b")
    assert [(e["kind"], e["path"]) for e in for_b] == [
        ("authorize", "/oauth2/default/v1/authorize"),
        ("token", "/oauth2/default/v1/token"),
        ("api", "/v3/contact_lists"),
        ("token", "/oauth2/default/v1/token"),
    ]
    assert {e["client_id"] for e in for_b} == {OTHER_CLIENT_ID}
    assert [e["account"] for e in two.requests(client_id=CLIENT_ID)] == [DEFAULT]
    assert two.requests(account="acct-b", client_id=CLIENT_ID) == []


def test_state_shows_every_account(two):
    sign_up(two, two.issue_tokens()["access_token"])
    state = requests.get(two.base_url + "/_sandbox/state").json()
    assert [item["account"]["encoded_account_id"] for item in state["accounts"]] == [DEFAULT, "acct-b"]
    assert [len(item["contacts"]) for item in state["accounts"]] == [1, 0]
    assert state["accounts"][0]["contacts"] == state["contacts"]
    assert state["signed_in"] == DEFAULT
    assert [app["client_id"] for app in state["config"]["apps"]] == [CLIENT_ID, OTHER_CLIENT_ID]
    assert OTHER_AUTH[1] not in requests.get(two.base_url + "/_sandbox/state").text


def test_bad_accounts_and_applications_are_refused_with_a_clear_error(two):
    assert control(two, "add_account", account_id="acct-b").json() == {
        "error": "account 'acct-b' exists already"
    }
    assert control(two, "add_account", account_id=DEFAULT).status_code == 400
    assert control(two, "add_account", account_id="").status_code == 400
    bad_list = control(two, "add_account", account_id="c", lists=[{"list_id": "nope", "name": "X"}])
    assert bad_list.status_code == 400 and "UUID" in bad_list.json()["error"]
    assert control(two, "add_app", client_id=OTHER_CLIENT_ID, client_secret="x").json() == {
        "error": "client_ids must be unique"
    }
    assert control(two, "add_app", client_id="no-secret").status_code == 400  # authorization_code needs one
    assert control(two, "sign_in", account="nobody").status_code == 404
    assert control(two, "revoke_grant", account="nobody").status_code == 404
    assert control(two, "spend_quota", client_id="nobody").status_code == 400
    with pytest.raises(ValueError, match="exists already"):
        two.configure(account={"encoded_account_id": "acct-b"})
    with pytest.raises(LookupError):
        two.contacts(account="nobody")
    # Nothing was added by the refused calls.
    assert [item["encoded_account_id"] for item in two.accounts()] == [DEFAULT, "acct-b"]


def test_reset_keeps_accounts_and_applications_and_forgets_their_data(two):
    body = {"email_address": "bea@example.com", "list_memberships": [list_of(two, "acct-b")]}
    sign_up(two, two.issue_tokens(account="acct-b")["access_token"], body)
    two.sign_in("acct-b")
    two.reset()
    assert two.contacts(account="acct-b") == []
    assert two.state()["signed_in"] == DEFAULT
    assert account_of(two, two.issue_tokens(OTHER_CLIENT_ID, account="acct-b")["access_token"]) == "acct-b"


def test_configuring_the_default_account_leaves_added_accounts_alone(two):
    two.configure(account={"organization_name": "Renamed"}, lists=[{"list_id": LIST_A, "name": "Only"}])
    assert [item["name"] for item in two.lists()] == ["Only"]
    assert len(two.lists(account="acct-b")) == len(DEFAULT_LISTS)
    assert [item["organization_name"] for item in two.accounts()] == ["Renamed", "B Corp"]


def test_the_overview_page_shows_each_account_and_its_contacts(two):
    body = {"email_address": "bea@example.com", "list_memberships": [list_of(two, "acct-b")]}
    sign_up(two, two.issue_tokens(account="acct-b")["access_token"], body)
    page = requests.get(two.base_url + "/").text
    assert "<h2>Accounts</h2>" in page and "<td>B Corp</td>" in page
    assert "<h2>Contacts of acct-b (1)</h2>" in page and "<td>bea@example.com</td>" in page
    assert "<h2>Contacts (0)</h2>" in page  # the default account's


def test_the_command_line_adds_accounts_and_applications():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    options = vars(parser.parse_args(["--port", "0", "--account", "acct-b", "--app", "second-client-id:s3"]))
    sandbox = cli.sandbox_from_options(options)
    assert [item["encoded_account_id"] for item in sandbox.accounts()] == [DEFAULT, "acct-b"]
    assert sandbox.config()["apps"][1]["client_secret"] == "s3"
    banner = cli.describe(sandbox.start())
    sandbox.stop()
    assert "Account 'acct-b', lists:" in banner
    assert f"  {list_of(sandbox, 'acct-b')}  General Interest" in banner
    with pytest.raises(ValueError, match="CLIENT_ID:SECRET"):
        cli.sandbox_from_options(vars(parser.parse_args(["--port", "0", "--app", "no-secret"])))
