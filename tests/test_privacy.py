"""Retention, erasure and the suppression list; extra CC fields and list choice per submission."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from responses import matchers

from cc_sync import privacy, sync, tasks
from cc_sync.models import Signup, Suppression
from cc_sync.schedules import BEAT_SCHEDULE, beat_schedule
from cc_sync.validators import canonical_email
from rig.constants import CONTACTS_URL

CUSTOM_FIELD_ID = "1618ae62-4752-11e9-9c8a-fa163e6b01c1"
VIP_LIST = "5b3e8e2a-4f0c-11ef-9f3e-fa163e56c9b0"


def make_signup(status=Signup.Status.SYNCED, days_ago=0, email="jane@example.com", **fields):
    signup = sync.enqueue_signup(
        email, first_name="Jane", last_name="Doe", phone_number="+1 555 0100", **fields
    )
    Signup.objects.filter(pk=signup.pk).update(
        status=status, updated_at=timezone.now() - timedelta(days=days_ago)
    )
    return Signup.objects.get(pk=signup.pk)


def test_synced_signups_past_retention_lose_personal_fields_but_keep_consent(db, cc_settings, published):
    cc_settings["RETENTION_DAYS"] = 30
    old = make_signup(days_ago=31, user_agent="Browser/1", client_ip="198.51.100.7")
    recent = make_signup(days_ago=29, email="recent@example.com")
    pending = make_signup(status=Signup.Status.PENDING, days_ago=60, email="pending@example.com")
    assert tasks.purge_personal_data.run() == 1
    old.refresh_from_db()
    assert (old.email, old.first_name, old.last_name, old.phone_number, old.consent_user_agent) == ("",) * 5
    assert old.personal_data_purged_at is not None
    assert old.email_hash == privacy.email_hash("jane@example.com")
    assert old.consent_given_at and old.consent_text and old.consent_ip_hash
    assert Signup.objects.get(pk=recent.pk).email == "recent@example.com"
    assert Signup.objects.get(pk=pending.pk).email == "pending@example.com"
    assert privacy.apply_retention() == 0  # already purged rows are left alone


def test_failed_signups_have_their_own_retention(db, cc_settings):
    cc_settings.update(RETENTION_DAYS=None, FAILED_RETENTION_DAYS=90)
    failed = make_signup(status=Signup.Status.FAILED, days_ago=91)
    make_signup(days_ago=400, email="kept@example.com")
    assert privacy.apply_retention() == 1
    assert Signup.objects.get(pk=failed.pk).email == ""


def test_retention_counts_from_the_sync_not_from_the_submission(
    connection, cc_api, cc_settings, published, django_capture_on_commit_callbacks
):
    cc_settings["RETENTION_DAYS"] = 30
    # Held for 40 days (say, waiting for a reconnect), then synced today: kept for another 30 days.
    held = make_signup(status=Signup.Status.PENDING, days_ago=40)
    cc_api.post(CONTACTS_URL, status=201, json={"contact_id": "c-1"})
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_signup.run(held.pk)
    assert Signup.objects.get(pk=held.pk).status == Signup.Status.SYNCED
    assert privacy.apply_retention() == 0
    assert Signup.objects.get(pk=held.pk).email == "jane@example.com"


def test_retention_of_a_failed_signup_counts_from_when_it_was_marked_failed(db, cc_settings):
    cc_settings["FAILED_RETENTION_DAYS"] = 90
    old = make_signup(status=Signup.Status.PENDING, days_ago=100)
    sync.mark_failed(Signup.objects.filter(pk=old.pk), "Given up by an admin.")
    assert privacy.apply_retention() == 0


def test_retention_runs_daily_from_beat():
    assert BEAT_SCHEDULE["cc_sync.purge_personal_data"]["schedule"] == 24 * 3600.0


def test_beat_entries_follow_the_tasks_to_their_own_queue():
    schedule = beat_schedule(queue="signups", sweep_interval=5)
    assert set(schedule) == set(BEAT_SCHEDULE)
    assert all(entry["options"] == {"queue": "signups"} for entry in schedule.values())
    assert schedule["cc_sync.sweep_due_signups"]["schedule"] == 5
    assert "options" not in BEAT_SCHEDULE["cc_sync.sweep_due_signups"]


def test_erase_deletes_the_persons_signups_and_suppresses_the_email(db, capsys):
    make_signup(email="jane@example.com")
    make_signup(status=Signup.Status.PENDING, email="jane@example.com")
    other = make_signup(email="other@example.com")
    call_command("cc_sync_erase", "Jane@Example.com")
    assert list(Signup.objects.values_list("pk", flat=True)) == [other.pk]
    suppression = Suppression.objects.get()
    assert suppression.reason == Suppression.Reason.ERASED
    assert suppression.email_hash == privacy.email_hash("jane@example.com")
    output = capsys.readouterr().out
    assert "2 signups deleted" in output
    assert "jane@example.com" not in output.lower()


def test_a_suppressed_email_is_never_sent_to_cc(connection, cc_api, published):
    signup = make_signup(status=Signup.Status.PENDING)
    privacy.suppress("jane@example.com")  # unsubscribed after submitting
    tasks.sync_signup.run(signup.pk)  # cc_api has nothing registered: any request would fail the test
    signup.refresh_from_db()
    assert signup.status == Signup.Status.FAILED
    assert signup.last_error_key == "suppressed"


def test_suppression_is_idempotent(db):
    privacy.suppress("a@example.com")
    privacy.suppress("A@example.com")
    assert Suppression.objects.count() == 1


def test_the_hash_key_setting_changes_every_hash(db, cc_settings):
    before = privacy.email_hash("a@example.com")
    cc_settings["HASH_KEY"] = "another-key"
    assert privacy.email_hash("a@example.com") != before


def test_custom_fields_and_street_address_reach_cc(connection, cc_api, published):
    signup = sync.enqueue_signup(
        "jane@example.com",
        custom_fields={CUSTOM_FIELD_ID: "Tesla S 2017"},
        street_address={"kind": "home", "city": "Springfield", "postal_code": "12345"},
    )
    cc_api.post(
        CONTACTS_URL,
        status=201,
        json={"contact_id": "c1"},
        match=[
            matchers.json_params_matcher(
                {
                    "custom_fields": [{"custom_field_id": CUSTOM_FIELD_ID, "value": "Tesla S 2017"}],
                    "street_addresses": [{"kind": "home", "city": "Springfield", "postal_code": "12345"}],
                },
                strict_match=False,
            )
        ],
    )
    tasks.sync_signup.run(signup.pk)
    assert Signup.objects.get(pk=signup.pk).status == Signup.Status.SYNCED


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"custom_fields": {CUSTOM_FIELD_ID: "x" * 256}}, "at most 255 characters"),
        ({"custom_fields": {f"{CUSTOM_FIELD_ID[:-2]}{n:02x}": "v" for n in range(51)}}, "at most 50"),
        (
            {"custom_fields": {"favourite_car": "Tesla"}},
            "'favourite_car' is not a Constant Contact custom field id",
        ),
        ({"street_address": {"kind": "castle", "city": "X"}}, "home, work or other"),
        ({"street_address": {"kind": "home", "city": "C" * 51}}, "at most 50 characters"),
        ({"street_address": {"kind": "home", "street": "S" * 256}}, "at most 255 characters"),
        (
            {"street_address": {"kind": "home", "street2": "Flat 3"}},
            "no 'street2'; use only kind, street, city",
        ),
        ({"street_address": {"kind": "home", "address_line1": "x"}}, "no 'address_line1'"),
        ({"custom_fields": {CUSTOM_FIELD_ID: "a\x00b"}}, "control characters"),
        ({"list_ids": ["Newsletter"]}, "'Newsletter' is not a Constant Contact list id"),
        ({"list_ids": [f"{VIP_LIST[:-2]}{n:02x}" for n in range(51)]}, "at most 50 lists"),
    ],
    ids=[
        "value-too-long",
        "too-many",
        "field-name-as-id",
        "bad-kind",
        "city-too-long",
        "street-too-long",
        "street2-not-in-spec",
        "other-unknown-key",
        "control-char",
        "list-name-as-id",
        "51-lists",
    ],
)
def test_extra_fields_beyond_ccs_limits_are_refused_saying_what_to_fix(db, extra, message):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        sync.enqueue_signup("jane@example.com", **extra)
    assert message in str(caught.value)
    assert Signup.objects.count() == 0


def test_custom_fields_of_the_model_take_ids_or_form_field_names(db):
    from django.core.exceptions import ValidationError

    from cc_sync.validators import validate_custom_fields

    validate_custom_fields(
        [{"custom_field_id": CUSTOM_FIELD_ID, "value": "Tesla"}, {"name": "favourite_car", "value": "Tesla"}]
    )
    for bad in (
        [{"custom_field_id": "favourite_car", "value": "Tesla"}],
        [{"custom_field_id": CUSTOM_FIELD_ID, "name": "favourite_car", "value": "Tesla"}],
        [{"value": "Tesla"}],
        [{"name": "", "value": "Tesla"}],
        [{"name": "favourite_car", "value": "T" * 256}],
        [{"name": f"field_{n}", "value": "v"} for n in range(51)],
        ["favourite_car"],
    ):
        with pytest.raises(ValidationError):
            validate_custom_fields(bad)


def test_a_form_gives_custom_fields_by_field_name_and_its_address_fields(rf, db, cc_settings):
    from django import forms

    from cc_sync.forms import SignupForm

    cc_settings["CUSTOM_FIELDS"] = {"favourite_car": CUSTOM_FIELD_ID}

    class CarForm(SignupForm):
        favourite_car = forms.CharField(required=False)
        city = forms.CharField(required=False)

    form = CarForm(data={"email": "j@example.com", "consent": "on", "favourite_car": "Tesla", "city": "Oslo"})
    assert form.is_valid(), form.errors
    fields = form.contact_fields()
    # By name: the id is read from CUSTOM_FIELDS when the signup is sent, so a fixed setting applies on Retry.
    assert fields["field_values"] == {"favourite_car": "Tesla"}
    assert "custom_fields" not in fields
    assert fields["street_address"] == {"kind": "home", "city": "Oslo"}
    too_long = CarForm(data={"email": "j@example.com", "consent": "on", "favourite_car": "T" * 300})
    assert not too_long.is_valid()
    assert "favourite_car" in too_long.errors


def choose_lists(request, cleaned_data):
    return [VIP_LIST] if cleaned_data["email"].endswith("@vip.example") else None


def test_the_list_chooser_decides_lists_per_submission(client, db, cc_settings):
    cc_settings["LIST_CHOOSER"] = "tests.test_privacy.choose_lists"
    client.post("/signup/", {"email": "a@vip.example", "consent": "on"})
    client.post("/signup/", {"email": "b@example.com", "consent": "on"})
    # Only lists picked for the submission are stored; the defaults are read when the signup is sent.
    assert dict(Signup.objects.values_list("email", "list_ids")) == {
        "a@vip.example": [VIP_LIST],
        "b@example.com": [],
    }


# -- one person, however the address is typed ----------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["anna@bücher.de", "anna@xn--bcher-kva.de", "ANNA@BÜCHER.DE", "\uff41\uff4e\uff4e\uff41@bücher.de"],
)
def test_erasing_any_form_of_an_idn_address_erases_and_suppresses_every_form(db, published, typed):
    sync.enqueue_signup("anna@bücher.de")
    sync.enqueue_signup("Anna@xn--bcher-kva.de")
    other = sync.enqueue_signup("anna@buecher.de")
    assert privacy.erase(typed) == 2
    assert list(Signup.objects.values_list("pk", flat=True)) == [other.pk]
    assert Suppression.objects.get().email_hash == privacy.email_hash("anna@xn--bcher-kva.de")
    for form in ("anna@bücher.de", "anna@xn--bcher-kva.de", "Anna@Bücher.de"):
        assert privacy.is_suppressed(form)
        assert sync.enqueue_signup(form) is None
    assert not privacy.is_suppressed("anna@buecher.de")


def test_a_suppression_stored_from_a_unicode_domain_before_matches_every_form(db, published):
    # Earlier versions hashed the address as typed: the Unicode form of the domain, lower-cased.
    Suppression.objects.create(email_hash=privacy.keyed_hash("anna@bücher.de"))
    assert privacy.is_suppressed("anna@xn--bcher-kva.de")
    assert privacy.is_suppressed("Anna@Bücher.de")
    assert sync.enqueue_signup("anna@xn--bcher-kva.de") is None
    privacy.erase("anna@xn--bcher-kva.de")
    assert Suppression.objects.count() == 2  # the old entry stays; the canonical one is added


def test_the_hash_of_a_plain_ascii_address_is_unchanged(db):
    # Stored signups and suppression entries were keyed on strip().lower(); they must keep matching.
    assert privacy.email_hash("  Jane.Doe@Example.COM ") == privacy.keyed_hash("jane.doe@example.com")
    assert canonical_email("Jane.Doe+news@Sub.Example.COM") == "jane.doe+news@sub.example.com"


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("anna@faß.de", "anna@xn--fa-hia.de"),  # IDNA 2008 keeps ß: faß.de is not fass.de
        ("anna@fass.de", "anna@fass.de"),
        (
            "\uff56\uff49\uff43\uff54\uff49\uff4d\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
            "victim@example.com",
        ),
        ("victim@例え.jp", "victim@xn--r8jz45g.jp"),
        ("no address at all ", "no address at all"),
        ("a@b_c.example", "a@b_c.example"),  # no IDNA form: keyed as typed
        ("", ""),
    ],
)
def test_the_canonical_form_of_an_address(typed, key):
    assert canonical_email(typed) == key


def test_a_form_signup_suppressed_between_its_insert_and_its_send_never_reaches_cc(
    client, connection, cc_api, published
):
    assert client.post("/signup/", {"email": "jane@example.com", "consent": "on"}).status_code == 302
    signup = Signup.objects.get()
    privacy.suppress("Jane@Example.com")  # unsubscribed elsewhere meanwhile
    tasks.sync_signup.run(signup.pk)  # cc_api has nothing registered: any request would fail the test
    signup.refresh_from_db()
    assert (signup.status, signup.last_error_key) == (Signup.Status.FAILED, "suppressed")


def test_on_other_databases_the_suppression_check_is_a_select_before_the_insert(db, published, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # MySQL, Oracle and older SQLite have no INSERT ... SELECT ... RETURNING the way cc_sync writes it.
    monkeypatch.setattr(connection, "vendor", "other")
    privacy.suppress("gone@example.com")
    with CaptureQueriesContext(connection) as queries:
        assert sync.enqueue_signup("gone@example.com") is None
        stored = sync.enqueue_signup("here@example.com")
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SELECT", "SELECT", "INSERT"]
    assert list(Signup.objects.values_list("pk", "email")) == [(stored.pk, "here@example.com")]
