"""The public signup form, enqueue_signup() called directly, and the example project's /register/ page."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError

from cc_sync import sync, tasks
from cc_sync.conf import DEFAULTS
from cc_sync.forms import SignupForm
from cc_sync.models import Signup
from cc_sync.views import SignupView
from rig.cc import make_connection

EXAMPLE_TEMPLATES = Path(__file__).resolve().parent.parent / "example_project" / "templates"
VALID = {"email": "jane.doe@example.com", "first_name": "Jane", "last_name": "Doe", "consent": "on"}
# 40 "ü" make a 45-character address whose punycode form ("xn--...") is 51 characters long.
IDN_TOO_LONG = "a@" + "ü" * 40 + ".de"

INVALID_FORM_INPUTS = [
    ({"email": "a" * 39 + "@example.com"}, "email"),
    ({"first_name": "J" * 51}, "first_name"),
    ({"last_name": "D" * 51}, "last_name"),
    ({"first_name": "Ja\x00ne"}, "first_name"),
    ({"first_name": "Jane\nBcc: victim@example.com"}, "first_name"),
    ({"last_name": "Do\te"}, "last_name"),
    ({"last_name": "\u202eeoD"}, "last_name"),
    ({"first_name": "Ja\u2028ne"}, "first_name"),
    ({"consent": None}, "consent"),
    ({"email": "not-an-email"}, "email"),
    ({"email": "jane@"}, "email"),
    ({"email": "@example.com"}, "email"),
    ({"email": "jane doe@example.com"}, "email"),
    ({"email": "jöe@example.com"}, "email"),
    ({"email": IDN_TOO_LONG}, "email"),
]
INVALID_IDS = [
    "email-51-chars",
    "first-name-51",
    "last-name-51",
    "nul-in-name",
    "newline-in-name",
    "tab-in-name",
    "bidi-override",
    "line-separator",
    "no-consent",
    "no-at",
    "no-domain",
    "no-local-part",
    "space-in-email",
    "non-ascii-local-part",
    "idn-over-50-once-encoded",
]


def form_data(**overrides: str | None) -> dict[str, str]:
    data = {**VALID, **overrides}
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def example_site(settings):
    settings.ROOT_URLCONF = "example_project.urls"
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [*templates[0]["DIRS"], EXAMPLE_TEMPLATES]
    settings.TEMPLATES = templates


# -- the form at /signup/ ---------------------------------------------------------------------------


def test_signup_page_shows_the_form_with_consent_text(client, db):
    response = client.get("/signup/")
    assert response.status_code == 200
    content = response.content.decode()
    for name in ("email", "first_name", "last_name", "consent"):
        assert f'name="{name}"' in content
    assert DEFAULTS["CONSENT_TEXT"] in content
    assert 'maxlength="50"' in content


def test_valid_signup_is_saved_normalised_and_redirects_to_thanks(
    client, db, published, django_capture_on_commit_callbacks
):
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/signup/",
            form_data(email="  Jane.Doe@Example.COM  ", first_name="  Jane ", last_name=" Doe"),
        )
    assert response.status_code == 302
    assert response["Location"] == "/signup/thanks/"
    signup = Signup.objects.get()
    assert signup.status == Signup.Status.PENDING
    assert signup.email == "Jane.Doe@example.com"
    assert (signup.first_name, signup.last_name) == ("Jane", "Doe")
    assert signup.list_ids == []  # the default lists are read when the signup is sent
    assert signup.verified is False
    assert signup.consent_text == DEFAULTS["CONSENT_TEXT"]
    assert signup.consent_version == "1"
    assert before <= signup.consent_given_at <= timezone.now()
    assert signup.source_url == "http://testserver/signup/"
    assert signup.attempts == 0
    assert signup.next_attempt_at <= timezone.now()
    assert signup.deadline_at > timezone.now() + timedelta(days=2)
    assert client.get("/signup/thanks/").content.decode().count("Thank you for signing up!") == 1


def test_consent_text_and_version_come_from_settings(client, db, cc_settings, published):
    cc_settings["CONSENT_TEXT"] = "Send me the monthly letter."
    cc_settings["CONSENT_VERSION"] = "2024-05"
    assert "Send me the monthly letter." in client.get("/signup/").content.decode()
    client.post("/signup/", form_data())
    signup = Signup.objects.get()
    assert (signup.consent_text, signup.consent_version) == ("Send me the monthly letter.", "2024-05")


def test_a_form_signup_stores_no_default_lists_so_the_current_choice_applies_when_sent(
    client, db, cc_settings, published
):
    chosen = "5b3e8e2a-4f0c-11ef-9f3e-fa163e56c9b0"
    cc_settings["LIST_IDS"] = []
    make_connection(list_ids=[chosen])
    client.post("/signup/", form_data())
    assert Signup.objects.get().list_ids == []
    assert sync.default_list_ids() == [chosen]


class VerifiedSignupView(SignupView):
    verified = True


def test_a_view_behind_login_marks_its_signups_verified(rf, db, published):
    request = rf.post("/members/signup/", form_data())
    response = VerifiedSignupView.as_view()(request)
    assert response.status_code == 302
    assert Signup.objects.get().verified is True
    assert SignupView.verified is False


def test_sync_task_is_published_only_after_commit(client, db, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/signup/", form_data())
    assert response.status_code == 302
    signup = Signup.objects.get()
    assert published == []
    assert len(callbacks) == 1
    # Marked as queued in the INSERT: a publish that works needs no UPDATE afterwards.
    marked_at = signup.enqueued_at
    assert marked_at is not None

    with CaptureQueriesContext(connection) as queries:
        callbacks[0]()
    assert len(published) == 1
    assert published[0]["task"] == "cc_sync.sync_signup"
    assert published[0]["args"] == (signup.pk,)
    assert published[0]["retry"] is False
    assert queries.captured_queries == []
    signup.refresh_from_db()
    assert signup.enqueued_at == marked_at


def test_a_signup_costs_the_visitor_one_sql_statement_as_a_plain_save_does(
    client, db, published, django_capture_on_commit_callbacks
):
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup/", form_data())
    assert response.status_code == 302
    assert len(published) == 1
    statements = [query["sql"] for query in queries.captured_queries]
    # The INSERT carries the suppression check; no transaction of its own, no UPDATE after the publish.
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT") and "NOT EXISTS" in statements[0], statements


def test_idn_domain_is_stored_punycode_encoded(client, db, published):
    response = client.post("/signup/", form_data(email="Juergen@Bücher.Example"))
    assert response.status_code == 302
    assert Signup.objects.get().email == "Juergen@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("anna@faß.de", "anna@xn--fa-hia.de"),  # IDNA 2008 / UTS 46: not fass.de, another domain
        ("Anna@Faß.DE", "Anna@xn--fa-hia.de"),
        ("jane@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0ecom", "jane@example.com"),  # full-width domain
        ("\uff4a\uff41\uff4e\uff45\uff20example.com", "jane@example.com"),  # full-width local part and @
        ("jane@xn--bcher-kva.de", "jane@xn--bcher-kva.de"),
    ],
    ids=["eszett", "eszett-upper", "full-width-domain", "full-width-local", "a-label"],
)
def test_addresses_are_stored_in_their_nfkc_and_idna_2008_form(client, db, published, typed, stored):
    assert client.post("/signup/", form_data(email=typed)).status_code == 302
    assert Signup.objects.get().email == stored


def test_enqueue_signup_stores_eszett_domains_with_idna_2008_like_the_form(db, published):
    assert sync.enqueue_signup("anna@faß.de").email == "anna@xn--fa-hia.de"


@pytest.mark.parametrize("typed", ["jane@xn--zz.de", "jane@a_b.example", "jane@-bad.example"])
def test_domains_without_a_valid_idna_2008_form_are_refused(client, db, published, typed):
    response = client.post("/signup/", form_data(email=typed))
    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert Signup.objects.count() == 0


@pytest.mark.parametrize(("overrides", "field"), INVALID_FORM_INPUTS, ids=INVALID_IDS)
def test_invalid_input_gives_form_error_and_stores_and_publishes_nothing(
    client, db, published, django_capture_on_commit_callbacks, overrides, field
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/signup/", form_data(**overrides))
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == [field]
    assert field in response.content.decode()
    assert 'class="errorlist' in response.content.decode()
    assert Signup.objects.count() == 0
    assert callbacks == []
    assert published == []


def test_email_of_exactly_50_characters_is_accepted(client, db, published):
    email = "a" * 38 + "@example.com"
    assert len(email) == 50
    assert client.post("/signup/", form_data(email=email)).status_code == 302
    assert Signup.objects.get().email == email


def test_broker_down_still_redirects_and_keeps_row_pending(
    client, db, monkeypatch, django_capture_on_commit_callbacks
):
    attempts = []

    def unreachable(*args, **kwargs):
        attempts.append(args)
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(tasks.sync_signup, "apply_async", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup/", form_data())
    assert response.status_code == 302
    assert response["Location"] == "/signup/thanks/"
    assert len(attempts) == 1
    signup = Signup.objects.get()
    assert signup.status == Signup.Status.PENDING
    assert signup.enqueued_at is None


# -- enqueue_signup() called directly ---------------------------------------------------------------

INVALID_ENQUEUE_INPUTS = [
    ({"email": "a" * 39 + "@example.com"}, "email"),
    ({"email": IDN_TOO_LONG}, "email"),
    ({"first_name": "J" * 51}, "first_name"),
    ({"last_name": "D" * 51}, "last_name"),
    ({"first_name": "Ja\x00ne"}, "first_name"),
    ({"first_name": "Jane\nBcc: victim@example.com"}, "first_name"),
    ({"last_name": "\u202eeoD"}, "last_name"),
    ({"email": "not-an-email"}, "email"),
    ({"email": "jane@"}, "email"),
    ({"email": "jöe@example.com"}, "email"),
]


@pytest.mark.parametrize(
    ("overrides", "field"),
    INVALID_ENQUEUE_INPUTS,
    ids=[
        "email-51-chars",
        "idn-over-50-once-encoded",
        "first-name-51",
        "last-name-51",
        "nul-in-name",
        "newline-in-name",
        "bidi-override",
        "no-at",
        "no-domain",
        "non-ascii-local-part",
    ],
)
def test_enqueue_signup_refuses_invalid_input_and_stores_nothing(
    db, published, django_capture_on_commit_callbacks, overrides, field
):
    arguments = {"email": VALID["email"], "first_name": "Jane", "last_name": "Doe", **overrides}
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as raised:
        sync.enqueue_signup(**arguments)
    assert field in raised.value.message_dict
    assert Signup.objects.count() == 0
    assert published == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"first_name": "J" * 51}, "first_name"),
        ({"street_address": {"kind": "castle", "city": "Oslo"}}, "street_address"),
        ({"consent_version": "v" * 51}, "consent_version"),
    ],
    ids=["name-not-validated-by-the-caller", "address-kind", "consent-version"],
)
def test_enqueue_signup_checks_every_field_the_caller_did_not_say_it_validated(
    db, published, overrides, field
):
    with pytest.raises(ValidationError) as raised:
        sync.enqueue_signup(VALID["email"], **overrides, validated_fields=["email", "last_name"])
    assert field in raised.value.message_dict
    assert Signup.objects.count() == 0


def test_a_valid_form_names_the_fields_it_validated_with_the_model(db):
    form = SignupForm(data=form_data())
    assert form.is_valid(), form.errors
    assert form.validated_fields() == ["email", "first_name", "last_name"]


def test_enqueue_signup_stores_idn_domain_punycode_encoded_like_the_form(db, published):
    signup = sync.enqueue_signup("Juergen@Bücher.Example")
    assert Signup.objects.get(pk=signup.pk).email == "Juergen@xn--bcher-kva.example"


def test_enqueue_signup_saves_and_publishes_after_commit(db, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        signup = sync.enqueue_signup("reader@example.com", first_name="Ann", source_url="https://x.example/p")
    assert published == []
    for callback in callbacks:
        callback()
    assert published == [
        {
            "task": "cc_sync.sync_signup",
            "args": (signup.pk,),
            "countdown": None,
            "queue": None,
            "retry": False,
        }
    ]
    stored = Signup.objects.get()
    assert (stored.email, stored.first_name, stored.list_ids) == ("reader@example.com", "Ann", [])
    assert stored.source_url == "https://x.example/p"
    assert stored.consent_given_at is not None


# -- the example project --------------------------------------------------------------------------------


def test_example_register_page_shows_the_signup_fields(client, db, example_site):
    response = client.get("/register/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Register for our newsletter" in content
    for name in ("email", "first_name", "last_name", "consent"):
        assert f'name="{name}"' in content


def test_example_register_post_lands_on_done_page(client, db, example_site, published):
    response = client.post("/register/", form_data(email="Reader@Example.org"), follow=True)
    assert response.redirect_chain == [("/register/done/", 302)]
    assert "Thank you for registering!" in response.content.decode()
    signup = Signup.objects.get()
    assert signup.email == "Reader@example.org"
    assert signup.source_url == "http://testserver/register/"


def test_example_register_invalid_post_stays_on_form(client, db, example_site, published):
    response = client.post("/register/", form_data(consent=None))
    assert response.status_code == 200
    assert "Please tick the box to sign up." in response.content.decode()
    assert Signup.objects.count() == 0


def test_surrounding_whitespace_in_names_is_trimmed_not_refused(client, db, published):
    response = client.post("/signup/", form_data(first_name="\tJane ", last_name="Doe\n"))
    assert response.status_code == 302
    assert Signup.objects.values_list("first_name", "last_name").get() == ("Jane", "Doe")


class AllFieldsSignupForm(SignupForm):
    class Meta:
        model = Signup
        fields = "__all__"


def test_a_form_subclass_without_named_fields_says_which_setting_to_fix():
    # Django turns fields = "__all__" (or Meta.exclude) into Meta.fields = None: a clear error, not a TypeError.
    form = AllFieldsSignupForm()
    form.cleaned_data = {"email": "jane.doe@example.com"}
    with pytest.raises(ImproperlyConfigured, match=r"AllFieldsSignupForm\.Meta\.fields must name"):
        form.contact_fields()
