"""The account: ``GET /v3/account/summary``, ``GET /v3/contact_lists``, and the lists every write checks.

A list that never existed, or was deleted at CC (:meth:`ListsMixin.delete_list`), answers 404 on any write
naming it.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from .replies import _b64url, _cc_errors, _json, _Reply, _Request
from .state import SandboxState
from .validation import NOT_FOUND, VALIDATION_ERROR

LISTS_MAX_LIMIT = 1000


class ListsMixin(SandboxState):
    """The account summary and its contact lists, mixed into ``Sandbox``."""

    def delete_list(self, list_id: str, account: str | None = None) -> dict[str, Any]:
        """Delete a list as if someone deleted it at CC: it disappears from ``GET /v3/contact_lists``
        (except with ``status=deleted``/``all``, with ``deleted_at``), contacts lose it, and every write naming
        it answers 404. Returns the list. ``account``: whose list (default: the default account's).
        Raises LookupError for an unknown or already deleted list, or an unknown account."""
        with self._lock, self._serving_account(self._find_account(account)):
            return self._delete_list(list_id)

    def _live_list_ids(self) -> set[str]:
        return {item["list_id"] for item in self._serving.lists if not item.get("deleted_at")}

    def _missing_lists(self, list_ids: Iterable[str]) -> _Reply | None:
        """404 naming every list that does not exist (never did, or was deleted at CC)."""
        live = self._live_list_ids()
        unknown = [list_id for list_id in list_ids if str(list_id).lower() not in live]
        if unknown:
            return _cc_errors(404, NOT_FOUND, *(f"List {list_id} was not found." for list_id in unknown))
        return None

    def _delete_list(self, list_id: str) -> dict[str, Any]:
        key = str(list_id).lower()
        for item in self._serving.lists:
            if item["list_id"] == key and not item.get("deleted_at"):
                item["deleted_at"] = self._now_iso()
                item["updated_at"] = item["deleted_at"]
                # A deleted list has no members any more.
                for contact in self._contacts.values():
                    if key in contact["list_memberships"]:
                        contact["list_memberships"].remove(key)
                return copy.deepcopy(item)
        raise LookupError(f"no list {list_id!r} (or it is deleted already)")

    # -- GET /v3/account/summary, GET /v3/contact_lists ---------------------------------------------

    def _account_summary(self, request: _Request) -> _Reply:
        return _json(200, dict(self._serving.summary))

    def _contact_lists(self, request: _Request) -> _Reply:
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 0
        # The spec's text says 1-500 but its schema says `maximum: 1000` (build 3.0.161, getAllLists): the
        # schema is the contract a generated client enforces, so the sandbox accepts up to 1000.
        if not 1 <= limit <= LISTS_MAX_LIMIT:
            return _cc_errors(
                400, VALIDATION_ERROR, f"'limit' must be an integer from 1 to {LISTS_MAX_LIMIT}."
            )
        # "Accepts comma-separated status values": all, active, deleted.
        statuses = {value.strip() for value in query.get("status", "active").split(",")}
        if not statuses or not statuses <= {"all", "active", "deleted"}:
            return _cc_errors(400, VALIDATION_ERROR, "'status' must be one or more of all, active, deleted.")
        offset = 0
        if query.get("cursor"):
            try:
                prefix, _, number = base64.urlsafe_b64decode(query["cursor"] + "==").decode().partition(":")
                offset = int(number)
                if prefix != "offset" or offset < 0:
                    raise ValueError(query["cursor"])
            except ValueError:
                return _cc_errors(400, VALIDATION_ERROR, "'cursor' is invalid.")
        lists = [
            item
            for item in self._serving.lists
            if "all" in statuses or ("deleted" if item.get("deleted_at") else "active") in statuses
        ]
        if "name" in query:
            lists = [item for item in lists if item["name"] == query["name"]]
        membership = query.get("include_membership_count")
        items = []
        for item in lists[offset : offset + limit]:
            entry = {
                key: item[key]
                for key in ("list_id", "name", "description", "favorite", "created_at", "updated_at")
            }
            if item.get("deleted_at"):
                entry["deleted_at"] = item["deleted_at"]
            if membership in ("all", "active"):
                entry["membership_count"] = sum(
                    item["list_id"] in contact["list_memberships"] for contact in self._contacts.values()
                )
            items.append(entry)
        body: dict[str, Any] = {"lists": items}
        if query.get("include_count", "").lower() == "true":
            body["lists_count"] = len(lists)
        if offset + limit < len(lists):
            cursor = _b64url(f"offset:{offset + limit}".encode())
            kept = [
                (name, query[name])
                for name in ("include_count", "include_membership_count", "name", "status")
                if name in query
            ]
            # CC's `next` href is a path starting with /v3/: clients prefix the server root.
            body["_links"] = {
                "next": {
                    "href": "/v3/contact_lists?" + urlencode([("cursor", cursor), ("limit", limit), *kept])
                }
            }
        return _json(200, body)
