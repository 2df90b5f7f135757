"""Validation shared by the model, the form and :func:`cc_sync.sync.enqueue_signup`."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import idna
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

# Bidirectional overrides and isolates let a name display as something else (and forge log lines).
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
# RFC 5321: a domain is at most 255 octets on the wire, 253 characters written out.
_DOMAIN_MAX = 253


def validate_no_control_characters(value: str) -> None:
    """Refuse control characters, line/paragraph separators and bidi overrides."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise ValidationError(
                _("Remove the control characters from this field."), code="control_characters"
            )


# One signup spells its address several times (the form, the limit's key, the hash, the suppression
# check); IDNA encoding is the costly part, and domains repeat.
@functools.lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain's ASCII (A-label) form under IDNA 2008 with UTS #46 mapping, lower-case.

    UTS #46 maps full-width letters, upper case and ideographic full stops, and keeps "ß" and "ς" (IDNA 2003,
    Python's ``"idna"`` codec, turned ``faß.de`` into ``fass.de``: another domain). Raises ``UnicodeError``
    (``idna.IDNAError``) for a domain that has no valid A-label form.
    """
    if len(domain) > _DOMAIN_MAX:
        raise idna.IDNAError("Domain too long")
    return idna.encode(domain, uts46=True).decode("ascii").lower()


def _nfkc(value: str) -> str:
    """NFKC-normalised and trimmed: full-width letters and "＠" become the ASCII ones they stand for."""
    return unicodedata.normalize("NFKC", value).strip()


def normalize_email(value: str, max_length: int) -> str:
    """Trim, NFKC-normalise and IDNA-encode the domain (IDNA 2008), then check syntax and CC's length limit.

    NFKC turns compatibility forms (full-width ``ｊａｎｅ``) into the letters they stand for, so one address
    is stored one way. The local part keeps its case (it is case-sensitive in theory) but must be ASCII:
    CC's sign_up_form has no documented SMTPUTF8 support, so refusing it here beats a rejection later.
    """
    value = _nfkc(value)
    validate_no_control_characters(value)
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationError(_("Enter a valid email address."), code="invalid")
    if not local.isascii():
        raise ValidationError(
            _("Use only ASCII letters, digits and punctuation before the @."), code="non_ascii_local_part"
        )
    try:
        domain = ascii_domain(domain)
    except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
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


def canonical_email(value: str) -> str:
    """The one key of an address, for hashes and limits: as stored (NFKC, IDNA 2008 domain), lower-cased.

    Every spelling of one address (case, full-width letters, the Unicode or ``xn--`` form of the domain,
    surrounding spaces) gives the same key. Never raises: text that is no valid address is keyed as
    ``strip().lower()`` of its NFKC form. For a plain ASCII address the key is exactly
    ``value.strip().lower()``, the key of earlier versions, so stored hashes and suppression entries keep
    matching.
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    try:
        local, sep, domain = _nfkc(text).rpartition("@")
        if sep and domain:
            try:
                domain = ascii_domain(domain)
            except (UnicodeError, ValueError):
                pass  # no valid A-label form: keyed as typed
        return f"{local}{sep}{domain}".lower()
    except Exception:  # a key must never break the caller (a form, erasure)
        return text.strip().lower()


# CC's ids are UUIDs (``format: uuid`` in its OpenAPI contract, build 3.0.161), written with hyphens.
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
UUID_EXAMPLE = "07936f78-662a-11eb-af0a-fa163e56c9b0"
LIST_IDS_MAX = 50
_LIST_ID_HINT = _(
    "copy the list_id from Constant Contact's API (GET /v3/contact_lists), or choose the lists on the "
    "admin's Constant Contact connection page"
)
_CUSTOM_FIELD_ID_HINT = _(
    "copy the custom_field_id from Constant Contact's API (GET /v3/contact_custom_fields); "
    "CUSTOM_FIELDS maps a form field's name to that id"
)


def validate_uuid(value: Any, what: str, hint: str = "") -> str:
    """Return ``value`` as a lower-case UUID, or raise a ValidationError saying what ``what`` should be.

    ``what`` names the id in the message ("list id"); ``hint`` says where to find a right one.
    """
    text = value.strip() if isinstance(value, str) else None
    if text is None or not _UUID.fullmatch(text):
        message = _("%(value)r is not a Constant Contact %(what)s (a UUID such as %(example)s)")
        params = {"value": value, "what": what, "example": UUID_EXAMPLE}
        if hint:
            message = _(
                "%(value)r is not a Constant Contact %(what)s (a UUID such as %(example)s); %(hint)s."
            )
            params["hint"] = hint
        raise ValidationError(message, code="invalid_uuid", params=params)
    return text.lower()


