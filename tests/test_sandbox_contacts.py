"""The sandbox's contact endpoints: GET/POST /v3/contacts, GET/PUT /v3/contacts/{id}, sign_up_form,
and seeding contacts."""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from cc_sync.sandbox import DEFAULT_LISTS, Sandbox
from rig.sandbox import FIELD_ID, LIST_A, LIST_B, api, bearer, find, new_contact, sign_up

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
