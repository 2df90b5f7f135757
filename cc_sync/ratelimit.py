"""The request budget shared by every process: per-second pacing and the daily quota.

CC counts requests per API key, not per worker (https://developer.constantcontact.com/api_guide/rate_limits.html),
and Celery's ``rate_limit`` is per worker. So each request first reserves the next free slot in one database
row, then sleeps until that slot. Slots are spaced evenly, which, unlike a per-second counter, never lets two
bursts meet at a second boundary (4 at the end of one second, 4 at the start of the next).

How CC measures its 4 requests per second is not documented; the pacing assumes the strictest reading, a
sliding one-second window over the times requests *reach* CC. What can break it is a request that leaves late
for its slot while the one ``rate`` slots later leaves on time. So ``rate`` slots span
:data:`SPACING_MARGIN` seconds, a little more than one, and a request that could not leave within
:data:`PACING_TOLERANCE` of its slot (a busy host, a long wait for the row) is not sent in it: it takes a later
slot. A 429 ``throttled`` is answered by backing off (no slot for anyone until a second has passed) and
sending the same request once more in a later slot (:mod:`cc_sync.client`).

The daily quota is decided from behaviour as well as from CC's words. CC documents a 429 with the error key
``quota_exceeded`` and a reset at 00:00 UTC, but no CC source we could find confirms either in practice. So
the quota is believed spent when CC says so, when the local daily budget is spent, or when
:data:`QUOTA_429S` requests in a row, each sent in its reserved slot, were refused with a 429. While it is
believed spent, ``RateLimitState(name="api").blocked_until`` holds the time of the next *probe*: until
then no request is sent; then exactly one is, and if CC still refuses it the next probe is
``CC_SYNC["QUOTA_PROBE_INTERVAL"]`` later. Any accepted request clears the block.

The usual reservation is one statement (an ``UPDATE ... RETURNING``, :func:`cc_sync.db.update_returning`);
a new day, a block, a spent budget or a database without ``RETURNING`` take the locked path.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import F, FloatField, Value
from django.db.models.functions import Greatest

from .conf import app_settings
from .db import lock_row, update_returning
from .exceptions import QuotaExceeded
from .models import RateLimitState

logger = logging.getLogger("cc_sync.ratelimit")

# ``rate`` consecutive API slots span this many seconds, so the drain reaches 96 % of CC's limit at most
# (1.08 s before, 92.6 %). A request may still reach CC up to this margin (40 ms) later than the one ``rate``
# slots after it: PACING_TOLERANCE of that is a late wake-up, checked before sending; the rest is the way
# from the check to CC (HTTP stack, network, CC's front end). Measured with the check off, in the drain
# benchmark at 4/s on a two-core machine at a load of 2 to 4: 99 % of the requests left within 32 ms of
# their slot (the most: 34 ms); at 20/s, 95 % within 39 ms.
SPACING_MARGIN = 1.04
# A request that could not leave within this many seconds of its slot takes a later slot instead: sent that
# late, it could meet the request ``rate`` slots on inside one sliding second.
PACING_TOLERANCE = 0.03
# Slots given up that way before a request is sent all the same (and then its 429 says nothing of the
# quota): a host too busy to keep any slot must still make progress.
LATE_RESERVATIONS = 3
# The last of those slots is followed by this many seconds that nobody else gets: sent up to that much late,
# the request still cannot meet the one ``rate`` slots on inside one sliding second.
LATE_HEADROOM = 1.0
# A request that opens a new connection reaches CC a TCP and a TLS handshake (two round trips) later than one
# on a kept-alive connection. Its slot is followed by this many seconds that nobody else gets, enough for
# round trips of up to about 100 ms (cc_sync.client decides when a connection may be new).
NEW_CONNECTION_HEADROOM = 0.25
# The token endpoint's slots (1 per second) are spaced wider: a refresh waits for the connection row's lock
# after its slot, and is called about once a day per connection, so the spacing costs nothing.
TOKEN_SPACING_MARGIN = 1.08
# A refresh that could not leave within this many seconds of its slot takes a later one (cc_sync.oauth): of
# the 80 ms the margin leaves at 1 request a second, 30 ms are kept for the way to CC (the connection's lock
# and the HTTP stack come after the check).
TOKEN_PACING_TOLERANCE = 0.05
# After a 429 ``throttled`` nobody gets a slot for this long: whatever CC counted before it has left a
# one-second window by then.
THROTTLE_BACKOFF = 1.0
# 429s in a row, each on a request sent in its slot, that mean the daily quota is spent whatever CC's error
# key. Not 3: at the fault suite's 3 % of stray 429s, 3 in a row turn up in about one run of 2,500 requests
# in 15; 5 in a row in about one in 16,000. Spending the quota costs only these few refused requests more.
QUOTA_429S = 5
# The first probe after the presumed reset waits this long past 00:00 UTC, for clocks that differ a little.
RESET_MARGIN = 60.0
# A probe's answer is awaited this long (beyond the HTTP timeouts) before another request may probe:
# a probe lost to a timeout or a dead worker must not hold the block for a whole probe interval.
PROBE_GRACE = 60.0

_CACHE_KEY = "cc_sync:quota:{name}"
_local = threading.local()


def _reservations() -> dict[str, _Reservation]:
    """This thread's last reservation per budget."""
    if not hasattr(_local, "reservations"):
        _local.reservations = {}
    return _local.reservations


