"""4. Token economy: refresh calls over a simulated day, cc_sync against refreshing before every call.

A simulated day lasts ``DAY`` seconds, so one simulated second is ``86400 / DAY`` real seconds of CC time.
CC's access tokens live 24 h: in the simulated day they live ``DAY`` seconds, so there is one expiry per
day, as with CC. cc_sync's ``TOKEN_LEEWAY`` (300 s of 86,400) is scaled by the same factor. The day's
signups arrive evenly over the day. The connection is half a day old when the day starts (its access token
expires at noon), so the day contains exactly one expiry whatever the phase.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import requests
from django.utils import timezone

from cc_sync.conf import DEFAULTS
from cc_sync.models import Connection

from .common import (
    bench_rig,
    create_body,
    fmt,
    make_signups,
    publish_signups,
    start_worker,
    status_line,
    table,
    wait_synced,
)

TITLE = "Token economy"
CC_DAY = 86_400.0
CC_TOKEN_LIFETIME = 86_400.0


MIN_LEEWAY = 1.0


def simulated_day(rig: Any, day: float, signups: int, concurrency: int) -> dict[str, Any]:
    scale = CC_DAY / day
    lifetime = CC_TOKEN_LIFETIME / scale
    # At least a second: the time between checking a token and CC receiving the request (process scheduling on
    # a busy host) does not shrink with the simulated day, and a 70 ms leeway drew a 401 on a loaded machine.
    leeway = max(float(DEFAULTS["TOKEN_LEEWAY"]) / scale, MIN_LEEWAY)
    sandbox = rig.start_sandbox(
        api_rate=None, daily_quota=None, token_lifetime=lifetime, refresh_tokens="rotating", token_rate=1
    )
    rig.configure(API_RATE=100_000.0, DAILY_LIMIT=10**9, TOKEN_LEEWAY=leeway)
    rig.connect()
    worker = start_worker(rig, "t1", concurrency=concurrency)
    worker.wait_ready()
    rig.wait_consumers(1)
    ids = make_signups(signups, "day-", rig.list_id)
    log_start = len(sandbox.requests())
    refreshes_before = sandbox.token_calls("refresh_token")
    # The connection was made half a day ago: the stored token expires at noon of the simulated day.
    Connection.objects.filter(slug=Connection.DEFAULT_SLUG).update(
        expires_at=timezone.now() + timedelta(seconds=lifetime / 2)
    )
    started = time.monotonic()
    sent = 0
    while sent < signups:
        due = min(signups, math.ceil((time.monotonic() - started) / day * signups))
        if due > sent:
            publish_signups(ids[sent:due])
            sent = due
        time.sleep(0.02)
    arrivals_done = time.monotonic() - started
    synced = wait_synced(rig, signups, timeout=max(300.0, 3 * day))
    elapsed = time.monotonic() - started
    entries = sandbox.requests()[log_start:]
    tokens = [e for e in entries if e["kind"] == "token"]
    api = [e for e in entries if e["kind"] == "api"]
    refreshes = sandbox.token_calls("refresh_token") - refreshes_before
    return {
        "simulated_day_s": day,
        "time_scale": scale,
        "token_lifetime_s": lifetime,
        "token_leeway_s": leeway,
        "signups": signups,
        "worker_processes": concurrency,
        "all_synced": synced,
        "statuses": status_line(),
        "arrivals_s": arrivals_done,
        "run_s": elapsed,
        "run_days": elapsed / day,
        "refresh_calls": refreshes,
        "refresh_calls_per_day": refreshes / max(1.0, elapsed / day),
        "token_statuses": dict(Counter(e["status"] for e in tokens)),
        "token_429": sum(1 for e in tokens if e["status"] == 429),
        "api_401": sum(1 for e in api if e["status"] == 401),
        "api_statuses": dict(Counter(e["status"] for e in api)),
    }


def refresh_before_every_call(rig: Any, samples: int, spacing: float = 1.0) -> dict[str, Any]:
    """The other way: refresh, then POST, for each signup, starting refreshes ``spacing`` s apart (1/s)."""
    sandbox = rig.sandbox
    app = sandbox.cc_sync_settings()
    grant = sandbox.issue_tokens()  # a grant of its own, so that cc_sync's refresh token stays valid
    refresh_token = grant["refresh_token"]
    session = requests.Session()
    calls = throttled = failed = posted = 0
    last = -math.inf
    started = time.monotonic()
    for n in range(samples):
        while True:
            wait = last + spacing - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last = time.monotonic()
            response = session.post(
                sandbox.token_url,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=(app["CLIENT_ID"], app["CLIENT_SECRET"]),
                timeout=(5, 20),
            )
            calls += 1
            if response.status_code == 429:
                throttled += 1
                continue
            break
        if response.status_code != 200:
            failed += 1
            break
        body = response.json()
        refresh_token = body.get("refresh_token") or refresh_token
        answer = session.post(
            sandbox.api_url + "/contacts",
            json=create_body(f"naive-{n:05d}@example.com", rig.list_id, "Bench", f"Naive{n}"),
            headers={"Authorization": f"Bearer {body['access_token']}"},
            timeout=(5, 20),
        )
        posted += answer.status_code == 201
    elapsed = time.monotonic() - started
    return {
        "signups": samples,
        "posted": posted,
        "refresh_calls": calls,
        "token_429": throttled,
        "refused": failed,
        "seconds": elapsed,
        "signups_per_s": posted / elapsed if elapsed else 0.0,
        "refresh_calls_per_signup": calls / max(1, posted),
    }


def run(quick: bool) -> dict[str, Any]:
    day, signups, samples = (20.0, 500, 6) if quick else (200.0, 10_000, 40)
    with bench_rig("tokens") as rig:
        ours = simulated_day(rig, day, signups, concurrency=3)
        theirs = refresh_before_every_call(rig, samples)
    # One successful refresh per signup by construction; the 429s it provoked come on top.
    per_day_naive = float(signups)
    calls_per_day_naive = signups * theirs["refresh_calls_per_signup"]
    ratio = per_day_naive / ours["refresh_calls_per_day"] if ours["refresh_calls_per_day"] else math.inf
    hours_needed = per_day_naive / 3600  # at the token endpoint's 1 call/s, in real CC time
    markdown = "\n\n".join(
        [
            f"**How it was run.** A simulated day of {fmt(day, 0)} s (1 s = {fmt(ours['time_scale'], 0)} s of CC "
            f"time). CC's access tokens live 24 h, so the sandbox issues tokens that live {fmt(day, 0)} s (one "
            f"expiry per day, as with CC; `expires_in={ours['token_lifetime_s']:g}`), rotating refresh tokens, "
            f"and limits the token endpoint to 1 call/s; cc_sync's `TOKEN_LEEWAY` is scaled the same way, but "
            f"kept at least {MIN_LEEWAY:g} s, since process scheduling does not scale "
            f"(300 s -> {ours['token_leeway_s']:.2f} s). The stored connection is half a day old when the day "
            f"starts (its token expires at noon). {signups:,} signups arrive evenly over the day (their tasks "
            f"are published on schedule by this process) and one prefork worker with "
            f"{ours['worker_processes']} processes syncs them; no `/v3` limit and no daily quota (at CC's 4/s "
            "a real day holds 10,000 such calls; compressed, the day would not fit).",
            f"The other approach, refreshing before every call, is run for {samples} signups: refresh (using "
            "the newest rotating refresh token), then POST, with refreshes started exactly 1 s apart to honour "
            "the token endpoint's 1 call/s; a 429 is retried 1 s later. Its day is extrapolated: one refresh "
            "(plus any retried 429) per signup.",
            table(
                ["", "cc_sync", "refresh before every call"],
                [
                    (
                        "signups",
                        f"{signups:,} (all synced: {ours['all_synced']})",
                        f"{theirs['posted']} of {samples}",
                    ),
                    (
                        "refresh calls made",
                        f"{ours['refresh_calls']} in {fmt(ours['run_days'], 2)} simulated days",
                        f"{theirs['refresh_calls']} for {theirs['posted']} signups",
                    ),
                    (
                        "refresh calls per simulated day",
                        fmt(ours["refresh_calls_per_day"], 2),
                        f"{per_day_naive:,.0f} (one per signup), {calls_per_day_naive:,.0f} token calls with "
                        "the 429 retries (extrapolated)",
                    ),
                    ("token endpoint 429s", ours["token_429"], theirs["token_429"]),
                    ("401s from /v3 (stale token)", ours["api_401"], "0 (a fresh token every time)"),
                    (
                        "signups per second",
                        fmt(signups / ours["run_s"], 1),
                        f"{fmt(theirs['signups_per_s'], 2)} (capped by the 1/s token limit)",
                    ),
                ],
            ),
            f"**Ratio that matters:** {ratio:,.0f}x fewer refresh calls with cc_sync "
            f"({fmt(ours['refresh_calls_per_day'], 2)} a day, the one expiry; versus {per_day_naive:,.0f}). "
            f"Refreshing before every call needs the token endpoint {per_day_naive:,.0f} times a day, "
            f"{fmt(hours_needed, 1)} h of its 1 call/s budget even without a single 429: signups can never be "
            "sent faster than one a second, any burst queues, and a client spacing its refreshes exactly 1 s "
            f"apart still got {theirs['token_429']} x 429 in {theirs['refresh_calls']} calls (arrival jitter at "
            "the server). Every refresh also spends a rotating refresh token, so two processes doing it at once "
            "invalidate each other's grant. Final statuses: "
            f"{ours['statuses']}.",
        ]
    )
    return {
        "title": TITLE,
        "goal": "(comparison) refresh calls per day: cc_sync vs refreshing before every call",
        "result": f"{fmt(ours['refresh_calls_per_day'], 2)} vs {per_day_naive:,.0f} refreshes a day ({ratio:,.0f}x "
        f"fewer); cc_sync {ours['token_429']} x 429, the other way {theirs['token_429']} x 429 in "
        f"{theirs['refresh_calls']} calls",
        "verdict": "",
        "markdown": markdown,
        "figures": {
            "cc_sync": ours,
            "refresh_every_call": theirs,
            "refreshes_per_day_every_call": per_day_naive,
            "token_calls_per_day_every_call": calls_per_day_naive,
            "ratio": ratio,
        },
    }
