"""2. Drain at the rate limit: a queue of signups against CC's per-second limit, against the ideal N/R."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from cc_sync.ratelimit import SPACING_MARGIN
from rig.figures import max_in_any_window

from .common import (
    bench_rig,
    create_posts,
    fmt,
    make_signups,
    publish_signups,
    start_worker,
    status_line,
    synced_span,
    table,
    verdict,
    wait_synced,
)

TITLE = "Drain at the rate limit"
GOAL = 0.10  # within 10 % of N/R
LATENCY = 0.25  # CC-like answer time
WORKERS, CONCURRENCY = 2, 4


def drain(rate: float, total: int) -> dict[str, Any]:
    """Queue ``total`` signups at once and let the workers drain them; the sandbox enforces ``rate``/s."""
    with bench_rig(f"drain_{rate:g}") as rig:
        sandbox = rig.start_sandbox(api_rate=rate, daily_quota=None, delay=LATENCY)
        rig.configure(API_RATE=rate, DAILY_LIMIT=10**9)
        rig.connect()
        workers = [start_worker(rig, f"d{n}", concurrency=CONCURRENCY) for n in range(WORKERS)]
        for worker in workers:
            worker.wait_ready()
        rig.wait_consumers(WORKERS)
        ids = make_signups(total, f"drain{rate:g}-", rig.list_id)
        log_start = len(sandbox.requests())
        started = time.time()
        publish_signups(ids)
        published = time.time()
        ideal = total / rate
        drained = wait_synced(rig, total, timeout=2 * ideal + 120)
        _first, last = synced_span()
        statuses = status_line()
        entries = sandbox.requests()[log_start:]
    posts = create_posts(entries)
    api = [e for e in entries if e["kind"] == "api"]
    accepted = [e["time"] for e in api if e["status"] != 429]
    codes = Counter(e["status"] for e in api)
    elapsed = last - started if drained else float("nan")
    return {
        "rate": rate,
        "signups": total,
        "drained": drained,
        "statuses": statuses,
        "publish_s": published - started,
        "drain_s": elapsed,
        "ideal_s": ideal,
        "over_ideal": elapsed / ideal - 1 if drained else float("nan"),
        "achieved_rate": total / elapsed if drained else 0.0,
        "creates": len(posts),
        "api_429": codes.get(429, 0),
        "api_statuses": dict(codes),
        "max_in_one_second": max_in_any_window(accepted),
    }


def run(quick: bool) -> dict[str, Any]:
    cases = [(20.0, 200), (4.0, 40)] if quick else [(20.0, 2000), (4.0, 200)]
    results = [drain(rate, total) for rate, total in cases]
    passed = all(r["drained"] and r["over_ideal"] <= GOAL and r["api_429"] == 0 for r in results)
    rows = [
        (
            f"{r['rate']:g}/s",
            r["signups"],
            fmt(r["ideal_s"], 1),
            fmt(r["drain_s"], 1),
            f"{100 * r['over_ideal']:+.1f} %",
            fmt(r["achieved_rate"], 2),
            r["max_in_one_second"],
            r["api_429"],
            r["creates"],
            f"**{verdict(r['drained'] and r['over_ideal'] <= GOAL and r['api_429'] == 0)}**",
        )
        for r in results
    ]
    worst = max(r["over_ideal"] for r in results)
    markdown = "\n\n".join(
        [
            f"**How it was run.** For each rate R: the sandbox enforces R requests per second on `/v3` (sliding "
            f"one-second window, 429 above it) and answers after {LATENCY * 1000:.0f} ms; cc_sync runs with "
            f"`API_RATE=R` and its other production settings, in {WORKERS} prefork workers x {CONCURRENCY} "
            "processes of the example project. N pending signups are saved at once (one bulk INSERT), then "
            "their N tasks are published; the drain time runs from the first publish to the last `synced_at`. "
            "Ideal = N/R.",
            table(
                [
                    "R",
                    "N",
                    "ideal N/R, s",
                    "drain, s",
                    "over ideal",
                    "achieved, /s",
                    "most requests in any 1 s",
                    "429s",
                    "creates (POST /v3/contacts)",
                    "result",
                ],
                rows,
            ),
            f"Goal: within 10 % of N/R with zero 429. cc_sync spaces requests `{SPACING_MARGIN:g}/R` apart on "
            "purpose (`cc_sync.ratelimit.SPACING_MARGIN`, so that a request delayed by the host or the network "
            f"never puts R+1 requests into one sliding second): {SPACING_MARGIN - 1:.0%} over the ideal is the "
            "floor by design. Final statuses: "
            + "; ".join(f"R={r['rate']:g}: {r['statuses']}" for r in results)
            + ".",
        ]
    )
    return {
        "title": TITLE,
        "goal": "drain within 10 % of N/R, zero 429",
        "result": ", ".join(
            f"R={r['rate']:g}: {100 * r['over_ideal']:+.1f} % over N/R, {r['api_429']} x 429" for r in results
        ),
        "verdict": verdict(passed),
        "markdown": markdown,
        "figures": {"cases": results, "worst_over_ideal": worst},
    }
