"""The sandbox's bulk activities: contacts_json_import, add_list_memberships, polling, the queue limit."""

from __future__ import annotations

import json
import uuid

import pytest

from cc_sync.sandbox import Sandbox
from rig.sandbox import LIST_A, LIST_B, LIST_C, PINNED, api, poll_until_done, sign_up

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


def test_import_treats_new_existing_and_unsubscribed_contacts_as_the_spec_says(sb):
    # createImportJSONActivity: a new contact gets implicit permission and opt_in_source Account; an existing
    # one "only updates the contact properties you include"; an unsubscribed one "cannot be added to a list"
    # (ActivityImport.status.cannot_add_to_list_count).
    token = sb.issue_tokens()["access_token"]
    sb.add_contact("old@example.com", first_name="Olga", last_name="Original", list_memberships=[LIST_B])
    sb.add_contact("gone@example.com", first_name="Gus", permission_to_send="unsubscribed")
    body = {
        "import_data": [
            {"email": "new@example.com"},
            {"email": "old@example.com", "first_name": "Changed"},
            {"email": "gone@example.com"},
        ],
        "list_ids": [LIST_A],
    }

    done = poll_until_done(sb, token, post_import(sb, token, body).json())

    assert done["status"]["cannot_add_to_list_count"] == 1 and done["activity_errors"] == []
    new, old, gone = (sb.contact(f"{name}@example.com") for name in ("new", "old", "gone"))
    assert new["email_address"]["permission_to_send"] == "implicit"
    assert new["email_address"]["opt_in_source"] == "Account" and new["create_source"] == "Account"
    assert new["list_memberships"] == [LIST_A]
    assert (old["first_name"], old["last_name"]) == ("Changed", "Original")  # only what was sent
    assert old["email_address"]["permission_to_send"] == "explicit"
    assert sorted(old["list_memberships"]) == sorted([LIST_A, LIST_B])
    assert gone["email_address"]["permission_to_send"] == "unsubscribed" and gone["list_memberships"] == []
    assert gone["first_name"] == "Gus"


@pytest.mark.slow
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
