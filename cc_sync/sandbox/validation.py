"""Checks request bodies against CC's published schemas (Swagger build 3.0.161).

* ``POST /v3/contacts/sign_up_form`` - ``createOrUpdateContact_request``;
* ``POST /v3/contacts`` and ``PUT /v3/contacts/{contact_id}`` - ``createContact_request`` /
  ``updateContact_request``;
* ``POST /v3/activities/add_list_memberships`` - ``createListAddActivity_request``;
* ``POST /v3/activities/contacts_json_import`` - ``createImportJSONActivity_request``.

Limits come from the spec, which CC's generated PHP client enforces too. No schema of these sets
``additionalProperties: false``, so properties the spec does not define are ignored (not refused, not
stored); what CC itself does with them is undocumented. List *existence* is not checked here: the server
answers an unknown list with 404, not 400.
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
    errors: list[str] = []
    # The spec: "either the contact's `email_address` string or `sms_channel` object".
    if data.get("email_address") in (None, "") and data.get("sms_channel") is None:
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
    if data.get("sms_channel") is not None:
        errors.extend(_sign_up_sms_errors(data["sms_channel"]))
    return errors


def _strings_required(item: Any, where: str, names: tuple[str, ...]) -> list[str]:
    if not isinstance(item, dict):
        return [f"'{where}' must be an object."]
    return [
        f"'{where}.{name}' is required and must be a string."
        for name in names
        if not isinstance(item.get(name), str) or not item[name]
    ]


def _sign_up_sms_errors(channel: Any) -> list[str]:
    # createOrUpdateContact_request_sms_channel: all four required; each consent needs five strings.
    errors = _strings_required(channel, "sms_channel", ("sms_address", "dial_code", "country_code"))
    if not isinstance(channel, dict):
        return errors
    consents = channel.get("sms_channel_consents")
    if not isinstance(consents, list):
        return [*errors, "'sms_channel.sms_channel_consents' is required and must be an array."]
    for index, consent in enumerate(consents):
        errors.extend(
            _strings_required(
                consent,
                f"sms_channel.sms_channel_consents[{index}]",
                (
                    "sms_consent_permission",
                    "consent_type",
                    "consent_medium_type",
                    "consent_medium_url",
                    "consent_medium_details",
                ),
            )
        )
        if isinstance(consent, dict) and "advertised_frequency" in consent:
            if not _is_int(consent["advertised_frequency"]):
                errors.append(
                    f"'sms_channel.sms_channel_consents[{index}].advertised_frequency' must be an integer."
                )
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
    return _address_errors(address, "street_address")


def _address_errors(address: dict[str, Any], where: str) -> list[str]:
    errors = []
    if address.get("kind") not in STREET_ADDRESS_KINDS:
        errors.append(f"'{where}.kind' is required and must be one of home, work, other.")
    for name, limit in STREET_ADDRESS_LIMITS.items():
        value = address.get(name)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            errors.append(f"'{where}.{name}' must be a string of at most {limit} characters.")
    return errors


def _custom_field_errors(fields: Any, maximum: int = MAX_CUSTOM_FIELDS) -> list[str]:
    if not isinstance(fields, list):
        return ["'custom_fields' must be an array."]
    if len(fields) > maximum:
        return [f"'custom_fields' must contain at most {maximum} items."]
    errors = []
    for index, item in enumerate(fields):
        if not isinstance(item, dict) or not is_uuid(item.get("custom_field_id")):
            errors.append(f"'custom_fields[{index}].custom_field_id' must be a custom field id.")
            continue
        # `value` is optional in every custom-field schema of the spec (only the id is required).
        value = item.get("value")
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_CUSTOM_FIELD_VALUE):
            errors.append(
                f"'custom_fields[{index}].value' must be a string of at most "
                f"{MAX_CUSTOM_FIELD_VALUE} characters."
            )
        choices = item.get("choice_ids")
        if choices is not None and not (
            isinstance(choices, list) and all(isinstance(choice, str) for choice in choices)
        ):
            errors.append(f"'custom_fields[{index}].choice_ids' must be an array of strings.")
    return errors


# -- POST /v3/contacts and PUT /v3/contacts/{contact_id} --------------------------------------------

PERMISSIONS = ("explicit", "implicit", "not_set", "pending_confirmation", "temp_hold", "unsubscribed")
SOURCES = ("Contact", "Account")
PHONE_KINDS = ("home", "work", "mobile", "other")
CONTACT_STRING_LIMITS: dict[str, int] = {
    "first_name": 50,
    "last_name": 50,
    "job_title": 50,
    "company_name": 50,
}
EMAIL_ADDRESS_MAX = 80
CONTACT_MAX_CUSTOM_FIELDS = 25
MAX_PHONE_NUMBERS = 3
PHONE_NUMBER_MAX = 25
MAX_STREET_ADDRESSES = 3
MAX_TAGGINGS = 50
MAX_NOTES = 150
NOTE_MAX = 2000
OPT_OUT_REASON_MAX = 255
ANNIVERSARY_MAX = 10


def validate_contact(data: Any, *, source_field: str) -> list[str]:
    """Errors of a ``createContact_request`` (``source_field="create_source"``) or an
    ``updateContact_request`` (``source_field="update_source"``) body."""
    if not isinstance(data, dict):
        return ["The request body must be a JSON object."]
    errors = []
    # Both are required by the operation (createContact's text; updateContact's `required`).
    if data.get(source_field) not in SOURCES:
        errors.append(f"'{source_field}' is required and must be Contact or Account.")
    if source_field == "create_source" and all(
        data.get(name) in (None, "") for name in ("first_name", "last_name", "email_address", "sms_channel")
    ):
        errors.append("At least one of first_name, last_name, email_address or sms_channel is required.")
    for name, limit in CONTACT_STRING_LIMITS.items():
        value = data.get(name)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            errors.append(f"'{name}' must be a string of at most {limit} characters.")
    if data.get("email_address") is not None:
        errors.extend(_email_object_errors(data["email_address"]))
    errors.extend(_birthday_errors(data))
    anniversary = data.get("anniversary")
    if anniversary is not None and not (
        isinstance(anniversary, str)
        and len(anniversary) <= ANNIVERSARY_MAX
        and any(regex.match(anniversary) for regex in _ANNIVERSARY_RES)
    ):
        errors.append("'anniversary' must be a date such as MM/DD/YYYY or YYYY-MM-DD.")
    if data.get("custom_fields") is not None:
        errors.extend(_custom_field_errors(data["custom_fields"], CONTACT_MAX_CUSTOM_FIELDS))
    if data.get("phone_numbers") is not None:
        errors.extend(_phone_numbers_errors(data["phone_numbers"]))
    if data.get("street_addresses") is not None:
        errors.extend(_street_addresses_errors(data["street_addresses"]))
    for name, maximum in (("list_memberships", MAX_LISTS), ("taggings", MAX_TAGGINGS)):
        if data.get(name) is not None:
            errors.extend(_uuid_array_errors(data[name], name, maximum))
    if data.get("notes") is not None:
        errors.extend(_notes_errors(data["notes"]))
    if data.get("sms_channel") is not None:
        errors.extend(_contact_sms_errors(data["sms_channel"]))
    return errors


def _email_object_errors(email: Any) -> list[str]:
    if not isinstance(email, dict):
        return ["'email_address' must be an object with an 'address'."]
    errors = []
    address = email.get("address")
    if not isinstance(address, str) or not address:
        errors.append("'email_address.address' is required.")
    elif len(address) > EMAIL_ADDRESS_MAX:
        errors.append(f"'email_address.address' must be at most {EMAIL_ADDRESS_MAX} characters.")
    elif not _EMAIL_RE.match(address):
        errors.append("'email_address.address' is not a valid email address.")
    permission = email.get("permission_to_send")
    if permission is not None and permission not in PERMISSIONS:
        errors.append(f"'email_address.permission_to_send' must be one of {', '.join(PERMISSIONS)}.")
    reason = email.get("opt_out_reason")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= OPT_OUT_REASON_MAX):
        errors.append(f"'email_address.opt_out_reason' must be a string of at most {OPT_OUT_REASON_MAX}.")
    return errors


def _uuid_array_errors(values: Any, name: str, maximum: int) -> list[str]:
    if not isinstance(values, list):
        return [f"'{name}' must be an array of ids."]
    if len(values) > maximum:
        return [f"'{name}' must contain at most {maximum} ids."]
    return [
        f"'{name}[{index}]' is not a valid id." for index, value in enumerate(values) if not is_uuid(value)
    ]


def _phone_numbers_errors(phones: Any) -> list[str]:
    if not isinstance(phones, list):
        return ["'phone_numbers' must be an array."]
    if len(phones) > MAX_PHONE_NUMBERS:
        return [f"'phone_numbers' must contain at most {MAX_PHONE_NUMBERS} items."]
    errors = []
    for index, phone in enumerate(phones):
        if not isinstance(phone, dict):
            errors.append(f"'phone_numbers[{index}]' must be an object.")
            continue
        number = phone.get("phone_number")
        if not (isinstance(number, str) and 0 < len(number) <= PHONE_NUMBER_MAX):
            errors.append(
                f"'phone_numbers[{index}].phone_number' must be a string of 1 to {PHONE_NUMBER_MAX} characters."
            )
        if phone.get("kind") is not None and phone["kind"] not in PHONE_KINDS:
            errors.append(f"'phone_numbers[{index}].kind' must be one of {', '.join(PHONE_KINDS)}.")
    return errors


def _street_addresses_errors(addresses: Any) -> list[str]:
    if not isinstance(addresses, list):
        return ["'street_addresses' must be an array."]
    if len(addresses) > MAX_STREET_ADDRESSES:
        return [f"'street_addresses' must contain at most {MAX_STREET_ADDRESSES} items."]
    errors = []
    for index, address in enumerate(addresses):
        if not isinstance(address, dict):
            errors.append(f"'street_addresses[{index}]' must be an object.")
        else:
            errors.extend(_address_errors(address, f"street_addresses[{index}]"))
    return errors


def _notes_errors(notes: Any) -> list[str]:
    if not isinstance(notes, list):
        return ["'notes' must be an array."]
    if len(notes) > MAX_NOTES:
        return [f"'notes' must contain at most {MAX_NOTES} items."]
    errors = []
    for index, note in enumerate(notes):
        content = note.get("content") if isinstance(note, dict) else None
        if not (isinstance(content, str) and len(content) <= NOTE_MAX):
            errors.append(f"'notes[{index}].content' must be a string of at most {NOTE_MAX} characters.")
        elif note.get("note_id") is not None and not is_uuid(note["note_id"]):
            errors.append(f"'notes[{index}].note_id' is not a valid id.")
    return errors


def _contact_sms_errors(channel: Any) -> list[str]:
    # updateContact_request_sms_channel (also used by createContact_request).
    errors = _strings_required(channel, "sms_channel", ("full_sms_address",))
    if not isinstance(channel, dict):
        return errors
    consents = channel.get("sms_channel_consents")
    if not isinstance(consents, list):
        return [*errors, "'sms_channel.sms_channel_consents' is required and must be an array."]
    for index, consent in enumerate(consents):
        errors.extend(
            _strings_required(
                consent,
                f"sms_channel.sms_channel_consents[{index}]",
                ("sms_consent_permission", "consent_type"),
            )
        )
    return errors


# -- POST /v3/activities/add_list_memberships (createListAddActivity_request) -----------------------

MAX_SOURCE_CONTACTS = 500
# Sources the spec defines but the sandbox has nothing to select with (no segments, tags or engagement data).
UNSUPPORTED_SOURCES = ("segment_id", "tag_ids", "engagement_level")
SUPPORTED_SOURCES = ("contact_ids", "list_ids", "all_active_contacts")


def validate_add_list_memberships(data: Any) -> list[str]:
    """Errors of an ``add_list_memberships`` body (400)."""
    if not isinstance(data, dict):
        return ["The request body must be a JSON object."]
    errors = []
    lists = data.get("list_ids")
    if not isinstance(lists, list) or not 1 <= len(lists) <= MAX_LISTS:
        errors.append(f"'list_ids' is required and must contain between 1 and {MAX_LISTS} list ids.")
    else:
        errors.extend(
            f"'list_ids[{index}]' is not a valid list id."
            for index, value in enumerate(lists)
            if not is_uuid(value)
        )
    source = data.get("source")
    if not isinstance(source, dict):
        return [*errors, "'source' is required and must be an object."]
    chosen = [
        name for name in (*SUPPORTED_SOURCES, *UNSUPPORTED_SOURCES) if source.get(name) not in (None, False)
    ]
    if len(chosen) != 1:
        errors.append(
            "'source' must have exactly one of contact_ids, list_ids, all_active_contacts, segment_id, "
            "tag_ids or engagement_level (they are mutually exclusive)."
        )
        return errors
    [name] = chosen
    if name in UNSUPPORTED_SOURCES:
        errors.append(f"'source.{name}' is not emulated by the sandbox.")
    elif name == "contact_ids":
        ids = source["contact_ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_SOURCE_CONTACTS:
            errors.append(
                f"'source.contact_ids' must contain between 1 and {MAX_SOURCE_CONTACTS} contact ids."
            )
        else:
            errors.extend(
                f"'source.contact_ids[{index}]' is not a valid contact id."
                for index, value in enumerate(ids)
                if not is_uuid(value)
            )
    elif name == "list_ids":
        ids = source["list_ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_LISTS:
            errors.append(f"'source.list_ids' must contain between 1 and {MAX_LISTS} list ids.")
        else:
            errors.extend(
                f"'source.list_ids[{index}]' is not a valid list id."
                for index, value in enumerate(ids)
                if not is_uuid(value)
            )
    elif source["all_active_contacts"] is not True:
        errors.append("'source.all_active_contacts' must be a boolean.")
    exclude = data.get("exclude")
    if exclude is not None:
        ids = exclude.get("contact_ids") if isinstance(exclude, dict) else None
        if not isinstance(ids, list) or not all(is_uuid(value) for value in ids):
            errors.append("'exclude.contact_ids' must be an array of contact ids.")
        elif name == "contact_ids":
            errors.append("'exclude' applies only to the list_ids and all_active_contacts sources.")
    return errors


# -- POST /v3/activities/contacts_json_import (createImportJSONActivity_request) -----------------------

IMPORT_MAX_CONTACTS = 40_000
IMPORT_MAX_CUSTOM_FIELDS = 25
IMPORT_CUSTOM_FIELD_MAX = 255
_ADDRESS_PART_LIMITS = {"street": 255, "street2": 255, "city": 50, "state": 50, "zip": 50, "country": 50}
# Every key of createImportJSONActivity_request_import_data_inner, with its maxLength (None: no limit).
IMPORT_STRING_LIMITS: dict[str, int | None] = {
    "email": 50,
    "first_name": 50,
    "last_name": 50,
    "job_title": 50,
    "company_name": 50,
    "anniversary": None,
    "phone": 50,
    "home_phone": 50,
    "work_phone": 50,
    "mobile_phone": 50,
    "other_phone": 50,
    **_ADDRESS_PART_LIMITS,
    **{
        f"{kind}_{part}": limit
        for kind in ("home", "work", "other")
        for part, limit in _ADDRESS_PART_LIMITS.items()
    },
    # The spec spells this one key with a space ("home country"); "home_country" is accepted as well.
    "home country": 50,
    "sms_number": 16,
    "sms_consent_date": 16,
}
IMPORT_FIELDS = frozenset({*IMPORT_STRING_LIMITS, "birthday_month", "birthday_day"})
SMS_PERMISSIONS = ("explicit", "not_set")


def validate_json_import(data: Any) -> list[str]:
    """Errors that make CC refuse a whole import request (400); per-contact problems are not among them."""
    if not isinstance(data, dict):
        return ["The request body must be a JSON object."]
    errors = []
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
    permission = data.get("sms_permission_to_send")
    if permission is not None and permission not in SMS_PERMISSIONS:
        errors.append("'sms_permission_to_send' must be explicit or not_set.")
    return errors


def validate_import_contact(item: dict[str, Any]) -> list[str]:
    """Why CC would not import one contact of an import (reported as a per-contact activity error)."""
    errors = []
    email, sms = item.get("email"), item.get("sms_number")
    # The spec: "A contact's data must include an `email` address and/or `sms_number`."
    if email in (None, "") and sms in (None, ""):
        errors.append("Email address or SMS number is required.")
    elif email not in (None, "") and (
        not isinstance(email, str) or len(email) > 50 or not _EMAIL_RE.match(email)
    ):
        errors.append("Invalid email address.")
    for name, limit in IMPORT_STRING_LIMITS.items():
        value = item.get(name)
        if name == "email" or value is None:
            continue
        if not isinstance(value, str) or (limit is not None and len(value) > limit):
            errors.append(
                f"'{name}' must be a string" + (f" of at most {limit} characters." if limit else ".")
            )
    for name in ("anniversary", "sms_consent_date"):
        value = item.get(name)
        if isinstance(value, str) and value and not any(regex.match(value) for regex in _ANNIVERSARY_RES):
            errors.append(f"'{name}' must be a date such as MM/DD/YYYY or YYYY-MM-DD.")
    custom = [name for name in item if str(name).startswith("cf:")]
    if len(custom) > IMPORT_MAX_CUSTOM_FIELDS:
        errors.append(f"At most {IMPORT_MAX_CUSTOM_FIELDS} custom fields per contact.")
    for name in custom:
        value = item[name]
        if not (isinstance(value, str) and len(value) <= IMPORT_CUSTOM_FIELD_MAX):
            errors.append(f"'{name}' must be a string of at most {IMPORT_CUSTOM_FIELD_MAX} characters.")
    errors.extend(_birthday_errors(item))
    return errors
