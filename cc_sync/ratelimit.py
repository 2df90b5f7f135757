"""The request budget shared by every process: per-second pacing and the daily quota.

CC counts requests per API key, not per worker (https://developer.constantcontact.com/api_guide/rate_limits.html),
and Celery's ``rate_limit`` is per worker. So each request first reserves the next free slot in one database
row, then sleeps until that slot. Slots are spaced evenly, which, unlike a per-second counter, never lets two
bursts meet at a second boundary (4 at the end of one second, 4 at the start of the next).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import transaction

from .db import lock_row
from .exceptions import QuotaExceeded
from .models import RateLimitState

# Slots are spaced a little wider than 1/rate. The time between a slot and the request reaching CC varies
# (scheduling on a busy host, the network), and ``rate`` slots span ``SPACING_MARGIN`` seconds: a request
# that arrives up to ``SPACING_MARGIN - 1`` seconds (80 ms) late still cannot put rate+1 requests into one
# sliding second. With 40 ms, a loaded two-core CI machine drew a 429 in 40 requests.
SPACING_MARGIN = 1.08


def seconds_until_utc_midnight(now: float | None = None) -> float:
    """Seconds from ``now`` until the next 00:00 UTC, when CC resets the daily quota."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=dt_timezone.utc)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - moment).total_seconds()


def reserve(name: str, rate: float, daily_limit: int | None = None) -> float:
    """Reserve the next slot in budget ``name``; return how many seconds to wait before using it.

    Raises :class:`QuotaExceeded` (retry after 00:00 UTC) when ``daily_limit`` requests were already
    reserved today.
    """
    interval = SPACING_MARGIN / rate if rate > 0 else 0.0
    with transaction.atomic():
        state = lock_row(RateLimitState, name)
        now = time.time()
        today = datetime.fromtimestamp(now, tz=dt_timezone.utc).date()
        if state.day != today:
            state.day, state.day_count = today, 0
        if daily_limit is not None and state.day_count >= daily_limit:
            raise QuotaExceeded(
                f"The daily budget of {daily_limit} Constant Contact requests is spent.",
                retry_after=seconds_until_utc_midnight(now) + 60,
                error_key="quota_exceeded",
            )
        slot = max(now, state.next_slot)
        state.next_slot = slot + interval
        state.day_count += 1
        state.save()
    return max(0.0, slot - now)


def wait_for_slot(name: str, rate: float, daily_limit: int | None = None) -> None:
    """Reserve a slot in budget ``name`` and sleep until it is due."""
    delay = reserve(name, rate, daily_limit)
    if delay:
        time.sleep(delay)


def requests_today(name: str = "api") -> int:
    """How many requests budget ``name`` has reserved since 00:00 UTC."""
    state = RateLimitState.objects.filter(name=name).first()
    today = datetime.now(tz=dt_timezone.utc).date()
    return state.day_count if state and state.day == today else 0