@dataclass
class _Reservation:
    """What this thread's last reservation in a budget saw, for the answer to the request it paced."""

    slot: float
    probe: bool  # the one request let through to see whether CC's quota is back
    watched: bool  # a streak of 429s or a block was recorded: an accepted request must clear it
    late: float = 0.0  # seconds after its slot the request was sent


def _aware(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)


def seconds_until_utc_midnight(now: float | None = None) -> float:
    """Seconds from ``now`` until the next 00:00 UTC, CC's documented reset of the daily quota."""
    moment = _aware(time.time() if now is None else now)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - moment).total_seconds()


def presumed_reset(now: float) -> float:
    """Unix time just after CC's documented reset (00:00 UTC) following ``now``."""
    return now + seconds_until_utc_midnight(now) + RESET_MARGIN


def next_probe(now: float) -> float:
    """Unix time of the next probe while CC refuses: a probe interval on, or just after 00:00 UTC if sooner."""
    return min(now + app_settings.QUOTA_PROBE_INTERVAL, presumed_reset(now))


def spacing(name: str, rate: float) -> float:
    """Seconds between two slots of budget ``name`` at ``rate`` requests per second."""
    if rate <= 0:
        return 0.0
    # Every token budget: the settings' application's ("token") and each own application's ("token:<key>").
    family = name.partition(":")[0]
    return (TOKEN_SPACING_MARGIN if family == "token" else SPACING_MARGIN) / rate


def reserve(
    name: str, rate: float, daily_limit: int | None = None, again: bool = False, headroom: float = 0.0
) -> float:
    """Reserve the next slot in budget ``name``; return how many seconds to wait before using it.

    Raises :class:`QuotaExceeded` without reserving anything when ``daily_limit`` requests were already
    reserved today (UTC), or while the quota is believed spent and it is not yet time for the next probe.
    ``again``: a later slot for a request whose slot passed unused; the day's count already holds it, so
    neither counts nor checks it again. ``headroom``: seconds after this slot that nobody else gets, for a
    request that may reach CC late.
    """
    interval = spacing(name, rate) + headroom
    now = time.time()
    counted = 0 if again else 1
    if again:
        daily_limit = None
    reserved = _reserve_at_once(name, interval, daily_limit, now, counted)
    if reserved is not None:
        slot, watched = reserved
        _reservations()[name] = _Reservation(slot, probe=False, watched=watched)
        return max(0.0, slot - now)
    return _reserve_locked(name, interval, daily_limit, counted)


def _reserve_at_once(
    name: str, interval: float, daily_limit: int | None, now: float, counted: int
) -> tuple[float, bool] | None:
    """The usual reservation in one statement: ``(slot, watched)``, or None for the locked path."""
    open_today = RateLimitState.objects.filter(name=name, day=_aware(now).date(), blocked_until__isnull=True)
    if daily_limit is not None:
        open_today = open_today.filter(day_count__lt=daily_limit)
    after = Greatest(F("next_slot"), Value(now, output_field=FloatField())) + Value(
        interval, output_field=FloatField()
    )
    updated = update_returning(open_today, next_slot=after, day_count=F("day_count") + counted)
    if not updated:
        return None
    return updated[0].next_slot - interval, _watched(updated[0], now)


def _watched(state: RateLimitState, now: float) -> bool:
    """Whether a request paced in ``state`` must re-read the block after its wait and report its answer."""
    return state.quota_429s > 0 or state.watch_until > now


