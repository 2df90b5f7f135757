"""The sandbox's contact lists: GET /v3/contact_lists."""

from __future__ import annotations

import uuid

import requests

from cc_sync.sandbox import DEFAULT_LISTS
from rig.sandbox import LIST_A, LIST_B, bearer, lists_page, sign_up

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
