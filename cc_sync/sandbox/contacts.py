"""The sandbox's contacts: CC's contact resource and the endpoints that read and write it.

Used by :class:`~cc_sync.sandbox.server.Sandbox` through :class:`ContactsMixin`; ``Sandbox`` stays the one
front door. Behaviour follows CC's published contract, Swagger build 3.0.161 (``getContactById``,
``getAllContacts``, ``createContact``, ``updateContact``, ``createOrUpdateContact`` alias ``sign_up_form``,
``createListAddActivity`` and ``createImportJSONActivity``). Where the spec is silent the choice made is
said in a comment and listed in docs/testing.md.

Contacts are stored flat (``email_address`` as a string, ``permission_to_send`` and ``opt_in_source`` at the
top level, as :meth:`Sandbox.contacts` has always shown them); every response body is rendered into the
spec's shape by :func:`render_contact`.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from .replies import _cc_errors, _json, _media_type, _Reply, _Request
from .validation import (
    CONTACT_MAX_CUSTOM_FIELDS,
    MAX_LISTS,
    MAX_PHONE_NUMBERS,
    MAX_STREET_ADDRESSES,
    NOT_FOUND,
    PERMISSIONS,
    VALIDATION_ERROR,
    validate_add_list_memberships,
    validate_contact,
    validate_sign_up,
)

CONTACTS_PATH = "/v3/contacts"
SIGN_UP_PATH = "/v3/contacts/sign_up_form"
ADD_LIST_MEMBERSHIPS_PATH = "/v3/activities/add_list_memberships"
ACTIVITY_PREFIX = "/v3/activities/"
CONFLICT = "contacts.api.conflict"

# getAllContacts / getContactById `include` values, in the spec's order.
INCLUDES = ("custom_fields", "list_memberships", "phone_numbers", "street_addresses", "taggings", "notes")
# getAllContacts `status` values. `active` is not defined by the spec: the sandbox reads it as "can be sent
# email", i.e. explicit or implicit permission and not deleted.
CONTACT_STATUSES = (
    "all",
    "active",
    "deleted",
    "not_set",
    "pending_confirmation",
    "temp_hold",
    "unsubscribed",
)
CONTACTS_MAX_LIMIT = 500
CONTACTS_MAX_LISTS_FILTER = 25
# getAllContacts query parameters the sandbox does not emulate: refused (400) rather than silently ignored.
UNSUPPORTED_QUERY = (
    "segment_id",
    "tags",
    "updated_after",
    "updated_before",
    "created_after",
    "created_before",
    "optout_after",
    "optout_before",
    "sms_status",
)
# Top-level properties a PUT overwrites with null when left out ("this does not apply to contact
# subresources"). `email_address` and `sms_channel` are channel subresources and are kept.
PUT_OVERWRITTEN = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)
SIGN_UP_SCALARS = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)
# contacts_json_import keys -> (phone kind) and (address kind, part). The spec: `phone` has the default kind
# `other`; `street`, `city`, `state`, `zip`, `country` the default kind `home`.
IMPORT_PHONES = {
    "phone": "other",
    "home_phone": "home",
    "work_phone": "work",
    "mobile_phone": "mobile",
    "other_phone": "other",
}
_PARTS = {"street": "street", "street2": "street2", "city": "city", "state": "state", "zip": "postal_code"}
_PARTS["country"] = "country"
IMPORT_ADDRESSES: dict[str, tuple[str, str]] = {name: ("home", part) for name, part in _PARTS.items()}
IMPORT_ADDRESSES.update(
    {f"{kind}_{name}": (kind, part) for kind in ("home", "work", "other") for name, part in _PARTS.items()}
)
IMPORT_ADDRESSES["home country"] = ("home", "country")  # the spec's own spelling of this key
IMPORT_SCALARS = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)


def email_key(address: str | None) -> str | None:
    """The key contacts are matched on: CC treats addresses case-insensitively."""
    return address.strip().lower() if isinstance(address, str) and address.strip() else None


def _sms_key(digits: str | None) -> str | None:
    value = "".join(ch for ch in digits or "" if ch.isdigit())
    return value or None


def render_contact(contact: dict[str, Any], include: Iterable[str] = ()) -> dict[str, Any]:
    """A stored contact in the shape of ``getContactById_200_response``.

    The spec's properties are not nullable, so a property without a value is left out rather than sent
    as null. Subresources appear only when named in ``include``, as with CC's ``include`` parameter.
    """
    body: dict[str, Any] = {"contact_id": contact["contact_id"]}
    if contact.get("email_address"):
        email: dict[str, Any] = {
            "address": contact["email_address"],
            "permission_to_send": contact["permission_to_send"],
            "created_at": contact.get("email_created_at") or contact["created_at"],
            "updated_at": contact.get("email_updated_at") or contact["updated_at"],
        }
        for name in ("opt_in_source", "opt_in_date", "opt_out_source", "opt_out_date", "opt_out_reason"):
            if contact.get(name):
                email[name] = contact[name]
        # "Possible values: pending, confirmed, off."
        email["confirm_status"] = contact.get("confirm_status") or "off"
        body["email_address"] = email
    for name in (
        "first_name",
        "last_name",
        "job_title",
        "company_name",
        "birthday_month",
        "birthday_day",
        "anniversary",
        "update_source",
        "create_source",
        "created_at",
        "updated_at",
        "deleted_at",
    ):
        if contact.get(name) is not None:
            body[name] = contact[name]
    if contact.get("sms_channel"):
        body["sms_channel"] = copy.deepcopy(contact["sms_channel"])
    for name in INCLUDES:
        if name in include:
            body[name] = copy.deepcopy(contact.get(name) or [])
    return body


def _parse_include(value: str | None) -> tuple[list[str], str | None]:
    if not value:
        return [], None
    names = [name.strip() for name in value.split(",") if name.strip()]
    wrong = [name for name in names if name not in INCLUDES]
    if wrong:
        return [], f"'include' must be one or more of {', '.join(INCLUDES)}; not {', '.join(wrong)}."
    return names, None


def _json_body(request: _Request) -> tuple[Any, _Reply | None]:
    media_type = _media_type(request.header("Content-Type"))
    if media_type != "application/json":
        return None, _cc_errors(
            415, "unsupported_media_type", f"Content type '{media_type or 'none'}' is not supported."
        )
    try:
        return json.loads(request.body), None
    except ValueError:
        return None, _cc_errors(400, "malformed_json", "The request body is not valid JSON.")


class ContactsMixin:
    """Contact storage and the contact endpoints; mixed into ``Sandbox`` (which provides the state)."""

    _config: dict[str, Any]
    _contacts: dict[str, dict[str, Any]]  # contact_id -> stored contact, in creation order
    _emails: dict[str, str]  # email_key -> contact_id
    _sms_numbers: dict[str, str]  # digits of the SMS number -> contact_id
    _activities: dict[str, dict[str, Any]]

    def _now_iso(self) -> str:  # provided by Sandbox
        raise NotImplementedError

    # -- lists -------------------------------------------------------------------------------------

    def _live_list_ids(self) -> set[str]:
        return {item["list_id"] for item in self._config["lists"] if not item.get("deleted_at")}

    def _missing_lists(self, list_ids: Iterable[str]) -> _Reply | None:
        """404 naming every list that does not exist (never did, or was deleted at CC)."""
        live = self._live_list_ids()
        unknown = [list_id for list_id in list_ids if str(list_id).lower() not in live]
        if unknown:
            return _cc_errors(404, NOT_FOUND, *(f"List {list_id} was not found." for list_id in unknown))
        return None

    def _delete_list(self, list_id: str) -> dict[str, Any]:
        key = str(list_id).lower()
        for item in self._config["lists"]:
            if item["list_id"] == key and not item.get("deleted_at"):
                item["deleted_at"] = self._now_iso()
                item["updated_at"] = item["deleted_at"]
                # A deleted list has no members any more.
                for contact in self._contacts.values():
                    if key in contact["list_memberships"]:
                        contact["list_memberships"].remove(key)
                return copy.deepcopy(item)
        raise LookupError(f"no list {list_id!r} (or it is deleted already)")

    # -- storage -----------------------------------------------------------------------------------

    def _find(self, email: str | None = None, sms: str | None = None) -> dict[str, Any] | None:
        contact_id = self._emails.get(email_key(email) or "") or self._sms_numbers.get(_sms_key(sms) or "")
        return self._contacts.get(contact_id) if contact_id else None

    def _new_contact(self, *, create_source: str, now: str) -> dict[str, Any]:
        contact: dict[str, Any] = {
            "contact_id": str(uuid.uuid4()),
            "email_address": None,
            "permission_to_send": None,
            "opt_in_source": None,
            "first_name": None,
            "last_name": None,
            "list_memberships": [],
            "custom_fields": [],
            "phone_numbers": [],
            "street_addresses": [],
            "taggings": [],
            "notes": [],
            "sms_channel": None,
            "created_at": now,
            "updated_at": now,
            "create_source": create_source,
            "update_source": None,
            "deleted_at": None,
        }
        self._contacts[contact["contact_id"]] = contact
        return contact

    def _set_email(self, contact: dict[str, Any], address: str, now: str) -> None:
        old = email_key(contact.get("email_address"))
        if old and old != email_key(address):
            self._emails.pop(old, None)
        if contact.get("email_address") != address:
            contact["email_created_at"] = contact.get("email_created_at") or now
            contact["email_updated_at"] = now
        contact["email_address"] = address
        self._emails[email_key(address) or ""] = contact["contact_id"]

    def _set_permission(self, contact: dict[str, Any], permission: str, source: str, now: str) -> None:
        """Apply a permission change with the opt-in/opt-out bookkeeping CC shows on ``email_address``."""
        if contact.get("permission_to_send") == permission:
            return
        contact["permission_to_send"] = permission
        contact["email_updated_at"] = now
        if permission == "unsubscribed":
            contact.update(opt_out_source=source, opt_out_date=now)
        else:
            contact.update(opt_out_source=None, opt_out_date=None, opt_out_reason=None)
        if permission in ("explicit", "implicit"):
            contact["opt_in_date"] = now
            # `opt_in_source` "is set on POST, and is read-only going forward".
            contact["opt_in_source"] = contact.get("opt_in_source") or source
        if permission == "pending_confirmation":
            contact["confirm_status"] = "pending"
        elif contact.get("confirm_status") == "pending":
            contact["confirm_status"] = "confirmed" if permission == "explicit" else "off"

    def _set_sms(self, contact: dict[str, Any], channel: dict[str, Any], source: str) -> None:
        full = (
            channel.get("full_sms_address")
            or f"{channel.get('dial_code', '')}{channel.get('sms_address', '')}"
        )
        old = contact.get("sms_channel") or {}
        stored = {
            "sms_channel_id": old.get("sms_channel_id") or str(uuid.uuid4()),
            "sms_address": channel.get("sms_address") or channel.get("full_sms_address"),
            "update_source": source,
            "create_source": old.get("create_source") or source,
            "sms_channel_consents": [
                {
                    name: consent[name]
                    for name in (
                        "sms_consent_permission",
                        "consent_type",
                        "advertised_frequency",
                        "advertised_interval",
                    )
                    if name in consent
                }
                for consent in channel.get("sms_channel_consents") or []
            ],
        }
        for name in ("dial_code", "country_code"):
            if channel.get(name):
                stored[name] = channel[name]
        for consent in stored["sms_channel_consents"]:
            # The response schema types advertised_frequency as a string (the request as an integer).
            if "advertised_frequency" in consent:
                consent["advertised_frequency"] = str(consent["advertised_frequency"])
        old_key = _sms_key(contact.get("sms_full_address"))
        if old_key:
            self._sms_numbers.pop(old_key, None)
        contact["sms_channel"] = stored
        contact["sms_full_address"] = full
        self._sms_numbers[_sms_key(full) or ""] = contact["contact_id"]

    @staticmethod
    def _merge_custom_fields(contact: dict[str, Any], fields: Iterable[dict[str, Any]]) -> None:
        merged = {item["custom_field_id"]: item for item in contact.get("custom_fields") or []}
        for item in fields:
            field_id = item["custom_field_id"].lower()
            entry = dict(merged.get(field_id) or {"custom_field_id": field_id})
            # An item without `value` names the field and changes nothing else.
            for name in ("value", "choice_ids"):
                if name in item:
                    entry[name] = copy.deepcopy(item[name])
            merged[field_id] = entry
        contact["custom_fields"] = list(merged.values())

    @staticmethod
    def _add_lists(contact: dict[str, Any], list_ids: Iterable[str]) -> None:
        for list_id in list_ids:
            if list_id.lower() not in contact["list_memberships"]:
                contact["list_memberships"].append(list_id.lower())

    @staticmethod
    def _phone(number: str, kind: str | None, source: str, now: str) -> dict[str, Any]:
        phone = {
            "phone_number_id": str(uuid.uuid4()),
            "phone_number": number,
            "created_at": now,
            "updated_at": now,
            "create_source": source,
            "update_source": source,
        }
        if kind:
            phone["kind"] = kind
        return phone

    @staticmethod
    def _address(fields: dict[str, Any], now: str) -> dict[str, Any]:
        address = {"street_address_id": str(uuid.uuid4()), "kind": fields["kind"]}
        for name in ("street", "city", "state", "postal_code", "country"):
            if fields.get(name) is not None:
                address[name] = fields[name]
        address.update(created_at=now, updated_at=now)
        return address

    @staticmethod
    def _put_by_kind(items: list[dict[str, Any]], new: dict[str, Any], limit: int) -> None:
        """Replace the entry of the same kind, else append (the oldest goes beyond ``limit``)."""
        for index, item in enumerate(items):
            if item.get("kind") == new.get("kind"):
                new["created_at"] = item.get("created_at", new.get("created_at"))
                for name in ("phone_number_id", "street_address_id"):
                    if name in item:
                        new[name] = item[name]
                items[index] = new
                return
        items.append(new)
        del items[:-limit]

    def _write_resource(self, contact: dict[str, Any], data: dict[str, Any], source: str, now: str) -> None:
        """Store the properties and subresources of a createContact/updateContact body."""
        for name in PUT_OVERWRITTEN:
            if name in data:
                contact[name] = data[name]
        if data.get("custom_fields") is not None:
            contact["custom_fields"] = []
            self._merge_custom_fields(contact, data["custom_fields"])
        if data.get("phone_numbers") is not None:
            contact["phone_numbers"] = [
                self._phone(item["phone_number"], item.get("kind"), source, now)
                for item in data["phone_numbers"]
            ]
        if data.get("street_addresses") is not None:
            contact["street_addresses"] = [self._address(item, now) for item in data["street_addresses"]]
        if data.get("list_memberships") is not None:
            contact["list_memberships"] = []
            self._add_lists(contact, data["list_memberships"])
        if data.get("taggings") is not None:
            contact["taggings"] = [tag.lower() for tag in data["taggings"]]
        if data.get("notes") is not None:
            contact["notes"] = [
                {
                    "note_id": (note.get("note_id") or str(uuid.uuid4())).lower(),
                    "created_at": note.get("created_at") or now,
                    "content": note["content"],
                }
                for note in data["notes"]
            ]
        if data.get("sms_channel") is not None:
            self._set_sms(contact, data["sms_channel"], source)
        contact["updated_at"] = now

    # -- public helpers (Sandbox's API) --------------------------------------------------------------

    def add_contact(
        self,
        email: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        permission_to_send: str = "explicit",
        list_memberships: Iterable[str] = (),
        deleted: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Seed a contact that already exists at CC; returns it as ``GET /v3/contacts/{id}`` does (with
        every subresource included).

        ``fields`` are other ``createContact`` properties (``job_title``, ``company_name``,
        ``custom_fields``, ``phone_numbers``, ``street_addresses``, ``birthday_month``/``birthday_day``,
        ``anniversary``, ``taggings``, ``notes``, ``sms_channel``), plus ``create_source`` (default
        ``"Account"``), ``opt_in_source`` and ``opt_out_reason``. ``deleted=True`` seeds a deleted contact
        (``deleted_at`` set). Not logged and not counted against any limit. Raises ValueError for an
        invalid contact, an address that exists already or a list that does not exist.
        """
        with self._lock:  # type: ignore[attr-defined]
            return self._seed_contact(
                email,
                first_name=first_name,
                last_name=last_name,
                permission_to_send=permission_to_send,
                list_memberships=list(list_memberships),
                deleted=deleted,
                fields=fields,
            )

    def _seed_contact(
        self,
        email: str,
        *,
        first_name: str | None,
        last_name: str | None,
        permission_to_send: str,
        list_memberships: list[str],
        deleted: bool,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        fields = dict(fields)
        create_source = fields.pop("create_source", "Account")
        opt_in_source = fields.pop("opt_in_source", None)
        opt_out_reason = fields.pop("opt_out_reason", None)
        body = {
            **fields,
            "create_source": create_source,
            "email_address": {"address": email, "permission_to_send": permission_to_send},
            "list_memberships": list_memberships,
        }
        if first_name is not None:
            body["first_name"] = first_name
        if last_name is not None:
            body["last_name"] = last_name
        if opt_in_source not in (None, "Contact", "Account"):
            raise ValueError("opt_in_source must be Contact or Account")
        errors = validate_contact(body, source_field="create_source")
        if errors:
            raise ValueError(" ".join(errors))
        if self._find(email) is not None:
            raise ValueError(f"a contact with the email address {email!r} exists already")
        if self._missing_lists(list_memberships) is not None:
            raise ValueError("unknown or deleted list id(s) in list_memberships")
        now = self._now_iso()
        contact = self._new_contact(create_source=create_source, now=now)
        self._set_email(contact, email, now)
        contact["opt_in_source"] = opt_in_source
        self._set_permission(contact, permission_to_send, opt_in_source or create_source, now)
        if opt_out_reason and permission_to_send == "unsubscribed":
            contact["opt_out_reason"] = opt_out_reason
        self._write_resource(contact, body, create_source, now)
        if deleted:
            contact["deleted_at"] = now[:10]
        return render_contact(contact, INCLUDES)

    def contact(self, email: str) -> dict[str, Any] | None:
        """The contact with this address (any case; deleted ones too) as ``GET /v3/contacts/{id}`` returns it
        with every subresource included, or None."""
        with self._lock:  # type: ignore[attr-defined]
            self._settle_activities()  # type: ignore[attr-defined]
            found = self._find(email)
            return render_contact(found, INCLUDES) if found else None

    def delete_list(self, list_id: str) -> dict[str, Any]:
        """Delete a list as if someone deleted it at CC: it disappears from ``GET /v3/contact_lists``
        (except with ``status=deleted``/``all``, with ``deleted_at``), contacts lose it, and every write naming
        it answers 404. Returns the list. Raises LookupError for an unknown or already deleted list."""
        with self._lock:  # type: ignore[attr-defined]
            return self._delete_list(list_id)

    # -- GET /v3/contacts ----------------------------------------------------------------------------

    def _contacts_collection(self, request: _Request) -> _Reply:
        if request.method == "POST":
            return self._create_contact(request)
        query = request.query
        unsupported = [name for name in UNSUPPORTED_QUERY if name in query]
        if unsupported:
            return _cc_errors(
                400, VALIDATION_ERROR, *(f"'{name}' is not emulated by the sandbox." for name in unsupported)
            )
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= CONTACTS_MAX_LIMIT:
            return _cc_errors(
                400, VALIDATION_ERROR, f"'limit' must be an integer from 1 to {CONTACTS_MAX_LIMIT}."
            )
        include, problem = _parse_include(query.get("include"))
        if problem:
            return _cc_errors(400, VALIDATION_ERROR, problem)
        statuses = {value.strip() for value in query.get("status", "").split(",") if value.strip()}
        if statuses - set(CONTACT_STATUSES):
            return _cc_errors(
                400, VALIDATION_ERROR, f"'status' must be one or more of {', '.join(CONTACT_STATUSES)}."
            )
        lists = [value.strip().lower() for value in query.get("lists", "").split(",") if value.strip()]
        if len(lists) > CONTACTS_MAX_LISTS_FILTER:
            return _cc_errors(
                400, VALIDATION_ERROR, f"'lists' takes at most {CONTACTS_MAX_LISTS_FILTER} list ids."
            )
        offset = 0
        if query.get("cursor"):
            try:
                prefix, _, number = base64.urlsafe_b64decode(query["cursor"] + "==").decode().partition(":")
                offset = int(number)
                if prefix != "offset" or offset < 0:
                    raise ValueError(query["cursor"])
            except ValueError:
                return _cc_errors(400, VALIDATION_ERROR, "'cursor' is invalid.")
        wanted = email_key(query.get("email"))
        matches = [
            contact
            for contact in self._contacts.values()
            if (wanted is None or email_key(contact.get("email_address")) == wanted)
            and (not lists or any(list_id in contact["list_memberships"] for list_id in lists))
            and _has_status(contact, statuses)
        ]
        body: dict[str, Any] = {
            "contacts": [render_contact(contact, include) for contact in matches[offset : offset + limit]]
        }
        if query.get("include_count", "").lower() == "true":
            body["contacts_count"] = len(matches)
        if offset + limit < len(matches):
            cursor = base64.urlsafe_b64encode(f"offset:{offset + limit}".encode()).rstrip(b"=").decode()
            kept = [(name, value) for name, value in query.items() if name not in ("cursor", "limit")]
            body["_links"] = {
                "next": {
                    "href": f"{CONTACTS_PATH}?" + urlencode([("cursor", cursor), ("limit", limit), *kept])
                }
            }
        else:
            body["_links"] = {}
        return _json(200, body)

    # -- GET and PUT /v3/contacts/{contact_id} ------------------------------------------------------

    def _contact_item(self, request: _Request) -> _Reply:
        contact_id = request.path[len(CONTACTS_PATH) + 1 :].lower()
        contact = self._contacts.get(contact_id)
        if contact is None:
            return _cc_errors(404, NOT_FOUND, "Resource not found for the contact_id provided.")
        if request.method == "PUT":
            return self._update_contact(request, contact)
        include, problem = _parse_include(request.query.get("include"))
        if problem:
            return _cc_errors(400, VALIDATION_ERROR, problem)
        return _json(200, render_contact(contact, include))

    # -- POST /v3/contacts ---------------------------------------------------------------------------

    def _create_contact(self, request: _Request) -> _Reply:
        data, problem = _json_body(request)
        if problem:
            return problem
        errors = validate_contact(data, source_field="create_source")
        if errors:
            return _cc_errors(400, VALIDATION_ERROR, *errors)
        missing = self._missing_lists(data.get("list_memberships") or [])
        if missing:
            return missing
        email = (data.get("email_address") or {}).get("address")
        sms = (data.get("sms_channel") or {}).get("full_sms_address")
        existing = self._find(email) if email else None
        existing = existing or (self._find(sms=sms) if sms else None)
        if existing is not None:
            # CC: 409 when the email (or SMS number) exists in the account; unsubscribed and deleted
            # contacts still count as existing (cc-api.md 5.2). The message wording is not documented.
            what = "Email" if email and self._find(email) is existing else "SMS number"
            return _cc_errors(
                409,
                CONFLICT,
                f"Validation failed: {what} already exists for contact {existing['contact_id']}",
            )
        now = self._now_iso()
        source = data["create_source"]
        contact = self._new_contact(create_source=source, now=now)
        if email:
            self._set_email(contact, email, now)
            # No default is documented for a contact created without `permission_to_send`: the sandbox uses
            # `implicit`, what CC gives contacts an account adds in bulk (createImportJSONActivity).
            permission = data["email_address"].get("permission_to_send") or "implicit"
            self._set_permission(contact, permission, source, now)
            if permission == "unsubscribed" and data["email_address"].get("opt_out_reason"):
                contact["opt_out_reason"] = data["email_address"]["opt_out_reason"]
        self._write_resource(contact, data, source, now)
        return _json(201, render_contact(contact, INCLUDES))

    # -- PUT /v3/contacts/{contact_id} ---------------------------------------------------------------

    def _update_contact(self, request: _Request, contact: dict[str, Any]) -> _Reply:
        data, problem = _json_body(request)
        if problem:
            return problem
        errors = validate_contact(data, source_field="update_source")
        if errors:
            return _cc_errors(400, VALIDATION_ERROR, *errors)
        source = data["update_source"]
        if contact.get("deleted_at") and source != "Account":
            # "To restore a deleted contact you must specify the update_source as Account."
            return _cc_errors(
                400, VALIDATION_ERROR, "To restore a deleted contact, 'update_source' must be Account."
            )
        missing = self._missing_lists(data.get("list_memberships") or [])
        if missing:
            return missing
        email = (data.get("email_address") or {}).get("address")
        if email:
            other = self._find(email)
            if other is not None and other is not contact:
                return _cc_errors(
                    409,
                    CONFLICT,
                    f"Validation failed: Email already exists for contact {other['contact_id']}",
                )
        now = self._now_iso()
        # "Any properties left blank or not included in the request are overwritten with null value -
        # however this does not apply to contact subresources."
        for name in PUT_OVERWRITTEN:
            contact[name] = data.get(name)
        if email:
            self._set_email(contact, email, now)
            permission = data["email_address"].get("permission_to_send")
            if permission:
                self._set_permission(contact, permission, source, now)
            elif not contact.get("permission_to_send"):
                self._set_permission(contact, "implicit", source, now)
        self._write_resource(contact, data, source, now)
        contact["update_source"] = source
        # "If the contact being updated is deleted, the contact will be revived."
        contact["deleted_at"] = None
        return _json(200, render_contact(contact, INCLUDES))

    # -- POST /v3/contacts/sign_up_form --------------------------------------------------------------

    def _sign_up_form(self, request: _Request) -> _Reply:
        data, problem = _json_body(request)
        if problem:
            return problem
        errors = validate_sign_up(data)
        if errors:
            return _cc_errors(400, VALIDATION_ERROR, *errors)
        missing = self._missing_lists(data["list_memberships"])
        if missing:
            return missing
        return self._upsert(data)

    def _upsert(self, data: dict[str, Any]) -> _Reply:
        # CC: sign_up_form matches on the email address (or SMS number) and updates instead of answering 409.
        email = data.get("email_address") or None
        sms = data.get("sms_channel")
        sms_full = f"{sms['dial_code']}{sms['sms_address']}" if sms else None
        contact = self._find(email) if email else None
        contact = contact or (self._find(sms=sms_full) if sms_full else None)
        created = contact is None
        # A contact can have at most 50 lists and 25 custom fields (getContactById_200_response).
        lists = set(contact["list_memberships"] if contact else ()) | {
            i.lower() for i in data["list_memberships"]
        }
        if len(lists) > MAX_LISTS:
            return _cc_errors(
                400, VALIDATION_ERROR, f"A contact can be a member of at most {MAX_LISTS} lists."
            )
        fields = {item["custom_field_id"] for item in (contact or {}).get("custom_fields") or []}
        fields |= {item["custom_field_id"].lower() for item in data.get("custom_fields") or []}
        if len(fields) > CONTACT_MAX_CUSTOM_FIELDS:
            return _cc_errors(
                400,
                VALIDATION_ERROR,
                f"A contact can have at most {CONTACT_MAX_CUSTOM_FIELDS} custom fields.",
            )
        now = self._now_iso()
        if contact is None:
            contact = self._new_contact(create_source="Contact", now=now)
        if email:
            self._set_email(contact, email if created else contact.get("email_address") or email, now)
        # Partial update: only the properties sent change. Properties the spec does not define are ignored.
        for name in SIGN_UP_SCALARS:
            if data.get(name) is not None:
                contact[name] = data[name]
        if data.get("phone_number"):
            # sign_up_form's single phone has no kind; stored as `other`, the default kind CC gives the
            # import's primary `phone`.
            phone = self._phone(data["phone_number"], "other", "Contact", now)
            self._put_by_kind(contact["phone_numbers"], phone, MAX_PHONE_NUMBERS)
        if data.get("street_address"):
            address = self._address(data["street_address"], now)
            self._put_by_kind(contact["street_addresses"], address, MAX_STREET_ADDRESSES)
        if sms:
            self._set_sms(contact, sms, "Contact")
        # "Updates append new contact lists or custom fields to the existing ... arrays."
        self._add_lists(contact, data["list_memberships"])
        if data.get("custom_fields"):
            self._merge_custom_fields(contact, data["custom_fields"])
        if contact.get("email_address"):
            if created and self._config["confirmed_opt_in"]:
                # Confirmed Opt-In enabled: new contacts are pending until they click CC's email.
                self._set_permission(contact, "pending_confirmation", "Contact", now)
                contact["opt_in_source"] = "Contact"
            else:
                # New contacts: explicit, opt_in_source Contact. "Updated contacts have their
                # permission_to_send property set as explicit" - unsubscribed ones included.
                self._set_permission(contact, "explicit", "Contact", now)
        if not created:
            contact["update_source"] = "Contact"
        # "Updating a deleted contact restores the contact."
        contact["deleted_at"] = None
        contact["updated_at"] = now
        return _json(
            201 if created else 200,
            {"contact_id": contact["contact_id"], "action": "created" if created else "updated"},
        )

    # -- POST /v3/activities/add_list_memberships ----------------------------------------------------

    def _add_list_memberships(self, request: _Request) -> _Reply:
        data, problem = _json_body(request)
        if problem:
            return problem
        errors = validate_add_list_memberships(data)
        if errors:
            return _cc_errors(400, VALIDATION_ERROR, *errors)
        # The spec lists no 404 for this operation; the sandbox refuses unknown (or deleted) target and
        # source lists at once with 404, as every other write naming a list does, so a client learns
        # that a list is gone from the POST rather than from a failed activity.
        missing = self._missing_lists([*data["list_ids"], *(data["source"].get("list_ids") or [])])
        if missing:
            return missing
        now = self._now_iso()
        activity_id = str(uuid.uuid4())
        activity = {
            "activity_id": activity_id,
            "state": "initialized",
            "created_at": now,
            "updated_at": now,
            "percent_done": 0,
            "activity_errors": [],
            "status": {
                "items_total_count": 0,
                "items_completed_count": 0,
                "list_count": len(data["list_ids"]),
            },
            "_links": {"self": {"href": f"{ACTIVITY_PREFIX}{activity_id}"}},
        }
        self._activities[activity_id] = {
            "activity": activity,
            "data": data,
            "polls": 0,
            "kind": "add_list_memberships",
            "created": self.now(),  # type: ignore[attr-defined]
        }
        return _json(201, activity)

    def _run_add_list_memberships(self, record: dict[str, Any], now: str) -> None:
        """Complete an add_list_memberships activity: only list memberships change, never permission
        or details."""
        activity, data = record["activity"], record.pop("data")
        source = data["source"]
        excluded = {value.lower() for value in (data.get("exclude") or {}).get("contact_ids") or []}
        errors: list[str] = []
        if "contact_ids" in source and source["contact_ids"]:
            targets = []
            for contact_id in dict.fromkeys(value.lower() for value in source["contact_ids"]):
                contact = self._contacts.get(contact_id)
                if contact is None or contact.get("deleted_at"):
                    # Not documented by CC; the sandbox skips such ids and says so.
                    errors.append(f"Contact {contact_id} was not found.")
                else:
                    targets.append(contact)
        elif source.get("list_ids"):
            wanted = {value.lower() for value in source["list_ids"]}
            targets = [
                contact
                for contact in self._contacts.values()
                if not contact.get("deleted_at") and wanted & set(contact["list_memberships"])
            ]
        else:
            targets = [contact for contact in self._contacts.values() if _has_status(contact, {"active"})]
        targets = [contact for contact in targets if contact["contact_id"] not in excluded]
        live = self._live_list_ids()
        list_ids = [list_id.lower() for list_id in data["list_ids"] if list_id.lower() in live]
        for contact in targets:
            # "Each contact can be a member of up to 50 lists."
            room = MAX_LISTS - len(contact["list_memberships"])
            new = [list_id for list_id in list_ids if list_id not in contact["list_memberships"]]
            if len(new) > room:
                errors.append(
                    f"Contact {contact['contact_id']} would be a member of more than {MAX_LISTS} lists."
                )
                new = new[: max(room, 0)]
            if new:
                self._add_lists(contact, new)
                contact["updated_at"] = now
        activity["status"]["items_total_count"] = len(targets)
        activity["status"]["items_completed_count"] = len(targets)
        activity["activity_errors"] = errors

    # -- POST /v3/activities/contacts_json_import (the contact part) --------------------------------

    def _import_contact(
        self, item: dict[str, Any], list_ids: list[str], sms_permission: str, now: str
    ) -> bool:
        """Import one contact; False when it could not be added to the lists (unsubscribed)."""
        email = item.get("email") or None
        # The import's sms_number is a US number without its dial code (1231231234 or 123-123-1234).
        digits = _sms_key(item.get("sms_number"))
        sms_full = f"1{digits}" if digits and len(digits) == 10 else digits
        contact = self._find(email) if email else None
        contact = contact or (self._find(sms=sms_full) if sms_full else None)
        if contact is None:
            contact = self._new_contact(create_source="Account", now=now)
            if email:
                self._set_email(contact, email, now)
                # CC: "Importing a new contact ... sets the contact's email permission_to_send property to
                # implicit and the opt_in_source property as Account."
                self._set_permission(contact, "implicit", "Account", now)
        # "Importing an existing contact only updates the contact properties you include in the request."
        for name in IMPORT_SCALARS:
            if item.get(name) is not None:
                contact[name] = item[name]
        for name, kind in IMPORT_PHONES.items():
            if item.get(name):
                self._put_by_kind(
                    contact["phone_numbers"], self._phone(item[name], kind, "Account", now), MAX_PHONE_NUMBERS
                )
        addresses: dict[str, dict[str, Any]] = {}
        for name, (kind, part) in IMPORT_ADDRESSES.items():
            if item.get(name):
                addresses.setdefault(kind, {"kind": kind})[part] = item[name]
        for fields in addresses.values():
            # "street2 ... is automatically appended to the street value."
            if fields.get("street2"):
                fields["street"] = f"{fields.get('street', '')} {fields.pop('street2')}".strip()
            self._put_by_kind(contact["street_addresses"], self._address(fields, now), MAX_STREET_ADDRESSES)
        if item.get("sms_number"):
            consent = {"sms_consent_permission": sms_permission, "consent_type": "promotional_sms"}
            channel = {
                "full_sms_address": sms_full,
                "sms_address": item["sms_number"],
                "dial_code": "1",
                "country_code": "US",
                "sms_channel_consents": [consent],
            }
            self._set_sms(contact, channel, "Account")
            if item.get("sms_consent_date"):
                contact["sms_consent_date"] = item["sms_consent_date"]
        custom = {name[3:]: value for name, value in item.items() if str(name).startswith("cf:")}
        if custom:
            # Imported custom fields are keyed by name; the sandbox has no custom-field definitions to map
            # names to ids, so they are kept apart and not shown in `custom_fields`.
            contact.setdefault("imported_custom_fields", {}).update(custom)
        contact["deleted_at"] = None
        contact["updated_at"] = now
        # `cannot_add_to_list_count`: "previously unsubscribed contacts in the import - they cannot be added
        # to a list".
        if contact.get("permission_to_send") == "unsubscribed":
            return False
        self._add_lists(contact, list_ids)
        return True


def _has_status(contact: dict[str, Any], statuses: set[str]) -> bool:
    """getAllContacts' `status` filter; no status: every contact that is not deleted."""
    deleted = bool(contact.get("deleted_at"))
    if not statuses:
        return not deleted
    if "all" in statuses:
        return True
    if deleted:
        return "deleted" in statuses
    permission = contact.get("permission_to_send") or "not_set"
    if "active" in statuses and permission in ("explicit", "implicit"):
        return True
    return permission in statuses and permission in PERMISSIONS
