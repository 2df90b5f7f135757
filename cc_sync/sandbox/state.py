"""The sandbox's state: the one lock, the settings, the accounts and every store, the clock, and snapshots.

:class:`SandboxState` is the base of each part mixed into :class:`~cc_sync.sandbox.Sandbox`; the parts read
and change this state only while holding ``_lock``. Contacts, lists and activities belong to an account
(:class:`_Account`); the parts reach those of the account being served through ``_contacts``, ``_serving``...
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .config import _DEFAULT_CONFIG, _build_config

_LOG_LIMIT = 100_000


def _iso(timestamp: float) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``, as CC writes timestamps."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class _Account:
    """One CC account: its summary (``GET /v3/account/summary``), lists, contacts and bulk activities."""

    summary: dict[str, Any]
    lists: list[dict[str, Any]]
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # contact_id -> contact, in order
    emails: dict[str, str] = field(default_factory=dict)  # lower-cased address -> contact_id
    sms_numbers: dict[str, str] = field(default_factory=dict)  # digits of the SMS number -> contact_id
    activities: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def account_id(self) -> str:
        return str(self.summary["encoded_account_id"])

    def clear(self) -> None:
        self.contacts.clear()
        self.emails.clear()
        self.sms_numbers.clear()
        self.activities.clear()


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    created: float
    account: _Account
    used: bool = False


@dataclass
class _Grant:
    grant_id: str
    client_id: str
    scope: str
    refresh_token: str | None
    last_used: float
    account: _Account


@dataclass
class _AccessToken:
    client_id: str
    scope: str
    expires_at: float
    grant_id: str
    account: _Account


@dataclass
class _Device:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    status: str = "pending"  # pending, approved, denied, consumed
    last_poll: float | None = None
    account: _Account | None = None  # the account that approved it


class SandboxState:
    """Settings and stores behind one lock, and the public calls that read, change or reset them."""

    def __init__(self, *, clock: Callable[[], float] | None = None, **config: Any) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self._lock = threading.Lock()
        self._config = _build_config(_DEFAULT_CONFIG, config)
        # The default account's summary and lists are the `account` and `lists` settings; accounts added
        # with add_account() come after it. `_serving` is the account whose data the code running under
        # the lock reads and writes: the access token's account during a /v3 request (see _serving_account).
        self._accounts = [_Account(self._config["account"], self._config["lists"])]
        self._serving = self._accounts[0]
        self._clear()

    def _clear(self) -> None:
        for account in self._accounts:
            account.clear()
        # The account a browser is "signed in to" at CC: it approves the next consent or device code.
        self._signed_in = self._accounts[0]
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, str] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._devices: dict[str, _Device] = {}
        self._user_codes: dict[str, str] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self._token_calls: Counter[str] = Counter()
        self._token_windows: dict[str, deque[float]] = {}  # client_id -> accepted token calls
        self._api_windows: dict[str, deque[float]] = {}
        self._quota: dict[str, list[Any]] = {}
        self._rng = random.Random(self._config["seed"])

    # -- the sandbox's "now" -------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's current time (POSIX seconds) from ``clock``: timestamps and the quota day use it.

        Pass ``Sandbox(clock=...)`` (or set ``sandbox.clock``) to pin time in tests. Token lifetimes and
        rates run on the monotonic clock, unaffected.
        """
        return float(self.clock())

    def _now_iso(self) -> str:
        return _iso(self.now())

    def _quota_day(self) -> str:
        # The quota day rolls over at `quota_reset_hour_utc` (CC documents 00:00 UTC; clients should not
        # rely on it, so tests can move it).
        shifted = self.now() - self._config["quota_reset_hour_utc"] * 3600
        return datetime.fromtimestamp(shifted, timezone.utc).date().isoformat()

    # -- accounts (the caller holds the lock) -------------------------------------------------------

    # The stores of the account being served, so the endpoints read and write "the account" as CC's do.
    @property
    def _contacts(self) -> dict[str, dict[str, Any]]:
        return self._serving.contacts

    @property
    def _emails(self) -> dict[str, str]:
        return self._serving.emails

    @property
    def _sms_numbers(self) -> dict[str, str]:
        return self._serving.sms_numbers

    @property
    def _activities(self) -> dict[str, dict[str, Any]]:
        return self._serving.activities

    @contextmanager
    def _serving_account(self, account: _Account) -> Iterator[_Account]:
        """Serve ``account``'s data until the block ends (the caller holds the lock)."""
        previous, self._serving = self._serving, account
        try:
            yield account
        finally:
            self._serving = previous

    def _find_account(self, account_id: str | None) -> _Account:
        """The account with this ``encoded_account_id`` (None: the default one); LookupError if unknown."""
        if account_id is None:
            return self._accounts[0]
        for account in self._accounts:
            if account.account_id == account_id:
                return account
        known = ", ".join(account.account_id for account in self._accounts)
        raise LookupError(f"no account {account_id!r}; known: {known}")

    # -- helpers the parts share (the caller holds the lock) ----------------------------------------

    def _app(self, client_id: str | None) -> dict[str, Any] | None:
        for app in self._config["apps"]:
            if app["client_id"] == client_id:
                return app
        return None

    @staticmethod
    def _over_rate(window: deque[float], rate: float | None, now: float) -> bool:
        """Would one more request exceed ``rate`` in the sliding window of accepted ``window`` times?

        The window is one second, widened to ``1/rate`` seconds for rates below one per second.
        """
        if rate is None:
            return False
        span = max(1.0, 1.0 / rate)
        while window and window[0] <= now - span:
            window.popleft()
        return len(window) >= max(1, int(rate * span))

    def _settle_activities(self) -> None:
        """Complete the bulk activities whose background time has passed (see ActivitiesMixin)."""
        raise NotImplementedError

    # -- configuration and inspection --------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change settings at run time (validated first; ``faults`` dicts are replaced, not merged).

        Changing ``seed`` re-seeds the fault RNG. Raises ValueError for unknown or invalid settings.
        """
        with self._lock:
            config = _build_config(self._config, changes)
            account_id = config["account"]["encoded_account_id"]
            if any(account.account_id == account_id for account in self._accounts[1:]):
                raise ValueError(f"account {account_id!r} exists already (added with add_account)")
            self._config = config
            self._accounts[0].summary = config["account"]
            self._accounts[0].lists = config["lists"]
            if "seed" in changes:
                self._rng = random.Random(config["seed"])

    def config(self) -> dict[str, Any]:
        """The current settings, client secrets included (a deep copy)."""
        with self._lock:
            return copy.deepcopy(self._config)

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: contacts, lists, request log, token-call counts, quota use and
        the settings without client secrets. ``contacts``, ``lists`` and ``activities`` are the default
        account's; ``accounts`` has every account's, the default first. ``GET /_sandbox/state`` returns the same."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        config = copy.deepcopy(self._config)
        for app in config["apps"]:
            app["confidential"] = app.pop("client_secret") is not None
        day = self._quota_day()
        accounts = [
            {
                "account": copy.deepcopy(account.summary),
                "lists": copy.deepcopy(account.lists),
                "contacts": copy.deepcopy(list(account.contacts.values())),
                "activities": [copy.deepcopy(record["activity"]) for record in account.activities.values()],
            }
            for account in self._accounts
        ]
        return {
            "contacts": accounts[0]["contacts"],
            "activities": accounts[0]["activities"],
            "lists": accounts[0]["lists"],
            "accounts": accounts,
            "signed_in": self._signed_in.account_id,
            "requests": copy.deepcopy(list(self._log)),
            "token_calls": dict(self._token_calls),
            "quota": {client: used for client, (d, used) in self._quota.items() if d == day},
            "config": config,
        }

    def requests(self, *, account: str | None = None, client_id: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first (control calls and ``GET /`` are not logged).

        ``account`` / ``client_id`` keep the requests made for that account (with its tokens, codes or
        device codes) or by that application; each entry says both (None where the request named none).
        """
        with self._lock:
            return [
                copy.deepcopy(entry)
                for entry in self._log
                if (account is None or entry.get("account") == account)
                and (client_id is None or entry.get("client_id") == client_id)
            ]

    def contacts(self, account: str | None = None) -> list[dict[str, Any]]:
        """Stored contacts of ``account`` (an ``encoded_account_id``; default: the default account), in
        creation order."""
        with self._lock:
            self._settle_activities()
            return copy.deepcopy(list(self._find_account(account).contacts.values()))

    def activities(self, account: str | None = None) -> list[dict[str, Any]]:
        """Bulk activities (imports) of ``account`` as ``GET /v3/activities/{id}`` shows them, oldest first."""
        with self._lock:
            self._settle_activities()
            activities = self._find_account(account).activities.values()
            return [copy.deepcopy(record["activity"]) for record in activities]

    def lists(self, account: str | None = None) -> list[dict[str, Any]]:
        """The contact lists of ``account`` (default: the default account)."""
        with self._lock:
            return copy.deepcopy(self._find_account(account).lists)

    def token_calls(self, grant_type: str | None = None) -> int:
        """How many token-endpoint calls arrived (rejected ones included), optionally of one grant type."""
        with self._lock:
            if grant_type is None:
                return sum(self._token_calls.values())
            return self._token_calls[grant_type]

    def reset(self) -> None:
        """Forget contacts, codes, tokens, device authorizations, logs, counters and quota use.

        Settings, accounts and lists stay; the default account is signed in again; the fault RNG is
        re-seeded so a reset sandbox replays the same faults.
        """
        with self._lock:
            self._clear()

    def reset_quota(self, client_id: str | None = None) -> None:
        """Start a new quota day now, for every application or only ``client_id`` (the day also rolls over
        at ``quota_reset_hour_utc``, default 00:00 UTC)."""
        with self._lock:
            if client_id is None:
                self._quota.clear()
            else:
                self._quota.pop(client_id, None)