def _reserve_locked(name: str, interval: float, daily_limit: int | None, counted: int) -> float:
    """Reserve under the row lock: the first request of a day, a probe, a refusal, or no ``RETURNING``."""
    refusal: QuotaExceeded | None = None
    slot = now = 0.0
    probe = False
    with transaction.atomic():
        state = lock_row(RateLimitState, name)
        now = time.time()
        today = _aware(now).date()
        if state.day != today:
            state.day, state.day_count = today, 0
        blocked = state.blocked_until.timestamp() if state.blocked_until else None
        if daily_limit is not None and state.day_count >= daily_limit:
            # Our own count resets at 00:00 UTC; CC's may not, so the first request after that probes.
            until = max(blocked or 0.0, presumed_reset(now))
            refusal = _refusal(
                f"The daily budget of {daily_limit} Constant Contact requests is spent.", until, now
            )
            if blocked != until:
                state.blocked_until = _aware(until)
                state.save(update_fields=["blocked_until"])
                _remember(name, reason=f"The local daily budget of {daily_limit} requests is spent.")
        elif blocked is not None and now < blocked:
            refusal = _refusal("Constant Contact's daily quota is believed spent.", blocked, now)
        else:
            if blocked is not None:
                # This request probes; the others wait until its answer has had time to come.
                probe = True
                state.blocked_until = _aware(now + _probe_answer_wait())
            slot = max(now, state.next_slot)
            state.next_slot = slot + interval
            state.day_count += counted
            state.save()
            _reservations()[name] = _Reservation(slot, probe, watched=probe or _watched(state, now))
    if refusal is not None:
        raise refusal
    if probe:
        logger.info("Probing whether Constant Contact's daily quota is available again.")
    return max(0.0, slot - now)


def _probe_answer_wait() -> float:
    return app_settings.CONNECT_TIMEOUT + app_settings.READ_TIMEOUT + PROBE_GRACE


def _refusal(message: str, until: float, now: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"{message} Nothing is sent until {_aware(until):%Y-%m-%d %H:%M:%S} UTC.",
        retry_after=max(0.0, until - now),
        error_key="quota_exceeded",
    )


def wait_for_slot(name: str, rate: float, daily_limit: int | None = None, headroom: float = 0.0) -> None:
    """Reserve a slot in budget ``name`` and sleep until it is due.

    Returns within :data:`PACING_TOLERANCE` of the slot: when this process could not wake up in time (a busy
    host), the slot is given up and a later one reserved, at most :data:`LATE_RESERVATIONS` times; the last
    is followed by :data:`LATE_HEADROOM`. ``headroom``: see :func:`reserve`. Raises :class:`QuotaExceeded`
    when the quota is believed spent, also when a watched reservation finds, after its wait, that a block
    began meanwhile (another worker's request was refused while this one waited).
    """
    for attempt in range(LATE_RESERVATIONS + 1):
        last = attempt == LATE_RESERVATIONS
        delay = reserve(
            name, rate, daily_limit, again=attempt > 0, headroom=max(headroom, LATE_HEADROOM if last else 0.0)
        )
        if delay:
            time.sleep(delay)
        reservation = _reservations()[name]
        reservation.late = max(0.0, time.time() - reservation.slot)
        # The last slot is kept however late (with LATE_HEADROOM to spare): record_429 then does not count
        # a 429 to it as a sign of the quota.
        if reservation.late <= PACING_TOLERANCE or reservation.probe or last:
            break
        logger.debug(
            "A %s slot passed %.3f s before the request could leave; taking a later one.",
            name,
            reservation.late,
        )
    if reservation.watched and not reservation.probe:
        _refuse_if_blocked(name)


def _refuse_if_blocked(name: str) -> None:
    # One read, only for watched reservations (a streak of 429s, or the probation after an accepted probe):
    # a reservation is made before its wait, and a refusal to another worker meanwhile must stop it.
    blocked = RateLimitState.objects.filter(name=name).values_list("blocked_until", flat=True).first()
    now = time.time()
    if blocked is not None and blocked.timestamp() > now:
        _reservations().pop(name, None)
        raise _refusal("Constant Contact's daily quota is believed spent.", blocked.timestamp(), now)


