"""G5, rate compliance: many workers keep to CC's per-second limit and its daily quota."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.db.models import DurationField, ExpressionWrapper, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from cc_sync.models import RateLimitState, Signup
from cc_sync.sandbox import Sandbox
from cc_sync.sync import enqueue_signup
from rig.database import status_counts
from rig.deployment import Rig
from rig.figures import max_in_any_window

from .checks import (
    Result,
    Status,
    amplification_note,
    contact_requests,
    creates,
    emails,
    message_figures,
    store_check,
    synced_rows_check,
    wait_for_statuses,
)


def simulate_midnight(sandbox: Sandbox, cc_resets: bool = True) -> int:
    """What 00:00 UTC does: cc_sync's day count starts again, held rows come due, CC's quota (maybe) resets.

    Rows held for the quota are moved as if the clock had reached their ``next_attempt_at``: that time and
    their last publish (``enqueued_at``) move back by the same amount, so they are due now and their last
    publish is as old as it would be after the hours until midnight. The quota block
    (``RateLimitState.blocked_until``, the time of the next probe) is reached the same way: it becomes now.
    ``cc_resets=False`` leaves the sandbox's quota spent: CC's day has not ended yet. Returns how many rows
    were moved.
    """
    now = timezone.now()
    if cc_resets:
        sandbox.reset_quota()
    RateLimitState.objects.filter(name="api").update(day_count=0)
    RateLimitState.objects.filter(name="api", blocked_until__gt=now).update(blocked_until=now)
    skipped = ExpressionWrapper(F("next_attempt_at") - Value(now), output_field=DurationField())
    return Signup.objects.filter(status=Status.PENDING, next_attempt_at__gt=now).update(
        enqueued_at=Coalesce(F("enqueued_at"), Value(now)) - skipped, next_attempt_at=now
    )


def rate_compliance(rig: Rig, quick: bool, result: Result) -> None:
    total = 200 if quick else 3000
    rate = 20.0 if quick else 4.0
    quota = 100 if quick else 500
    local_limit = quota + 5
    workers = 4
    submit_rate = 100.0 if quick else 20.0
    expiry_every = 10.0 if quick else 90.0
    hold = 5.0 if quick else 10.0
    # Production's 300 s at full size. The quick size drains 100 rows a day at 20/s (a queue of 5 s), so 60 s
    # is still far above any message's wait in the queue: no row is re-published while its message waits.
    requeue_after = 60.0 if quick else 300.0
    probe_interval = 10.0 if quick else 30.0
    late = 3 * probe_interval + 5
    result.injected = [
        f"{total} signups submitted at {submit_rate:g}/s through {workers} Celery worker processes (prefork, "
        "2 pool processes each)",
        f"sandbox: {rate:g} API requests/s (sliding one-second window, 429 above it), 1 token request/s, daily "
        f"quota {quota}; cc_sync: API_RATE {rate:g}, TOKEN_RATE 1, DAILY_LIMIT {local_limit} (a little above "
        "the sandbox's quota, so that both CC's `quota_exceeded` 429 and cc_sync's own budget are hit)",
        f"access tokens live 30 s at the sandbox and are refreshed 10 s before expiry (TOKEN_LEEWAY); the "
        f"sandbox also revokes every access token every {expiry_every:g} s while signups are syncing "
        "(401 -> one refresh by whichever process sees it first)",
        "each simulated midnight (once every remaining row waits for the next day, and after a hold of "
        f"{hold:g} s): the sandbox's `reset_quota()`; the `RateLimitState` row `api` set to 0 requests today; "
        "each held row's `next_attempt_at` set to now and its `enqueued_at` moved back by the same amount "
        "(as if the clock had advanced to that row's retry time). Nothing else is touched",
        f"CC's day ends late once: at the first simulated midnight cc_sync's clock passes its presumed reset "
        f"(00:00 UTC) but the sandbox's quota stays spent for {late:g} s more, and the sandbox revokes the "
        f"access tokens then (so the first probe meets a 401 and a refresh); QUOTA_PROBE_INTERVAL "
        f"{probe_interval:g} s (production: 3600 s)",
        f"REQUEUE_AFTER {requeue_after:g} s (production: 300 s), far above a message's wait in the queue: "
        "with the scaled 5 s of the other scenarios the sweeper would re-publish every row still waiting its "
        "turn every 5 s (see the notes)",
    ]
    sandbox = rig.start_sandbox(api_rate=rate, token_rate=1, daily_quota=quota, token_lifetime=30)
    rig.configure(
        API_RATE=rate,
        TOKEN_RATE=1.0,
        DAILY_LIMIT=float(local_limit),
        TOKEN_LEEWAY=10.0,
        REQUEUE_AFTER=requeue_after,
        QUOTA_PROBE_INTERVAL=probe_interval,
    )
    rig.connect()
    for n in range(workers):
        rig.start_worker(f"q{n}", concurrency=2)
    rig.start_beat()
    rig.wait_consumers(workers, 60)

    queue_peak = 0
    expiries = 0
    last_expiry = time.monotonic()

    def tick() -> None:
        nonlocal queue_peak, expiries, last_expiry
        queue_peak = max(queue_peak, rig.redis.queue_length() or 0)
        if (
            time.monotonic() - last_expiry >= expiry_every
            and Signup.objects.filter(
                status__in=[Status.PENDING, Status.SYNCING], next_attempt_at__lte=timezone.now()
            ).exists()
        ):
            sandbox.expire_access_tokens()
            expiries += 1
            last_expiry = time.monotonic()

    addresses = emails("rate-", total)
    started = time.monotonic()
    submitted = 0
    while submitted < total:
        due = min(total, int((time.monotonic() - started) * submit_rate) + 1)
        while submitted < due:
            enqueue_signup(addresses[submitted])
            submitted += 1
        tick()
        time.sleep(0.05)
    rig.note("all submitted")

    def settled(counts: dict[str, int]) -> bool:
        later = timezone.now() + timedelta(hours=1)
        waiting = Signup.objects.filter(status=Status.PENDING, next_attempt_at__gt=later).count()
        return counts.get(Status.SYNCED, 0) + waiting == total

    per_day: list[int] = []
    moved_total = 0
    during_holds: list[dict[str, Any]] = []
    all_settled = True
    late_window: list[float] = []
    # Each day: the drain at the rate, the quota's block, and the rows told to wait for a probe's answer
    # (cc_sync.ratelimit.PROBE_GRACE plus retry_delay's spread: over MAX_COUNTDOWN, so the sweeper queues
    # them again, REQUEUE_AFTER after their last publish); and the late reset once.
    day_limit = (total / quota) * (quota / rate * 1.5 + 60 + requeue_after + 150) + late + 300
    deadline = time.monotonic() + day_limit
    while True:
        if not wait_for_statuses(rig, settled, max(10.0, deadline - time.monotonic()), tick):
            all_settled = False
            break
        synced = Signup.objects.filter(status=Status.SYNCED).count()
        per_day.append(synced - sum(per_day))
        if synced == total or len(per_day) > total / quota + 2:
            break
        hold_start = time.time()
        time.sleep(hold)
        during_holds += [e for e in sandbox.requests() if e["kind"] == "api" and e["time"] > hold_start]
        if not late_window:
            # cc_sync's presumed reset passes, CC's does not (yet): it must probe sparingly and keep waiting.
            moved = simulate_midnight(sandbox, cc_resets=False)
            # Overnight the access token may have been revoked: the probe then meets a 401 first.
            sandbox.expire_access_tokens()
            late_window.append(time.time())
            rig.note(f"day {len(per_day)}: {per_day[-1]} synced; midnight for cc_sync only, {moved} rows due")
            late_end = time.monotonic() + late
            while time.monotonic() < late_end:
                rig.supervise()
                tick()
                time.sleep(0.5)
            sandbox.reset_quota()
            late_window.append(time.time())
            rig.note(f"CC's quota reset {late:g} s after cc_sync's presumed reset")
        else:
            moved = simulate_midnight(sandbox)
            rig.note(f"day {len(per_day)}: {per_day[-1]} synced; midnight simulated, {moved} rows due now")
        moved_total += moved
    drained = Signup.objects.filter(status=Status.SYNCED).count() == total
    elapsed = time.monotonic() - started

    log = sandbox.requests()
    api = [e for e in log if e["kind"] == "api"]
    token = [e for e in log if e["kind"] == "token"]
    posts = creates(log)
    throttled = [e for e in api if e["status"] == 429 and e["error"] == "throttled"]
    quota_429 = [e for e in api if e["status"] == 429 and e["error"] == "quota_exceeded"]
    counts = status_counts()
    api_max = max_in_any_window([e["time"] for e in api])
    late_requests: list[dict[str, Any]] = []
    resumed_after: float | None = None
    if len(late_window) == 2:
        late_requests = [e for e in api if late_window[0] <= e["time"] <= late_window[1]]
        accepted = [e["time"] for e in api if e["time"] > late_window[1] and e["status"] != 429]
        resumed_after = accepted[0] - late_window[1] if accepted else None
    late_times = [e["time"] for e in late_requests]
    late_gaps = [b - a for a, b in zip(late_times, late_times[1:], strict=False)]
    # CC may still accept a few requests of its old day (its count can be below cc_sync's, which counts
    # slots given up unused): then sending on is right. What must not happen is a request sooner than a probe
    # interval after a refusal (a 429, or a 401 to a probe that met the revoked token).
    refused = [e["status"] in (401, 429) for e in late_requests]
    after_refusal = [gap for gap, was_refused in zip(late_gaps, refused, strict=False) if was_refused]
    token_max = max_in_any_window([e["time"] for e in token])
    result.figures.update(
        {
            "signups": total,
            "API requests seen by the sandbox": len(api),
            "most API requests in any 1 s window": api_max,
            "token requests (all refreshes)": len(token),
            "most token requests in any 1 s window": token_max,
            "access-token revocations / 401 answers": f"{expiries} / {sum(1 for e in api if e['status'] == 401)}",
            "unforced 429 (rate)": f"{len(throttled)} ({100 * len(throttled) / max(1, len(api)):.2f} %)",
            "429 quota_exceeded from the sandbox": len(quota_429),
            "synced per simulated day": ", ".join(str(n) for n in per_day),
            "API requests during the holds before each midnight": len(during_holds),
            "held rows made due at the simulated midnights (each gets a new message)": moved_total,
            "creates (POST /v3/contacts)": len(posts),
            "other sync-path requests (lookups, sign_up_form, add_list_memberships)": (
                len(contact_requests(log)) - len(posts)
            ),
            "API requests while CC's day had not ended after cc_sync's presumed reset (status/error)": ", ".join(
                f"{e['status']} {e['error'] or ''}".strip() for e in late_requests
            ),
            "seconds between those requests": ", ".join(f"{g:.1f}" for g in late_gaps),
            "first accepted request after CC's late reset, s after it": (
                round(resumed_after, 1) if resumed_after is not None else "none"
            ),
            "time from the first submission to the last sync, s": round(elapsed, 1),
            "final statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            "peak broker queue length": queue_peak,
            **message_figures(rig, total),
        }
    )
    amplification_note(result, total, requeue_after)
    result.check(f"never more than {rate:g} API requests in any 1 s window", api_max <= rate, api_max)
    result.check("never more than 1 token request in any 1 s window", token_max <= 1, token_max)
    result.check("unforced 429s under 0.5 %", len(throttled) < 0.005 * max(1, len(api)), len(throttled))
    result.check(
        f"the daily quota stopped the sync each day (at most {local_limit} synced a day); the rest waited for "
        "the next day",
        all_settled and len(per_day) > 1 and max(per_day) <= local_limit,
        per_day,
    )
    result.check("no API request while rows waited for the next day", not during_holds, len(during_holds))
    result.check(
        f"CC's day ending {late:g} s after cc_sync's presumed reset: cc_sync probed, kept waiting while CC "
        f"refused, and never sent a request less than QUOTA_PROBE_INTERVAL ({probe_interval:g} s) after a "
        "refusal",
        len(late_window) == 2
        and any(refused)
        and sum(refused) <= late / probe_interval + 1
        and all(g >= probe_interval - 0.5 for g in after_refusal),
        f"{len(late_requests)} requests {[(e['status'], e['error']) for e in late_requests]}, gaps "
        f"{[round(g, 1) for g in late_gaps]}",
    )
    result.check("everything finished after the resets, nothing lost", drained, counts)
    result.figures.update(store_check(result, sandbox, addresses, list_id=rig.list_id))
    synced_rows_check(result, sandbox)
