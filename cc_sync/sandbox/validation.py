"""Checks a ``POST /v3/contacts/sign_up_form`` body against CC's ``ContactCreateOrUpdateInput`` schema.

Limits come from CC's Swagger contract (v3.0.178), which CC's generated PHP client enforces too.
List *existence* is not checked here: the server answers an unknown list with 404, not 400.
"""

from __future__ import annotations

import re
from typing import Any

VALIDATION_ERROR = "contacts.api.validation.error"
NOT_FOUND = "contacts.api.not_found"

STRING_LIMITS: dict[str, int] = {
    "email_address": 50,
    "first_name": 50,
    "last_name": 50,
    "job_title": 50,
    "company_name": 50,
    "phone_number": 25,
}
STREET_ADDRESS_LIMITS: dict[str, int] = {
    "street": 255,
    "city": 50,
    "state": 50,
    "postal_code": 50,
    "country": 50,
}
STREET_ADDRESS_KINDS = ("home", "work", "other")
ALLOWED_FIELDS = frozenset(
    {
        *STRING_LIMITS,
        "list_memberships",
        "custom_fields",
        "birthday_month",
        "birthday_day",
        "anniversary",
        "street_address",
        "sms_channel",
    }
)
MAX_LISTS = 50
MAX_CUSTOM_FIELDS = 50
MAX_CUSTOM_FIELD_VALUE = 255

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# The date formats CC lists for `anniversary`: MM/DD/YYYY, M/D/YYYY, YYYY/MM/DD, YYYY/M/D,
# YYYY-MM-DD, YYYY-M-D, M-D-YYYY, M-DD-YYYY.
_ANNIVERSARY_RES = tuple(
    re.compile(pattern)
    for pattern in (
        r"^\d{1,2}/\d{1,2}/\d{4}$",
        r"^\d{4}/\d{1,2}/\d{1,2}$",
        r"^\d{4}-\d{1,2}-\d{1,2}$",
        r"^\d{1,2}-\d{1,2}-\d{4}$",
    )
)


def is_uuid(value: Any) -> bool:
    """True for a 36-character 8-4-4-4-12 hexadecimal UUID string."""
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_sign_up(data: Any) -> list[str]:
    """Return the validation error messages for a decoded request body (empty when it is valid)."""
    if not isinstance(data, dict):
        return ["The request body must be a JSON object."]
    errors = [f"'{name}' is not a recognized field." for name in data if name not in ALLOWED_FIELDS]

    # The sandbox keys contacts on the email address, so (unlike CC) an SMS-only contact is refused.
    if "email_address" not in data or data["email_address"] in (None, ""):
        errors.append("'email_address' is required.")
    for name, limit in STRING_LIMITS.items():
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            errors.append(f"'{name}' must be a string.")
        elif len(value) > limit:
            errors.append(f"'{name}' must be at most {limit} characters.")
    email = data.get("email_address")
    if isinstance(email, str) and email and len(email) <= 50 and not _EMAIL_RE.match(email):
        errors.append("'email_address' is not a valid email address.")

    errors.extend(_list_membership_errors(data.get("list_memberships")))
    errors.extend(_birthday_errors(data))
    anniversary = data.get("anniversary")
    if anniversary is not None and not (
        isinstance(anniversary, str) and any(regex.match(anniversary) for regex in _ANNIVERSARY_RES)
    ):
        errors.append("'anniversary' must be a date such as MM/DD/YYYY or YYYY-MM-DD.")
    if "street_address" in data:
        errors.extend(_street_address_errors(data["street_address"]))
    if "custom_fields" in data:
        errors.extend(_custom_field_errors(data["custom_fields"]))
    if "sms_channel" in data and not isinstance(data["sms_channel"], dict):
        errors.append("'sms_channel' must be an object.")
    return errors


def _list_membership_errors(lists: Any) -> list[str]:
    if lists is None:
        return ["'list_memberships' is required."]
    if not isinstance(lists, list):
        return ["'list_memberships' must be an array of list ids."]
    if not 1 <= len(lists) <= MAX_LISTS:
        return [f"'list_memberships' must contain between 1 and {MAX_LISTS} list ids."]
    return [
        f"'list_memberships[{index}]' is not a valid list id."
        for index, list_id in enumerate(lists)
        if not is_uuid(list_id)
    ]


def _birthday_errors(data: dict[str, Any]) -> list[str]:
    errors = []
    month, day = data.get("birthday_month"), data.get("birthday_day")
    if month is not None and not (_is_int(month) and 1 <= month <= 12):
        errors.append("'birthday_month' must be an integer from 1 to 12.")
    if day is not None and not (_is_int(day) and 1 <= day <= 31):
        errors.append("'birthday_day' must be an integer from 1 to 31.")
    if (month is None) != (day is None):
        errors.append("'birthday_month' and 'birthday_day' must be sent together.")
    return errors


