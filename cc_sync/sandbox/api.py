"""The ``/v3`` API's front door: Bearer tokens and scopes, the rate limit and the daily quota (per client_id),
faults, latency, and the route table that sends each path to its endpoint.

A new ``/v3`` endpoint is a handler in the module of its resource (contacts, lists, activities) and a line
in :meth:`ApiMixin._api_route`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .activities import ACTIVITY_PREFIX, ADD_LIST_MEMBERSHIPS_PATH, IMPORT_PATH, ActivitiesMixin
from .contacts import CONTACTS_PATH, SIGN_UP_PATH, ContactsMixin
from .faults import PROCESSED_FAULTS, draw_fault, fault_reply, garble
from .replies import _THROTTLED, _cc_errors, _json, _Reply, _Request
from .state import _AccessToken

API_PREFIX = "/v3"
# CC's rate-limit page shows `quota_exceeded` / "Limit Exceeded"; no CC source confirms that key, hence the
# `quota_error_key` setting (None: the quota 429 looks exactly like throttling).
_QUOTA_MESSAGE = "Limit Exceeded"
_UNAUTHORIZED = {"error_key": "unauthorized", "error_message": "Unauthorized"}


class ApiMixin(ContactsMixin, ActivitiesMixin):
    """Admission to ``/v3`` and its routes, in front of the resource parts; mixed into ``Sandbox``."""

    def _api(self, request: _Request, entry: dict[str, Any]) -> _Reply:
        sign_up = request.path == SIGN_UP_PATH
        self._describe_api_request(request, entry)
        reply = self._api_checked(request, entry, sign_up)
        # `delay` emulates CC's latency on every /v3 answer, errors included.
        reply.wait += self._config["delay"]
        return reply

    @staticmethod
    def _describe_api_request(request: _Request, entry: dict[str, Any]) -> None:
        """Fill the log entry's ``email`` / ``detail`` so tests can tell requests apart."""
        if request.method == "GET" and request.path == CONTACTS_PATH:
            entry["email"] = request.query.get("email")
            return
        if request.method not in ("POST", "PUT"):
            return
        try:
            body = json.loads(request.body)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        email = body.get("email_address")
        if isinstance(email, dict):  # POST/PUT /v3/contacts: an EmailAddress object
            email = email.get("address")
        entry["email"] = email if isinstance(email, str) else None
        try:
            if request.path == IMPORT_PATH:
                entry["detail"] = f"{len(body['import_data'])} contacts"
            elif request.path == ADD_LIST_MEMBERSHIPS_PATH:
                source = body["source"]
                what = next(name for name in ("contact_ids", "list_ids") if source.get(name))
                entry["detail"] = f"{len(source[what])} {what} -> {len(body['list_ids'])} lists"
        except (KeyError, TypeError, StopIteration, AttributeError):
            pass

    def _api_checked(self, request: _Request, entry: dict[str, Any], sign_up: bool) -> _Reply:
        header = request.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        token = self._access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        now = time.monotonic()
        if token is not None:  # an expired token still says whose it was, for the log
            entry["client_id"] = token.client_id
            entry["account"] = token.account.account_id
        if token is None or now >= token.expires_at:
            return _json(401, _UNAUTHORIZED, error="unauthorized")

        # CC's limits are per API key (client_id), not per token or account.
        client_id = token.client_id
        day = self._quota_day()
        usage = self._quota.get(client_id)
        if usage is None or usage[0] != day:
            usage = self._quota[client_id] = [day, 0]
        quota = self._config["daily_quota"]
        if quota is not None and usage[1] >= quota:
            return self._quota_reply()
        window = self._api_windows.setdefault(client_id, deque())
        if self._over_rate(window, self._config["api_rate"], now):
            return _json(429, _THROTTLED, error="throttled")
        fault = draw_fault(self._rng, self._config["faults"])
        entry["fault"] = fault
        if fault == "throttle":  # a throttled request is not an accepted one
            return fault_reply(self._rng, fault, oauth=False)
        window.append(now)
        usage[1] += 1
        if fault and fault not in PROCESSED_FAULTS:
            return fault_reply(self._rng, fault, oauth=False)
        # An access token sees only the account that approved it.
        with self._serving_account(token.account):
            reply = self._api_call(request, token, sign_up)
        timeout = self._config["timeout_seconds"]
        return garble(fault, reply, timeout_seconds=timeout, sign_up=sign_up) if fault else reply

    def _quota_reply(self) -> _Reply:
        key = self._config["quota_error_key"]
        if key is None:
            return _json(429, _THROTTLED, error="throttled")
        return _json(429, {"error_key": key, "error_message": _QUOTA_MESSAGE}, error=key)

    def _api_route(self, path: str) -> tuple[tuple[str, ...], str, Callable[[_Request], _Reply]] | None:
        routes: dict[str, tuple[tuple[str, ...], str, Callable[[_Request], _Reply]]] = {
            "/v3/account/summary": (("GET",), "account_read", self._account_summary),
            "/v3/contact_lists": (("GET",), "contact_data", self._contact_lists),
            SIGN_UP_PATH: (("POST",), "contact_data", self._sign_up_form),
            CONTACTS_PATH: (("GET", "POST"), "contact_data", self._contacts_collection),
            IMPORT_PATH: (("POST",), "contact_data", self._contacts_json_import),
            ADD_LIST_MEMBERSHIPS_PATH: (("POST",), "contact_data", self._add_list_memberships),
        }
        if path in routes:
            return routes[path]
        if path.startswith(ACTIVITY_PREFIX):
            return ("GET",), "contact_data", self._activity
        if path.startswith(CONTACTS_PATH + "/") and "/" not in path[len(CONTACTS_PATH) + 1 :]:
            return ("GET", "PUT"), "contact_data", self._contact_item
        return None

    def _api_call(self, request: _Request, token: _AccessToken, sign_up: bool) -> _Reply:
        route = self._api_route(request.path)
        if route is None:
            return _cc_errors(404, "not_found", f"No resource at {request.path}.")
        methods, scope, handler = route
        if request.method not in methods:
            return _cc_errors(
                405, "method_not_allowed", f"{request.method} is not allowed on {request.path}."
            )
        if scope not in token.scope.split():
            return _cc_errors(403, "forbidden", f"The access token does not include the '{scope}' scope.")
        queue_full = self._queue_limit_reply(request)
        if queue_full:
            return queue_full
        return handler(request)
