"""A stranger's submission never rewrites or re-subscribes a contact; each case costs what docs/signups.md says.

Every request to CC is registered with ``responses`` and must be made exactly as registered, so these tests
also count the requests of each case: new (1), existing (2 or 3), unsubscribed (2, then 3 after confirming).
"""

from __future__ import annotations

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.core import signing
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from responses import matchers

from cc_sync import confirmation, sync
from cc_sync.models import Connection, Signup
from rig.constants import ADD_LISTS_URL, API_URL, CONTACTS_URL, LIST_ID, SIGN_UP_URL

S = Signup.Status
CONTACT_ID = "ab7ab702-b935-11e9-8a58-fa163e6b01c1"
OTHER_LIST = "8c2b1a10-1f2e-11ef-9a5b-0242ac120002"
CUSTOM_FIELD_ID = "1618ae62-4752-11e9-9c8a-fa163e6b01c1"
# The sign_up_form body of the stranger fixture with its details: sent only with the person's own word.
STRANGERS_DETAILS = {
    "email_address": "anna@example.com",
    "first_name": "Mallory",
    "last_name": "Forger",
    "list_memberships": [LIST_ID],
}


@pytest.fixture
def stranger(db):
    """A submission naming an address CC already has, with other names."""
    return Signup.objects.create(
        email="anna@example.com",
        first_name="Mallory",
        last_name="Forger",
        email_hash="x" * 64,
        source_url="https://site.example/register/",
    )


def conflict(cc_api):
    cc_api.post(CONTACTS_URL, status=409, json=[{"error_key": "conflict", "error_message": "exists"}])


def lookup(cc_api, permission="explicit", lists=(), deleted=False, email="anna@example.com"):
    contact = {
        "contact_id": CONTACT_ID,
        "email_address": {"address": email, "permission_to_send": permission},
        "first_name": "Anna",
        "last_name": "Original",
        "list_memberships": list(lists),
    }
    if deleted:
        contact["deleted_at"] = "2026-01-01"
    cc_api.get(
        CONTACTS_URL,
        json={"contacts": [contact]},
        match=[
            matchers.query_param_matcher(
                {"email": "anna@example.com", "status": "all", "include": "list_memberships"}
            )
        ],
    )


def sign_up_form(cc_api, body, status=200):
    cc_api.post(
        SIGN_UP_URL,
        status=status,
        json={"contact_id": CONTACT_ID, "action": "updated"},
        match=[matchers.json_params_matcher(body)],
    )


def test_a_new_address_is_created_with_its_names_in_one_request(connection, cc_api, run):
    signup = Signup.objects.create(email="new@example.com", first_name="Nia", last_name="New")
    cc_api.post(
        CONTACTS_URL,
        status=201,
        json={"contact_id": CONTACT_ID},
        match=[
            matchers.json_params_matcher(
                {
                    "email_address": {"address": "new@example.com", "permission_to_send": "explicit"},
                    "create_source": "Contact",
                    "first_name": "Nia",
                    "last_name": "New",
                    "list_memberships": [LIST_ID],
                }
            )
        ],
    )
    signup = run(signup)
    assert (signup.status, signup.contact_id, signup.created_in_cc) == (S.SYNCED, CONTACT_ID, True)
    assert len(cc_api.calls) == 1


def test_a_stranger_only_adds_lists_to_an_existing_contact_and_never_its_names(
    connection, cc_api, stranger, run
):
    conflict(cc_api)
    lookup(cc_api, lists=[OTHER_LIST])
    cc_api.post(
        ADD_LISTS_URL,
        status=201,
        json={"activity_id": "a1", "state": "initialized"},
        match=[
            matchers.json_params_matcher({"source": {"contact_ids": [CONTACT_ID]}, "list_ids": [LIST_ID]})
        ],
    )
    signup = run(stranger)
    assert (signup.status, signup.contact_id, signup.created_in_cc) == (S.SYNCED, CONTACT_ID, False)
    assert not any("Mallory" in str(call.request.body or "") for call in cc_api.calls[1:])
    assert len(cc_api.calls) == 3


def test_an_existing_contact_already_on_the_lists_costs_no_write(connection, cc_api, stranger, run):
    conflict(cc_api)
    lookup(cc_api, lists=[LIST_ID.upper()])
    assert run(stranger).status == S.SYNCED
    assert len(cc_api.calls) == 2


def test_a_verified_submitter_updates_their_own_details(connection, cc_api, stranger, run):
    Signup.objects.filter(pk=stranger.pk).update(verified=True)
    stranger.refresh_from_db()
    conflict(cc_api)
    lookup(cc_api)
    sign_up_form(
        cc_api,
        STRANGERS_DETAILS,
    )
    assert run(stranger).status == S.SYNCED


def test_a_deleted_contact_is_restored_with_lists_only(connection, cc_api, stranger, run):
    conflict(cc_api)
    lookup(cc_api, permission="implicit", deleted=True)
    sign_up_form(cc_api, {"email_address": "anna@example.com", "list_memberships": [LIST_ID]})
    assert run(stranger).status == S.SYNCED


