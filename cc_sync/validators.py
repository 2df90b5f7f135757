"""Validation shared by the model, the form and :func:`cc_sync.sync.enqueue_signup`."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

# Bidirectional overrides and isolates let a name display as something else (and forge log lines).
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def validate_no_control_characters(value: str) -> None:
    """Refuse control characters, line/paragraph separators and bidi overrides."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise ValidationError(
                _("Remove the control characters from this field."), code="control_characters"
            )


def normalize_email(value: str, max_length: int) -> str:
    """Trim, lower-case and IDNA-encode the domain, then check syntax and CC's length limit.

    The local part is kept as typed (it is case-sensitive in theory) but must be ASCII: CC's
    sign_up_form has no documented SMTPUTF8 support, so refusing it here beats a rejection later.
    """
    value = value.strip()
    validate_no_control_characters(value)
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationError(_("Enter a valid email address."), code="invalid")
    if not local.isascii():
        raise ValidationError(
            _("Use only ASCII letters, digits and punctuation before the @."), code="non_ascii_local_part"
        )
    if len(domain) > 253:
        raise ValidationError(_("Enter a valid email address."), code="invalid")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValidationError(_("Enter a valid email address."), code="invalid") from None
    email = f"{local}@{domain}"
    if len(email) > max_length:
        raise ValidationError(
            _("Constant Contact accepts email addresses of at most %(limit)d characters."),
            code="max_length",
            params={"limit": max_length},
        )
    validate_email(email)
    return email


CUSTOM_FIELDS_MAX = 50
CUSTOM_FIELD_VALUE_MAX = 255
STREET_MAX = 255
ADDRESS_PART_MAX = 50
ADDRESS_KINDS = ("home", "work", "other")


def validate_custom_field_value(value: str) -> None:
    """One custom field value: at most 255 characters, no control characters."""
    if len(value) > CUSTOM_FIELD_VALUE_MAX:
        raise ValidationError(_("Constant Contact accepts at most 255 characters here."), code="max_length")
    validate_no_control_characters(value)


def validate_address_part(part: str, value: str) -> None:
    """One part of the street address: the street at most 255 characters, the others at most 50."""
    limit = STREET_MAX if part == "street" else ADDRESS_PART_MAX
    if len(value) > limit:
        raise ValidationError(
            _("Constant Contact accepts at most %(limit)d characters here."),
            code="max_length",
            params={"limit": limit},
        )
    validate_no_control_characters(value)


def validate_custom_fields(value: list[dict[str, str]]) -> None:
    """sign_up_form's ``custom_fields``: at most 50 of ``{custom_field_id, value}``."""
    if len(value) > CUSTOM_FIELDS_MAX:
        raise ValidationError({"custom_fields": _("Constant Contact takes at most 50 custom fields.")})
    for item in value:
        if not item.get("custom_field_id"):
            raise ValidationError({"custom_fields": _("Each custom field needs its Constant Contact id.")})
        try:
            validate_custom_field_value(str(item.get("value", "")))
        except ValidationError as err:
            raise ValidationError({"custom_fields": err.error_list}) from None


def validate_street_address(value: dict[str, str] | None) -> None:
    """sign_up_form's ``street_address``: a ``kind`` (home, work, other) and parts within CC's limits."""
    if not value:
        return
    if value.get("kind") not in ADDRESS_KINDS:
        raise ValidationError({"street_address": _("The address kind must be home, work or other.")})
    for part, text in value.items():
        try:
            validate_address_part(part, str(text))
        except ValidationError as err:
            raise ValidationError({"street_address": err.error_list}) from None
