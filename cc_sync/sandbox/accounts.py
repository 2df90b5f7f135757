"""Several CC accounts and applications: adding them, choosing the account that approves the next
authorization, and the faults that hit one account or one application (a revoked grant, a spent quota).

An *application* is a CC API key (``client_id`` and secret); its 4 requests/s, daily quota and token endpoint
1 request/s are counted per application, as CC counts them per API key. An *account* is a CC account with
its own lists, contacts and activities, named by its ``encoded_account_id`` (``GET /v3/account/summary``).
Every token is bound to the application that asked for it and the account that approved it.
The default application and account are the ``apps[0]``, ``account`` and ``lists`` settings.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .config import DEFAULT_APP, DEFAULT_LISTS, _build_config, _normalize_list
from .state import SandboxState, _Account


class AccountsMixin(SandboxState):
    """Accounts, applications and their targeted faults, mixed into ``Sandbox``."""

    def add_account(
        self,
        account_id: str,
        *,
        organization_name: str | None = None,
        lists: Iterable[Mapping[str, Any]] | None = None,
        **summary: Any,
    ) -> dict[str, Any]:
        """Add a CC account; returns its ``GET /v3/account/summary`` body.

        ``account_id`` is its ``encoded_account_id``. ``lists`` are ``{"list_id", "name"}`` dicts; by default
        the names of :data:`DEFAULT_LISTS` with ids of this account's own (so no list id is shared with
        another account). ``summary`` adds other summary fields (``contact_email``, ``country_code``...).
        Raises ValueError for an empty or existing account id or invalid lists.
        """
        if not isinstance(account_id, str) or not account_id.strip():
            raise ValueError(f"account_id must be a non-empty string, not {account_id!r}")
        if lists is None:
            lists = [{**item, "list_id": _list_id(account_id, item["name"])} for item in DEFAULT_LISTS]
        if not isinstance(lists, Iterable) or isinstance(lists, (str, Mapping)):
            raise ValueError("lists must be a list of {'list_id', 'name'} dicts")
        normalized = [_normalize_list(item) for item in lists]
        if len({item["list_id"] for item in normalized}) != len(normalized):
            raise ValueError("list_ids must be unique")
        body = {
            **summary,
            "organization_name": organization_name or f"Sandbox Organization {account_id}",
            "encoded_account_id": account_id,
        }
        with self._lock:
            if any(account.account_id == account_id for account in self._accounts):
                raise ValueError(f"account {account_id!r} exists already")
            self._accounts.append(_Account(body, normalized))
            return copy.deepcopy(body)

    def accounts(self) -> list[dict[str, Any]]:
        """Every account's ``GET /v3/account/summary`` body, the default account first."""
        with self._lock:
            return [copy.deepcopy(account.summary) for account in self._accounts]

    def add_app(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        flow: str = "authorization_code",
        redirect_uris: Iterable[str] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Register another CC application (an API key with its own rate and quota); returns it.

        ``client_secret`` is required for the ``authorization_code`` flow and must be None for ``pkce``
        and ``device``; ``redirect_uris`` default to the default app's. Raises ValueError for an invalid
        app or a client_id in use. The same as adding it to the ``apps`` setting.
        """
        app = {
            "client_id": client_id,
            "client_secret": client_secret,
            "flow": flow,
            "redirect_uris": list(DEFAULT_APP["redirect_uris"] if redirect_uris is None else redirect_uris),
            "name": name or f"Sandbox app {client_id}",
        }
        with self._lock:
            self._config = _build_config(self._config, {"apps": [*self._config["apps"], app]})
            return copy.deepcopy(self._config["apps"][-1])

    def sign_in(self, account: str | None = None) -> dict[str, Any]:
        """Sign the sandbox's browser user in to ``account`` (None: the default account): the consent
        page and ``/device`` approve for it from now on (a consent form's ``account`` field overrides it).
        Returns the account summary; raises LookupError for an unknown account."""
        with self._lock:
            self._signed_in = self._find_account(account)
            return copy.deepcopy(self._signed_in.summary)

    def revoke_grant(self, *, account: str | None = None, client_id: str | None = None) -> int:
        """Revoke the grants of ``account`` and/or application ``client_id`` (both None: every grant), as a
        user disconnecting the app at CC: their refresh tokens answer ``invalid_grant`` and their access
        tokens 401. Returns how many grants were revoked."""
        with self._lock:
            if account is not None:
                self._find_account(account)
            revoked = {
                grant_id
                for grant_id, grant in self._grants.items()
                if (account is None or grant.account.account_id == account)
                and (client_id is None or grant.client_id == client_id)
            }
            for grant_id in revoked:
                del self._grants[grant_id]
            for refresh in [token for token, grant_id in self._refresh_tokens.items() if grant_id in revoked]:
                del self._refresh_tokens[refresh]
            for access in [
                token for token, value in self._access_tokens.items() if value.grant_id in revoked
            ]:
                del self._access_tokens[access]
            return len(revoked)

    def spend_quota(self, client_id: str | None = None) -> int:
        """Use up today's ``daily_quota`` of application ``client_id`` (default: the first): its next
        ``/v3`` request answers 429 until the quota day rolls over or :meth:`reset_quota`. Other
        applications keep theirs. Returns the quota. Raises ValueError if the quota is off or the
        application unknown."""
        with self._lock:
            app = self._app(client_id) if client_id else self._config["apps"][0]
            if app is None:
                raise ValueError(f"no app with client_id {client_id!r}")
            quota = self._config["daily_quota"]
            if quota is None:
                raise ValueError("daily_quota is None: there is no quota to spend")
            self._quota[app["client_id"]] = [self._quota_day(), quota]
            return int(quota)


def _list_id(account_id: str, name: str) -> str:
    # Stable across runs, and never the id of another account's list.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cc-sync-sandbox/{account_id}/{name}"))