def test_an_unsubscribed_contact_is_held_and_asked_to_confirm_by_email(
    connection, cc_api, stranger, run, mailoutbox
):
    conflict(cc_api)
    lookup(cc_api, permission="unsubscribed")
    signup = run(stranger)
    assert signup.status == S.AWAITING_CONFIRMATION
    assert signup.confirmation_sent_at is not None
    assert len(cc_api.calls) == 2  # no write: still unsubscribed at CC
    (message,) = mailoutbox
    assert message.to == ["anna@example.com"]
    link = re.search(r"https://site\.example/\S+", message.body).group(0)
    assert link.startswith("https://site.example/")
    assert sync.sweep() == 0  # a held row is never queued by the sweeper


def _confirmation_path(signup):
    return reverse("cc_sync:confirm", args=[confirmation.make_token(signup)])


def test_the_link_confirms_on_post_only_and_then_resubscribes_exactly_once(
    connection, cc_api, stranger, run, client, published, mailoutbox
):
    conflict(cc_api)
    lookup(cc_api, permission="unsubscribed")
    signup = run(stranger)
    path = _confirmation_path(signup)

    page = client.get(path)  # a mail scanner following the link
    assert page.status_code == 200 and b"<form" in page.content
    assert Signup.objects.get(pk=signup.pk).status == S.AWAITING_CONFIRMATION

    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 200  # a second click confirms nothing more
    signup.refresh_from_db()
    assert signup.status == S.PENDING and signup.confirmed_at is not None
    assert [call["args"] for call in published] == [(signup.pk,)]

    cc_api.calls.reset()
    conflict(cc_api)
    lookup(cc_api, permission="unsubscribed")
    sign_up_form(
        cc_api,
        STRANGERS_DETAILS,
    )
    assert run(signup).status == S.SYNCED
    assert sum(call.request.url == SIGN_UP_URL for call in cc_api.calls) == 1


def test_a_forged_or_expired_link_confirms_nothing(connection, stranger, client):
    Signup.objects.filter(pk=stranger.pk).update(
        status=S.AWAITING_CONFIRMATION, confirmation_sent_at=timezone.now()
    )
    token = confirmation.make_token(stranger)
    assert client.post(reverse("cc_sync:confirm", args=[token + "x"])).status_code == 400
    other = Signup.objects.create(email="b@example.com", email_hash="y" * 64, status=S.AWAITING_CONFIRMATION)
    forged = signing.dumps(
        {"s": other.pk, "h": stranger.email_hash[:16]}, salt=confirmation.SALT, compress=True
    )
    assert client.post(reverse("cc_sync:confirm", args=[forged])).status_code == 400
    signed_at = signing.TimestampSigner(salt=confirmation.SALT).timestamp()
    with mock.patch(
        "django.core.signing.time.time", return_value=int(signing.b62_decode(signed_at)) + 8 * 86400
    ):
        assert client.post(reverse("cc_sync:confirm", args=[token])).status_code == 400
    assert not Signup.objects.filter(confirmed_at__isnull=False).exists()


def test_unconfirmed_signups_fail_after_the_confirmation_max_age(connection, stranger, cc_settings):
    cc_settings["CONFIRMATION_MAX_AGE"] = 3600
    sent = timezone.now() - timedelta(hours=2)
    Signup.objects.filter(pk=stranger.pk).update(status=S.AWAITING_CONFIRMATION, confirmation_sent_at=sent)
    assert sync.expire_unconfirmed() == 1
    stranger.refresh_from_db()
    assert (stranger.status, stranger.last_error_key) == (S.FAILED, "not_confirmed")


def test_double_opt_in_asks_every_new_signup_before_any_request(
    connection, cc_api, cc_settings, run, mailoutbox
):
    cc_settings["DOUBLE_OPT_IN"] = True
    signup = Signup.objects.create(email="new@example.com", source_url="https://site.example/register/")
    assert run(signup).status == S.AWAITING_CONFIRMATION
    assert len(mailoutbox) == 1 and len(cc_api.calls) == 0


def test_without_a_url_to_confirm_at_the_signup_fails_with_what_to_set(connection, cc_api, cc_settings, run):
    cc_settings["DOUBLE_OPT_IN"] = True
    signup = run(Signup.objects.create(email="new@example.com"))
    assert signup.status == S.FAILED
    assert "CONFIRM_URL_BASE" in signup.last_error


def test_confirmed_opt_in_accounts_create_through_sign_up_form(
    connection, cc_api, cc_settings, stranger, run
):
    cc_settings["CONFIRMED_OPT_IN_AT_CC"] = True
    cc_api.get(CONTACTS_URL, json={"contacts": []})
    sign_up_form(
        cc_api,
        STRANGERS_DETAILS,
        status=201,
    )
    assert run(stranger).status == S.SYNCED
    assert [call.request.method for call in cc_api.calls] == ["GET", "POST"]