def _street_address_errors(address: Any) -> list[str]:
    if not isinstance(address, dict):
        return ["'street_address' must be an object."]
    errors = [
        f"'street_address.{name}' is not a recognized field."
        for name in address
        if name != "kind" and name not in STREET_ADDRESS_LIMITS
    ]
    if address.get("kind") not in STREET_ADDRESS_KINDS:
        errors.append("'street_address.kind' is required and must be one of home, work, other.")
    for name, limit in STREET_ADDRESS_LIMITS.items():
        value = address.get(name)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            errors.append(f"'street_address.{name}' must be a string of at most {limit} characters.")
    return errors


def _custom_field_errors(fields: Any) -> list[str]:
    if not isinstance(fields, list):
        return ["'custom_fields' must be an array."]
    if len(fields) > MAX_CUSTOM_FIELDS:
        return [f"'custom_fields' must contain at most {MAX_CUSTOM_FIELDS} items."]
    errors = []
    for index, item in enumerate(fields):
        if not isinstance(item, dict) or not is_uuid(item.get("custom_field_id")):
            errors.append(f"'custom_fields[{index}].custom_field_id' must be a custom field id.")
            continue
        value = item.get("value")
        if not isinstance(value, str) or len(value) > MAX_CUSTOM_FIELD_VALUE:
            errors.append(
                f"'custom_fields[{index}].value' must be a string of at most "
                f"{MAX_CUSTOM_FIELD_VALUE} characters."
            )
    return errors


# -- POST /v3/activities/contacts_json_import (schema ContactsJsonImport / JsonImportContact) ------------

IMPORT_MAX_CONTACTS = 40_000
IMPORT_MAX_CUSTOM_FIELDS = 25
IMPORT_STRING_LIMITS: dict[str, int] = {
    "email": 50,
    "first_name": 50,
    "last_name": 50,
    "job_title": 50,
    "company_name": 50,
    "phone": 50,
    "home_phone": 50,
    "work_phone": 50,
    "mobile_phone": 50,
    "other_phone": 50,
    "street": 255,
    "street2": 255,
    "city": 50,
    "state": 50,
    "zip": 50,
    "country": 50,
    "anniversary": 50,
}
IMPORT_FIELDS = frozenset({*IMPORT_STRING_LIMITS, "birthday_month", "birthday_day", "sms_number"})


def validate_json_import(data: Any) -> list[str]:
    """Errors that make CC refuse a whole import request (400); per-contact problems are not among them."""
    if not isinstance(data, dict):
        return ["The request body must be a JSON object."]
    errors = [
        f"'{name}' is not a recognized field."
        for name in data
        if name not in ("import_data", "list_ids", "sms_permission_to_send")
    ]
    contacts = data.get("import_data")
    if not isinstance(contacts, list) or not contacts:
        errors.append("'import_data' is required and must be a non-empty array of contacts.")
    elif len(contacts) > IMPORT_MAX_CONTACTS:
        errors.append(f"'import_data' must contain at most {IMPORT_MAX_CONTACTS} contacts.")
    elif not all(isinstance(item, dict) for item in contacts):
        errors.append("Each item of 'import_data' must be an object.")
    lists = data.get("list_ids")
    if not isinstance(lists, list) or not 1 <= len(lists) <= MAX_LISTS:
        errors.append(f"'list_ids' is required and must contain between 1 and {MAX_LISTS} list ids.")
    else:
        errors.extend(
            f"'list_ids[{index}]' is not a valid list id."
            for index, value in enumerate(lists)
            if not is_uuid(value)
        )
    return errors


def validate_import_contact(item: dict[str, Any]) -> list[str]:
    """Why CC would not import one contact of an import (reported as a per-contact activity error)."""
    errors = [
        f"'{name}' is not a recognized field."
        for name in item
        if name not in IMPORT_FIELDS and not str(name).startswith("cf:")
    ]
    email = item.get("email")
    if not isinstance(email, str) or not email:
        errors.append("Email address is required.")
    elif len(email) > IMPORT_STRING_LIMITS["email"] or not _EMAIL_RE.match(email):
        errors.append("Invalid email address.")
    for name, limit in IMPORT_STRING_LIMITS.items():
        value = item.get(name)
        if name != "email" and value is not None and not (isinstance(value, str) and len(value) <= limit):
            errors.append(f"'{name}' must be a string of at most {limit} characters.")
    custom = [name for name in item if str(name).startswith("cf:")]
    if len(custom) > IMPORT_MAX_CUSTOM_FIELDS:
        errors.append(f"At most {IMPORT_MAX_CUSTOM_FIELDS} custom fields per contact.")
    errors.extend(_birthday_errors(item))
    return errors
