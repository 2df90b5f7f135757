"""5. Memory: the resident memory of the worker's pool processes after 100 and after 10,000 tasks."""

from __future__ import annotations

import time
from typing import Any

from .common import (
    bench_rig,
    fmt,
    make_signups,
    publish_signups,
    rss_kib,
    start_worker,
    status_line,
    table,
    verdict,
    wait_synced,
)

TITLE = "Worker memory"
GOAL = 0.20  # under 20 % growth from 100 to 10,000 tasks
CONCURRENCY = 2


def run(quick: bool) -> dict[str, Any]:
    checkpoints = [100, 500, 1000] if quick else [100, 1000, 2500, 5000, 7500, 10_000]
    readings: list[dict[str, Any]] = []
    with bench_rig("memory") as rig:
        rig.start_sandbox(api_rate=None, daily_quota=None, delay=0.0)
        rig.configure(API_RATE=100_000.0, DAILY_LIMIT=10**9)
        rig.connect()
        worker = start_worker(rig, "m1", concurrency=CONCURRENCY)
        worker.wait_ready()
        rig.wait_consumers(1)
        pool = worker.children()
        done = 0
        started = time.monotonic()
        for checkpoint in checkpoints:
            ids = make_signups(checkpoint - done, "memory-", rig.list_id, start=done)
            publish_signups(ids)
            synced = wait_synced(rig, checkpoint, timeout=600, interval=0.1)
            done = checkpoint
            time.sleep(0.5)  # let the last task's objects go
            children = worker.children()
            readings.append(
                {
                    "tasks": checkpoint,
                    "synced": synced,
                    "seconds": time.monotonic() - started,
                    "main_kib": rss_kib(worker.pid),
                    "pool_kib": {pid: rss_kib(pid) for pid in children},
                    "same_pool_processes": children == pool,
                }
            )
        statuses = status_line()
    first, last = readings[0], readings[-1]
    pool_first = sum(first["pool_kib"].values())
    pool_last = sum(last["pool_kib"].values())
    growth = pool_last / pool_first - 1 if pool_first else float("nan")
    per_process = {
        pid: last["pool_kib"].get(pid, 0) / kib - 1 for pid, kib in first["pool_kib"].items() if kib
    }
    worst = max(per_process.values()) if per_process else float("nan")
    passed = growth < GOAL and worst < GOAL
    rows = [
        (
            f"{r['tasks']:,}",
            fmt(r["main_kib"] / 1024, 1),
            " / ".join(fmt(kib / 1024, 1) for kib in r["pool_kib"].values()),
            fmt(sum(r["pool_kib"].values()) / 1024, 1),
            f"{100 * (sum(r['pool_kib'].values()) / pool_first - 1):+.1f} %" if pool_first else "-",
            "yes" if r["same_pool_processes"] else "no (replaced)",
        )
        for r in readings
    ]
    markdown = "\n\n".join(
        [
            f"**How it was run.** One prefork worker of the example project with {CONCURRENCY} pool processes "
            "(no `worker_max_tasks_per_child`, as the example project runs it), the sandbox with no limit and no "
            "latency, cc_sync with its production settings (`API_RATE=100000`). Signups are saved in bulk and "
            "their tasks published in batches; after each checkpoint is synced (and half a second of quiet), "
            "the resident memory (`VmRSS` from `/proc/PID/status`) of the main process and of each pool "
            "process is read.",
            table(
                [
                    "tasks done",
                    "main process, MiB",
                    "each pool process, MiB",
                    "pool total, MiB",
                    "growth",
                    "same pool",
                ],
                rows,
            ),
            f"**Ratio that matters:** the pool processes' resident memory grew by **{100 * growth:+.1f} %** "
            f"from {checkpoints[0]:,} to {checkpoints[-1]:,} tasks (worst single process {100 * worst:+.1f} %); "
            f"goal: under {100 * GOAL:.0f} % -> **{verdict(passed)}**. Final statuses: {statuses}.",
        ]
    )
    return {
        "title": TITLE,
        "goal": f"pool RSS growth under {100 * GOAL:.0f} % from {checkpoints[0]:,} to {checkpoints[-1]:,} tasks",
        "result": f"{100 * growth:+.1f} % ({fmt(pool_first / 1024, 1)} -> {fmt(pool_last / 1024, 1)} MiB for "
        f"{CONCURRENCY} processes)",
        "verdict": verdict(passed),
        "markdown": markdown,
        "figures": {
            "readings": readings,
            "pool_growth": growth,
            "worst_process_growth": worst,
            "all_synced": all(r["synced"] for r in readings),
        },
    }
