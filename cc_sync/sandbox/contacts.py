"""The v3 contact endpoints: ``GET|POST /v3/contacts``, ``GET|PUT /v3/contacts/{contact_id}`` and
``POST /v3/contacts/sign_up_form``; also seeding a contact (:meth:`ContactsMixin.add_contact`) and looking one up.

Behaviour follows CC's published contract, Swagger build 3.0.161 (``getContactById``, ``getAllContacts``,
``createContact``, ``updateContact``, ``createOrUpdateContact`` alias ``sign_up_form``). Where the spec is
silent the choice made is said in a comment and listed in docs/testing.md. How contacts are stored:
:mod:`cc_sync.sandbox.contact_store`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from .contact_store import (
    CONTACT_SCALARS,
    INCLUDES,
    PUT_OVERWRITTEN,
    ContactStoreMixin,
    _has_status,
    email_key,
    render_contact,
)
from .lists import ListsMixin
from .replies import _cc_errors, _json, _json_body, _Reply, _Request
from .validation import (
    CONTACT_MAX_CUSTOM_FIELDS,
    MAX_LISTS,
    MAX_PHONE_NUMBERS,
    MAX_STREET_ADDRESSES,
    NOT_FOUND,
    VALIDATION_ERROR,
    validate_contact,
    validate_sign_up,
)

CONTACTS_PATH = "/v3/contacts"
SIGN_UP_PATH = "/v3/contacts/sign_up_form"
CONFLICT = "contacts.api.conflict"

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
SIGN_UP_SCALARS = CONTACT_SCALARS


def _parse_include(value: str | None) -> tuple[list[str], str | None]:
    if not value:
        return [], None
    names = [name.strip() for name in value.split(",") if name.strip()]
    wrong = [name for name in names if name not in INCLUDES]
    if wrong:
        return [], f"'include' must be one or more of {', '.join(INCLUDES)}; not {', '.join(wrong)}."
    return names, None


class ContactsMixin(ContactStoreMixin, ListsMixin):
    """The contact endpoints and the public calls that seed or show a contact; mixed into ``Sandbox``."""

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
        account: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Seed a contact that already exists at CC; returns it as ``GET /v3/contacts/{id}`` does (with
        every subresource included).

        ``fields`` are other ``createContact`` properties (``job_title``, ``company_name``,
        ``custom_fields``, ``phone_numbers``, ``street_addresses``, ``birthday_month``/``birthday_day``,
        ``anniversary``, ``taggings``, ``notes``, ``sms_channel``), plus ``create_source`` (default
        ``"Account"``), ``opt_in_source`` and ``opt_out_reason``. ``deleted=True`` seeds a deleted contact
        (``deleted_at`` set). ``account``: whose contact (default: the default account). Not logged and not
        counted against any limit. Raises ValueError for an invalid contact, an address that exists
        already or a list that does not exist, LookupError for an unknown account.
        """
        with self._lock, self._serving_account(self._find_account(account)):
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
        with self._lock:
            self._settle_activities()
            found = self._find(email)
            return render_contact(found, INCLUDES) if found else None

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
