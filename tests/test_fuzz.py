"""A property-based fuzz of the public form: 10,000 hostile submissions, no 500, nothing invalid kept.

And the properties of the email key: one key per address however it is typed, never an exception.
"""

from __future__ import annotations

import os
import unicodedata

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cc_sync import privacy
from cc_sync.models import EMAIL_MAX_LENGTH, Signup
from cc_sync.validators import canonical_email, normalize_email

# Property tests: thousands of generated inputs each; `pytest -m fuzz` runs them (the README's test command too).
pytestmark = pytest.mark.fuzz

BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}

local_parts = st.one_of(
    st.from_regex(r"[a-zA-Z0-9._%+-]{1,40}", fullmatch=True),
    st.text(min_size=0, max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
)
domains = st.one_of(
    st.sampled_from(
        ["example.com", "EXAMPLE.COM", "bücher.de", "xn--bcher-kva.de", "例え.jp", "a.b", "localhost"]
    ),
    st.from_regex(r"([a-z0-9-]{1,20}\.){1,4}[a-z]{2,6}", fullmatch=True),
    st.text(min_size=0, max_size=60),
    st.builds(lambda n: ".".join(["a"] * n), st.integers(1, 1000)),
)
valid_emails = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}", fullmatch=True),
    st.sampled_from(["example.com", "Example.ORG", "bücher.de", "mail.co.uk"]),
)
plain_names = st.from_regex(r"[A-Za-zÀ-ÿ' -]{0,40}", fullmatch=True)
emails = st.one_of(
    valid_emails,
    valid_emails,
    st.builds(
        lambda local, domain, pad: f"{pad}{local}@{domain}{pad}",
        local_parts,
        domains,
        st.sampled_from(["", " ", "\t", "\n"]),
    ),
    st.text(max_size=400),
    st.just("a" * 10_000 + "@example.com"),
)
names = st.one_of(
    plain_names,
    plain_names,
    st.text(max_size=60),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Lo", "Mn"]), max_size=60),
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            "Robert'); DROP TABLE cc_sync_signup;--",
            "\u202egnp.exe",
            "Jane\r\nBcc: victim@example.com",
            "x" * 51,
            "ok",
        ]
    ),
)


def control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI for c in text)


def acceptable(signup: Signup) -> bool:
    """What CC's sign_up_form takes and we promised: the invariant of every stored row."""
    local, _, domain = signup.email.rpartition("@")
    return (
        0 < len(signup.email) <= 50
        and signup.email == signup.email.strip()
        and local.isascii()
        and domain.isascii()
        and domain == domain.lower()
        and all(len(value) <= 50 and not control(value) for value in (signup.first_name, signup.last_name))
        and not control(signup.email)
    )


@pytest.mark.django_db
@settings(
    max_examples=int(os.environ.get("CC_SYNC_FUZZ_EXAMPLES", 10_000)),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    email=emails,
    first_name=names,
    last_name=names,
    consent=st.sampled_from(["on", "on", "on", "", "yes", "0"]),
    extra=st.dictionaries(
        st.sampled_from(["status", "contact_id", "list_ids", "attempts", "x" * 100, "website"]),
        st.text(max_size=20),
        max_size=3,
    ),
    oversized=st.sampled_from([0] * 30 + [70_000]),  # past MAX_REQUEST_BYTES (16 KB)
)
def test_hostile_submissions_never_500_and_never_store_anything_invalid(
    client,
    published,
    django_capture_on_commit_callbacks,
    email,
    first_name,
    last_name,
    consent,
    extra,
    oversized,
):
    Signup.objects.all().delete()
    published.clear()
    data = {"email": email, "first_name": first_name, "last_name": last_name, **extra}
    if consent:
        data["consent"] = consent
    if oversized:
        data["padding"] = "p" * oversized
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup/", data)
    stored = list(Signup.objects.all())
    event(f"HTTP {response.status_code}, {len(stored)} stored")
    assert response.status_code in (200, 302, 400, 413), response.status_code
    if response.status_code == 302:
        assert len(stored) <= 1  # 0 for the honeypot
        assert all(acceptable(signup) for signup in stored), [s.__dict__ for s in stored]
        assert all(signup.status == Signup.Status.PENDING and signup.contact_id == "" for signup in stored)
        # Stored, limited and erased under one key: the hash of what was typed is the hash of what is stored.
        assert all(
            signup.email_hash == privacy.email_hash(email) == privacy.email_hash(signup.email)
            for signup in stored
        )
        assert [call["args"] for call in published] == [(signup.pk,) for signup in stored]
    else:
        assert stored == []
        assert published == []
        if response.status_code == 200:
            assert response.context["form"].errors


FAST = settings(
    max_examples=int(os.environ.get("CC_SYNC_FUZZ_EXAMPLES", 10_000)) // 5, deadline=None, derandomize=True
)
full_width = st.text(alphabet=st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E), max_size=20)


@FAST
@given(text=st.one_of(st.text(max_size=300), emails, full_width))
def test_the_email_key_never_raises_and_is_stable(text):
    key = canonical_email(text)
    assert key == key.lower()
    assert canonical_email(key) == key


@FAST
@given(text=st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=120))
def test_the_key_of_ascii_text_is_what_earlier_versions_hashed(text):
    # Existing hashes (signups, suppression entries) were of strip().lower(); ASCII keys must not move.
    assert canonical_email(text) == text.strip().lower()


@FAST
@given(email=emails, pad=st.sampled_from(["", " ", "\u3000"]), upper=st.booleans())
def test_every_stored_spelling_has_the_key_of_what_was_typed(email, pad, upper):
    typed = f"{pad}{email.upper() if upper else email}{pad}"
    try:
        stored = normalize_email(typed, EMAIL_MAX_LENGTH)
    except Exception as err:  # refused input: only ValidationError may come out
        from django.core.exceptions import ValidationError

        assert isinstance(err, ValidationError), repr(err)
        return
    assert canonical_email(stored) == canonical_email(typed)
    if not upper:  # ("ß".upper() is "SS": another address)
        assert canonical_email(typed) == canonical_email(email)
    assert stored.isascii()
