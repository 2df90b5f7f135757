"""The sandbox's state: the one lock, the settings, every store, the clock, and snapshots of it all.

:class:`SandboxState` is the base of each part mixed into :class:`~cc_sync.sandbox.Sandbox`; the parts read
and change this state only while holding ``_lock``.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .config import _DEFAULT_CONFIG, _build_config

_LOG_LIMIT = 100_000


def _iso(timestamp: float) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``, as CC writes timestamps."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    created: float
    used: bool = False


@dataclass
class _Grant:
    grant_id: str
    client_id: str
    scope: str
    refresh_token: str | None
    last_used: float


@dataclass
class _AccessToken:
    client_id: str
    scope: str
    expires_at: float
    grant_id: str


@dataclass
class _Device:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    status: str = "pending"  # pending, approved, denied, consumed
    last_poll: float | None = None


class SandboxState:
    """Settings and stores behind one lock, and the public calls that read, change or reset them."""

    def __init__(self, *, clock: Callable[[], float] | None = None, **config: Any) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self._lock = threading.Lock()
        self._config = _build_config(_DEFAULT_CONFIG, config)
        self._clear()

    def _clear(self) -> None:
        self._contacts: dict[str, dict[str, Any]] = {}  # contact_id -> contact, in creation order
        self._emails: dict[str, str] = {}  # lower-cased address -> contact_id
        self._sms_numbers: dict[str, str] = {}  # digits of the SMS number -> contact_id
        self._activities: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, str] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._devices: dict[str, _Device] = {}
        self._user_codes: dict[str, str] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self._token_calls: Counter[str] = Counter()
        self._token_window: deque[float] = deque()
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
            self._config = config
            if "seed" in changes:
                self._rng = random.Random(config["seed"])

    def config(self) -> dict[str, Any]:
        """The current settings, client secrets included (a deep copy)."""
        with self._lock:
            return copy.deepcopy(self._config)

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: contacts, lists, request log, token-call counts, quota use and
        the settings without client secrets. ``GET /_sandbox/state`` returns the same."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        config = copy.deepcopy(self._config)
        for app in config["apps"]:
            app["confidential"] = app.pop("client_secret") is not None
        day = self._quota_day()
        return {
            "contacts": copy.deepcopy(list(self._contacts.values())),
            "activities": [copy.deepcopy(record["activity"]) for record in self._activities.values()],
            "lists": copy.deepcopy(self._config["lists"]),
            "requests": copy.deepcopy(list(self._log)),
            "token_calls": dict(self._token_calls),
            "quota": {client: used for client, (d, used) in self._quota.items() if d == day},
            "config": config,
        }

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (control calls and ``GET /`` are not logged)."""
        with self._lock:
            return copy.deepcopy(list(self._log))

    def contacts(self) -> list[dict[str, Any]]:
        """Stored contacts, in creation order."""
        with self._lock:
            self._settle_activities()
            return copy.deepcopy(list(self._contacts.values()))

    def activities(self) -> list[dict[str, Any]]:
        """Bulk activities (imports) as ``GET /v3/activities/{id}`` shows them, oldest first."""
        with self._lock:
            self._settle_activities()
            return [copy.deepcopy(record["activity"]) for record in self._activities.values()]

    def lists(self) -> list[dict[str, Any]]:
        """The account's contact lists."""
        with self._lock:
            return copy.deepcopy(self._config["lists"])

    def token_calls(self, grant_type: str | None = None) -> int:
        """How many token-endpoint calls arrived (rejected ones included), optionally of one grant type."""
        with self._lock:
            if grant_type is None:
                return sum(self._token_calls.values())
            return self._token_calls[grant_type]

    def reset(self) -> None:
        """Forget contacts, codes, tokens, device authorizations, logs, counters and quota use.

        Settings and lists stay; the fault RNG is re-seeded so a reset sandbox replays the same faults.
        """
        with self._lock:
            self._clear()

    def reset_quota(self) -> None:
        """Start a new quota day now (the day also rolls over at ``quota_reset_hour_utc``, default 00:00 UTC)."""
        with self._lock:
            self._quota.clear()