def record_429(error_key: str = "", name: str = "api") -> float | None:
    """Learn from a 429 to the request this thread last paced in ``name``.

    Returns the seconds until the next probe when the daily quota is now believed spent (raise
    :class:`QuotaExceeded` with them), or ``None`` for ordinary throttling.
    """
    reservation: _Reservation | None = _reservations().pop(name, None)
    paced = reservation is None or reservation.late <= PACING_TOLERANCE
    probe = reservation is not None and reservation.probe
    said_quota = error_key == "quota_exceeded"
    with transaction.atomic():
        state = lock_row(RateLimitState, name)
        now = time.time()
        blocked = state.blocked_until.timestamp() if state.blocked_until else None
        if paced or said_quota:
            state.quota_429s += 1
        if probe:
            until: float | None = next_probe(now)  # CC still refuses: wait for the next probe
            reason = "Constant Contact still refused the probe request; it is tried again later."
        elif blocked is not None and blocked > now:
            until = blocked  # sent before the block began: it changes nothing
            reason = ""
        elif said_quota:
            # CC's own word (cc-api.md section 8.1): wait for its documented reset, then probe.
            until = presumed_reset(now)
            reason = "Constant Contact answered 429 quota_exceeded."
        elif state.quota_429s >= QUOTA_429S:
            # Only behaviour says so: look again after a probe interval, in case it was something else.
            until = next_probe(now)
            reason = (
                f"Constant Contact refused {state.quota_429s} requests in a row with a 429 although cc_sync "
                "kept to its pacing."
            )
        else:
            until, reason = None, ""
            # Back off: no slot for anyone until a second has passed; the refused request takes a later one.
            state.next_slot = max(state.next_slot, now + THROTTLE_BACKOFF)
        if until is not None:
            state.blocked_until = _aware(until)
        state.save(update_fields=["quota_429s", "blocked_until", "next_slot"])
        count = state.quota_429s
    _remember(name, reason=reason, last_429_at=_aware(now))
    if until is None:
        return None
    if reason:
        logger.warning("%s Requests wait until %s UTC.", reason, f"{_aware(until):%Y-%m-%d %H:%M:%S}")
    logger.debug("%s consecutive 429s in budget %s.", count, name)
    return max(0.0, until - now)


def record_accepted(name: str = "api") -> None:
    """CC took the request this thread last paced in ``name`` (it answered, not with a 429).

    The quota is not spent: end a block and a streak of 429s. A database write only when the reservation
    saw one, so the usual request costs nothing here.
    """
    reservation: _Reservation | None = _reservations().pop(name, None)
    if reservation is None or not reservation.watched:
        return
    rows = RateLimitState.objects.filter(name=name)
    cleared: dict[str, Any] = {"quota_429s": 0, "blocked_until": None}
    if reservation.probe:
        # CC took the probe, but its day may not have ended (it may have a few requests left of the old
        # one): for a probe interval every reservation re-reads the block after its wait, so that CC's next
        # refusal stops the requests other workers have already reserved.
        cleared["watch_until"] = time.time() + app_settings.QUOTA_PROBE_INTERVAL
    else:
        rows = rows.exclude(quota_429s=0, blocked_until=None)
    if rows.update(**cleared):
        logger.info("Constant Contact accepts requests again; the daily quota is not spent.")
        _remember(name, reason="")


def _remember(name: str, **fields: Any) -> None:
    # Shown to admins only; the decision lives in the database row. A cache that fails must not stop a sync.
    try:
        info = cache.get(_CACHE_KEY.format(name=name)) or {}
        info.update({k: v for k, v in fields.items() if v is not None})
        cache.set(_CACHE_KEY.format(name=name), info, timeout=7 * 24 * 3600)
    except Exception:  # noqa: BLE001 - any cache backend error
        logger.debug("Could not record the quota state in the cache.", exc_info=True)


def quota_status(name: str = "api", now: float | None = None) -> dict[str, Any]:
    """The daily quota as cc_sync believes it, for the admin and ``manage.py cc_sync_status``.

    Keys: ``blocked`` (bool: believed spent, nothing sent but probes), ``blocked_until`` (aware datetime of
    the next probe, or None), ``reason`` (str), ``consecutive_429s`` (int), ``last_429_at`` (aware datetime
    or None; kept in Django's cache), ``requests_today`` and ``daily_limit`` (the local budget),
    ``probe_interval`` (seconds).
    """
    now = time.time() if now is None else now
    state = RateLimitState.objects.filter(name=name).first()
    blocked_until = state.blocked_until if state else None
    try:
        info = cache.get(_CACHE_KEY.format(name=name)) or {}
    except Exception:  # noqa: BLE001 - any cache backend error
        info = {}
    reason = str(info.get("reason") or "")
    if blocked_until is not None and not reason:
        reason = "Constant Contact's daily quota is believed spent."
    if blocked_until is None:
        reason = ""
    return {
        "blocked": blocked_until is not None,
        "blocked_until": blocked_until,
        "reason": reason,
        "consecutive_429s": state.quota_429s if state else 0,
        "last_429_at": info.get("last_429_at"),
        "requests_today": requests_today(name, now=now),
        "daily_limit": app_settings.DAILY_LIMIT,
        "probe_interval": app_settings.QUOTA_PROBE_INTERVAL,
    }


def requests_today(name: str = "api", now: float | None = None) -> int:
    """How many requests budget ``name`` has reserved since 00:00 UTC."""
    state = RateLimitState.objects.filter(name=name).first()
    today = _aware(time.time() if now is None else now).date()
    return state.day_count if state and state.day == today else 0
