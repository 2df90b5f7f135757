"""How the sandbox stores contacts and shows them in CC's shape; shared by the contact endpoints, the bulk
activities and seeding.

Contacts are stored flat (``email_address`` as a string, ``permission_to_send`` and ``opt_in_source`` at the
top level, as :meth:`Sandbox.contacts` has always shown them); every response body is rendered into the
spec's shape by :func:`render_contact`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from typing import Any

from .state import SandboxState
from .validation import PERMISSIONS

# getAllContacts / getContactById `include` values, in the spec's order.
INCLUDES = ("custom_fields", "list_memberships", "phone_numbers", "street_addresses", "taggings", "notes")
#: A contact's top-level scalar properties, as sign_up_form, POST/PUT /contacts and the import name them.
CONTACT_SCALARS = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)
# Top-level properties a PUT overwrites with null when left out ("this does not apply to contact
# subresources"). `email_address` and `sms_channel` are channel subresources and are kept.
PUT_OVERWRITTEN = CONTACT_SCALARS


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


class ContactStoreMixin(SandboxState):
    """Finding, creating and changing stored contacts (the caller holds the lock); mixed into ``Sandbox``."""

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
        stored: dict[str, Any] = {
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