def validate_list_ids(ids: Iterable[str]) -> list[str]:
    """1–50 CC list ids (UUIDs), lower-cased and without duplicates, in the order given.

    CC's ``list_memberships`` is ``minItems: 1``, ``maxItems: 50`` of ``format: uuid``; a list outside that
    is refused by CC for every signup, so it is refused here with a message saying what to fix.
    """
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ValidationError(
            _("List ids must be a list of UUIDs such as [%(example)s], not %(value)r."),
            code="invalid_list_ids",
            params={"example": f'"{UUID_EXAMPLE}"', "value": ids},
        )
    result: list[str] = []
    errors: list[ValidationError] = []
    for item in ids:
        try:
            list_id = validate_uuid(item, str(_("list id")), str(_LIST_ID_HINT))
        except ValidationError as err:
            errors.append(err)
            continue
        if list_id not in result:
            result.append(list_id)
    if errors:
        raise ValidationError(errors)
    if not result:
        raise ValidationError(_("Choose at least one Constant Contact list."), code="no_list_ids")
    if len(result) > LIST_IDS_MAX:
        raise ValidationError(
            _("Constant Contact takes at most %(limit)d lists per contact; %(count)d are chosen."),
            code="too_many_list_ids",
            params={"limit": LIST_IDS_MAX, "count": len(result)},
        )
    return result


def validate_custom_field_id(value: Any) -> str:
    """A CC custom field id (a UUID), lower-cased; a field *name* is refused with what to do instead."""
    return validate_uuid(value, str(_("custom field id")), str(_CUSTOM_FIELD_ID_HINT))


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


#: The keys of sign_up_form's ``street_address`` (``createOrUpdateContact_request_street_address``).
ADDRESS_KEYS = ("kind", "street", "city", "state", "postal_code", "country")
#: The keys of one ``Signup.custom_fields`` item besides ``value``: a CC id, or a form field's name that
#: ``CC_SYNC["CUSTOM_FIELDS"]`` maps to an id when the signup is sent.
CUSTOM_FIELD_KEYS = ("custom_field_id", "name")
FIELD_NAME_MAX = 255


def _custom_fields_error(message: Any, **params: Any) -> ValidationError:
    return ValidationError({"custom_fields": ValidationError(message, code="invalid", params=params or None)})


def validate_custom_fields(value: list[dict[str, str]]) -> None:
    """``Signup.custom_fields``: at most 50 items of ``{custom_field_id, value}`` or ``{name, value}``.

    ``custom_field_id`` must be a UUID (CC's ``format: uuid``); ``name`` is a form field's name, mapped to
    an id through ``CUSTOM_FIELDS`` when the signup is sent. Values are at most 255 characters.
    """
    if not isinstance(value, list):
        raise _custom_fields_error(_("Custom fields must be a list."))
    if len(value) > CUSTOM_FIELDS_MAX:
        raise _custom_fields_error(_("Constant Contact takes at most 50 custom fields."))
    for item in value:
        if not isinstance(item, dict):
            raise _custom_fields_error(_("Each custom field must be a dict with a value."))
        keys = set(item) - {"value"}
        if len(keys) != 1 or not keys <= set(CUSTOM_FIELD_KEYS):
            raise _custom_fields_error(
                _(
                    "Each custom field needs either its Constant Contact id (custom_field_id) or a form field name "
                    "(name), and a value; got the keys %(keys)s."
                ),
                keys=", ".join(sorted(map(str, item))) or "none",
            )
        try:
            if "custom_field_id" in keys:
                validate_custom_field_id(item["custom_field_id"])
            else:
                name = item["name"]
                if not isinstance(name, str) or not name.strip() or len(name) > FIELD_NAME_MAX:
                    raise ValidationError(
                        _("%(name)r is not a form field name."), code="invalid", params={"name": name}
                    )
                validate_no_control_characters(name)
            validate_custom_field_value(str(item.get("value", "")))
        except ValidationError as err:
            raise ValidationError({"custom_fields": err.error_list}) from None


def validate_street_address(value: dict[str, str] | None) -> None:
    """sign_up_form's ``street_address``: a ``kind`` (home, work, other), the spec's keys only, CC's limits."""
    if not value:
        return
    if not isinstance(value, dict):
        raise ValidationError({"street_address": _("The street address must be a dict.")})
    unknown = [key for key in value if key not in ADDRESS_KEYS]
    if unknown:
        raise ValidationError(
            {
                "street_address": ValidationError(
                    _("Constant Contact's street address has no %(keys)s; use only %(allowed)s."),
                    code="unknown_key",
                    params={
                        "keys": ", ".join(repr(key) for key in unknown),
                        "allowed": ", ".join(ADDRESS_KEYS),
                    },
                )
            }
        )
    if value.get("kind") not in ADDRESS_KINDS:
        raise ValidationError({"street_address": _("The address kind must be home, work or other.")})
    for part, text in value.items():
        try:
            validate_address_part(part, str(text))
        except ValidationError as err:
            raise ValidationError({"street_address": err.error_list}) from None