def test_a_list_deleted_at_cc_holds_signups_until_another_is_chosen(
    connection, cc_api, cc_settings, run, published
):
    cc_settings["LIST_IDS"] = []
    Connection.objects.filter(slug=Connection.DEFAULT_SLUG).update(list_ids=[LIST_ID])
    signup = Signup.objects.create(email="new@example.com")
    cc_api.post(
        CONTACTS_URL, status=404, json=[{"error_key": "not_found", "error_message": "List not found"}]
    )
    cc_api.get(f"{API_URL}/contact_lists", json={"lists": [{"list_id": OTHER_LIST, "name": "Other"}]})
    signup = run(signup)
    assert signup.status == S.WAITING_LIST
    assert LIST_ID in signup.last_error
    assert Connection.load().missing_list_ids == [LIST_ID]
    assert sync.release_held_signups() == 0  # the chosen list is still the missing one

    Connection.objects.filter(slug=Connection.DEFAULT_SLUG).update(list_ids=[OTHER_LIST], missing_list_ids=[])
    assert sync.release_held_signups() == 1
    cc_api.calls.reset()
    cc_api.post(
        CONTACTS_URL,
        status=201,
        json={"contact_id": CONTACT_ID},
        match=[matchers.json_params_matcher({"list_memberships": [OTHER_LIST]}, strict_match=False)],
    )
    assert run(signup).status == S.SYNCED


def test_a_released_hold_gets_a_fresh_deadline(connection, cc_api, run):
    long_ago = timezone.now() - timedelta(days=30)
    signup = Signup.objects.create(
        email="new@example.com", status=S.WAITING_RECONNECT, created_at=long_ago, deadline_at=long_ago
    )
    assert sync.release_held_signups() == 1
    cc_api.post(CONTACTS_URL, status=503, json={})
    assert run(signup).status == S.PENDING  # retried, not failed


def test_fixing_a_custom_field_setting_and_retrying_sends_the_new_id(connection, cc_api, cc_settings, run):
    cc_settings["CUSTOM_FIELDS"] = {"favourite_colour": "colour"}  # a field *name*: CC refuses it
    signup = sync.enqueue_signup("new@example.com", field_values={"favourite_colour": "teal"})
    cc_api.post(CONTACTS_URL, status=400, json=[{"error_key": "validation", "error_message": "not a uuid"}])
    assert run(signup).status == S.FAILED

    cc_settings["CUSTOM_FIELDS"] = {"favourite_colour": CUSTOM_FIELD_ID}
    assert sync.retry_now(Signup.objects.filter(pk=signup.pk)) == (1, 0)
    cc_api.calls.reset()
    cc_api.post(
        CONTACTS_URL,
        status=201,
        json={"contact_id": CONTACT_ID},
        match=[
            matchers.json_params_matcher(
                {"custom_fields": [{"custom_field_id": CUSTOM_FIELD_ID, "value": "teal"}]}, strict_match=False
            )
        ],
    )
    assert run(signup).status == S.SYNCED


def test_default_lists_are_read_when_sent_not_stored_at_submission(connection, cc_api, cc_settings, run):
    signup = sync.enqueue_signup("new@example.com")
    assert signup.list_ids == []
    cc_settings["LIST_IDS"] = [OTHER_LIST]
    cc_api.post(
        CONTACTS_URL,
        status=201,
        json={"contact_id": CONTACT_ID},
        match=[matchers.json_params_matcher({"list_memberships": [OTHER_LIST]}, strict_match=False)],
    )
    assert run(signup).status == S.SYNCED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"list_ids": ["Newsletter"]}, "list_ids"),
        ({"list_ids": [f"00000000-0000-0000-0000-{n:012d}" for n in range(51)]}, "list_ids"),
        ({"custom_fields": {"favourite_colour": "teal"}}, "custom_fields"),
    ],
)
def test_enqueue_refuses_ids_cc_would_refuse_and_stores_nothing(db, kwargs, field):
    with pytest.raises(ValidationError) as raised:
        sync.enqueue_signup("new@example.com", **kwargs)
    assert field in raised.value.message_dict
    assert not Signup.objects.exists()


def test_admin_actions_leave_rows_a_worker_holds_alone(db):
    now = timezone.now()
    held = Signup.objects.create(
        email="a@example.com", status=S.SYNCING, lease_expires_at=now + timedelta(minutes=1)
    )
    Signup.objects.create(email="b@example.com", status=S.FAILED)
    assert sync.retry_now(Signup.objects.all()) == (1, 1)
    assert sync.mark_failed(Signup.objects.all(), "by hand") == (1, 1)
    held.refresh_from_db()
    assert held.status == S.SYNCING


def test_enqueue_signup_stores_a_full_width_address_as_the_form_does(db):
    signup = sync.enqueue_signup("ａｎｎａ@ｅｘａｍｐｌｅ.com")
    assert signup.email == "anna@example.com"


@pytest.mark.parametrize(
    "answer", [{}, {"contacts": None}, {"contacts": []}], ids=["no-list", "null", "empty"]
)
def test_a_lookup_that_proves_nothing_after_a_409_is_retried_never_sent_to_sign_up_form(
    connection, cc_api, stranger, run, answer
):
    conflict(cc_api)
    cc_api.get(CONTACTS_URL, json=answer)  # cc_api fails the test on a sign_up_form it was not told of
    signup = run(stranger)
    assert signup.status == S.PENDING
    assert "contact" in signup.last_error
