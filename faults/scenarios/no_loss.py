"""G1, no loss and no duplicate: broker outages, killed workers and CC faults while signups arrive."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter, defaultdict
from itertools import pairwise
from typing import Any

from cc_sync.models import Signup
from cc_sync.sync import enqueue_signup
from rig.database import status_counts
from rig.deployment import Rig
from rig.timing import SCALED

from .checks import (
    Result,
    Status,
    amplification_note,
    contact_requests,
    creates,
    current_tokens,
    emails,
    is_failed_answer,
    is_valid_answer,
    message_figures,
    store_check,
    synced_rows_check,
    two_workers_and_beat,
    wait_for_statuses,
)


def interrupted_attempts(entries: list[dict[str, Any]], disruptions: list[float]) -> int:
    """Attempts of one email that a kill or the broker outage cut short: ended by no answer, then tried again.

    An attempt starts with a create. One whose next create follows a disruption, with no valid answer in
    between, was lost to it: a killed process, or a task the worker cancelled when it lost the broker
    (``worker_cancel_long_running_tasks_on_connection_loss``, docs/celery.md), perhaps after a 409 and before
    its lookup. Its row is claimed again once the lease runs out, and that claim creates again.
    """
    starts = [e["time"] for e in creates(entries)]
    answers = [e["time"] for e in entries if is_valid_answer(e)]
    return sum(
        1
        for start, following in pairwise(starts)
        if any(start - 1 <= d <= following for d in disruptions)
        and not any(start <= t < following for t in answers)
    )


def no_loss(rig: Rig, quick: bool, result: Result) -> None:
    total = 200 if quick else 2000
    submit_rate = 10.0
    outage = 10.0 if quick else 60.0
    kill_kinds = ["child", "main"] if quick else ["child", "main", "child", "main", "child"]
    api_rate = 20.0
    drain_limit = 180.0 if quick else 600.0
    faults = {"error_5xx": 0.10, "timeout": 0.05, "drop": 0.02, "throttle": 0.03, "html_200": 0.01}
    timeout_seconds = 2 * SCALED["READ_TIMEOUT"]
    result.injected = [
        f"{total} signups through `enqueue_signup` at {submit_rate:.0f}/s",
        "sandbox faults on every `/v3` call: 10 % 5xx (500/502/503), 5 % answered after "
        f"{timeout_seconds:.0f} s (2x the client's read timeout; CC stores the contact), 2 % dropped "
        "connections, 3 % 429, 1 % 200 with an HTML body (CC stores the contact)",
        f"the rig's Redis broker stopped (SIGTERM, no persistence: every queued message lost) for "
        f"{outage:.0f} s in the middle of the submissions, which go on meanwhile",
        f"{len(kill_kinds)} SIGKILLs by process id at seeded random times: {kill_kinds.count('child')} x a pool "
        f"process (Celery forks a new one), {kill_kinds.count('main')} x a worker's main process (its pool "
        "processes die with it; the rig starts the worker again 1 s later)",
        f"2 prefork workers x 3 processes, beat sweeping every second; API rate {api_rate:.0f}/s on both "
        "sides (sandbox and cc_sync)",
    ]
    sandbox = rig.start_sandbox(api_rate=api_rate, faults=faults, timeout_seconds=timeout_seconds)
    rig.configure(API_RATE=api_rate)
    tokens = rig.connect()
    workers = two_workers_and_beat(rig)

    rng = random.Random(rig.seed)
    duration = total / submit_rate
    outage_start = duration * 0.35
    outage_end = outage_start + outage
    kill_times = sorted(
        duration * (0.1 + 0.85 * (i + rng.random()) / len(kill_kinds)) for i in range(len(kill_kinds))
    )
    plan: list[tuple[float, str]] = [(outage_start, "redis down"), (outage_end, "redis up")]
    plan += [(t, f"kill {kind}") for t, kind in zip(kill_times, kill_kinds, strict=True)]
    plan.sort()

    addresses = emails("nl", total)
    disruptions: list[float] = []
    kills: list[str] = []
    accept_times: list[float] = []
    outage_accept_times: list[float] = []
    outage_window: list[float] = []
    unpublished_at_recovery = 0
    queue_peak = 0
    started = time.monotonic()
    submitted = 0

    def run_event(action: str) -> None:
        nonlocal unpublished_at_recovery
        if action == "redis down":
            rig.redis.stop()
            outage_window.append(time.time())
            disruptions.append(time.time())
            rig.note("redis stopped (queue wiped)")
        elif action == "redis up":
            unpublished_at_recovery = Signup.objects.filter(
                status=Status.PENDING, enqueued_at__isnull=True
            ).count()
            rig.redis.start()
            outage_window.append(time.time())
            rig.note(f"redis started again; {unpublished_at_recovery} pending rows were never published")
        else:
            kind = action.split()[1]
            worker = workers[len(kills) % len(workers)]
            if not worker.running:
                rig.supervise()
            if kind == "child" and worker.children():
                pid = rng.choice(worker.children())
                os.kill(pid, signal.SIGKILL)
            else:
                kind = "main"
                pid = worker.kill()
                time.sleep(1.0)
                rig.restart(worker)
            disruptions.append(time.time())
            kills.append(f"{kind} {pid} of {worker.name} at {time.time() - rig.started:.0f} s")
            rig.note(f"SIGKILL {kind} process {pid} of {worker.name}")

    while submitted < total or plan:
        elapsed = time.monotonic() - started
        while plan and plan[0][0] <= elapsed:
            run_event(plan.pop(0)[1])
        due = min(total, int(elapsed * submit_rate) + 1)
        while submitted < due:
            moment = time.perf_counter()
            enqueue_signup(addresses[submitted], first_name="Nora", last_name="Loss")
            spent = time.perf_counter() - moment
            accept_times.append(spent)
            if len(outage_window) == 1:
                outage_accept_times.append(spent)
            submitted += 1
        if submitted % 50 == 0:
            rig.supervise()
            queue_peak = max(queue_peak, rig.redis.queue_length() or 0)
        time.sleep(0.02)
    last_submission = time.time()
    rig.note(f"all {total} submitted; waiting for the queue to drain")

    def sample() -> None:
        nonlocal queue_peak
        queue_peak = max(queue_peak, rig.redis.queue_length() or 0)

    drained = wait_for_statuses(rig, lambda c: c.get(Status.SYNCED, 0) >= total, drain_limit, sample)
    drain_time = time.time() - last_submission
    rig.note(f"drained: {drained} after {drain_time:.0f} s; statuses {status_counts()}")

    log = sandbox.requests()
    requests_ = contact_requests(log)
    by_email: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in requests_:
        by_email[(entry["email"] or "").lower()].append(entry)
    attempts = [len(creates(by_email[a.lower()])) for a in addresses]
    per_email = [len(by_email[a.lower()]) for a in addresses]
    fault_counts = Counter(e["fault"] for e in requests_ if e["fault"])
    unforced_429 = sum(1 for e in requests_ if e["status"] == 429 and e["fault"] is None)
    paths = Counter(f"{e['method']} {e['path']}" for e in requests_)
    conflicts = sum(1 for e in creates(requests_) if e["status"] == 409)
    unexplained, explained = [], 0
    for address in addresses:
        entries = by_email[address.lower()]
        # Each attempt starts with a create; after a lost answer it meets 409 and looks the contact up.
        tries = len(creates(entries))
        failed = sum(1 for e in entries if is_failed_answer(e))
        if tries <= 1 + failed:
            continue
        valid = [e["time"] for e in entries if is_valid_answer(e)]
        first = valid[0] if valid else None
        if first is not None and any(
            first - 1 <= d <= first + SCALED["READ_TIMEOUT"] + 5 for d in disruptions
        ):
            explained += 1
        elif tries <= 1 + failed + interrupted_attempts(entries, disruptions):
            explained += 1
        else:
            unexplained.append(address)
    counts = status_counts()

    result.figures.update(
        {
            "signups submitted": total,
            "accepted while the broker was down": len(outage_accept_times),
            "slowest acceptance (enqueue_signup), s": round(max(accept_times), 3),
            "slowest acceptance while the broker was down, s": round(max(outage_accept_times or [0]), 3),
            "pending rows never published when the broker came back": unpublished_at_recovery,
            "broker outage, s": round(outage_window[1] - outage_window[0], 1)
            if len(outage_window) == 2
            else 0,
            "SIGKILLs": "; ".join(kills),
            "sync-path requests seen by the sandbox": ", ".join(f"{k} {v}" for k, v in sorted(paths.items())),
            "creates answered 409 (the contact existed: CC had done an earlier attempt's work)": conflicts,
            "injected faults": ", ".join(f"{k} {v}" for k, v in sorted(fault_counts.items())),
            "unforced 429 (sandbox rate limit)": unforced_429,
            "API requests per email: mean / max": f"{sum(per_email) / total:.2f} / {max(per_email)}",
            "create attempts (POST /v3/contacts) per email: mean / max": (
                f"{sum(attempts) / total:.2f} / {max(attempts)}"
            ),
            "create attempts per email (histogram)": ", ".join(
                f"{k}: {v}" for k, v in sorted(Counter(attempts).items())
            ),
            "emails with a second valid answer after a kill or the outage": explained,
            "emails with more creates than 1 + failed answers, unexplained": len(unexplained),
            "final statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            "drain time after the last submission, s": round(drain_time, 1),
            "peak broker queue length": queue_peak,
            **message_figures(rig, total),
        }
    )
    amplification_note(result, total, SCALED["REQUEUE_AFTER"])
    result.check(f"all {total} signups synced", counts.get(Status.SYNCED, 0) == total, counts)
    result.figures.update(store_check(result, sandbox, addresses, list_id=rig.list_id))
    synced_rows_check(result, sandbox)
    result.check(
        "create attempts per email <= 1 + the answers that failed (or were lost to a kill/outage)",
        not unexplained,
        f"{len(unexplained)} emails: {unexplained[:5]}",
    )
    others = {k: v for k, v in paths.items() if k not in ("POST /v3/contacts", "GET /v3/contacts")}
    result.check(
        "only creates and, after a 409, lookups: every address was new, so neither sign_up_form nor "
        "add_list_memberships was needed",
        not others,
        others,
    )
    result.check(
        f"drained within {drain_limit / 60:.0f} min of the last submission", drained, f"{drain_time:.0f} s"
    )
    result.check(
        "every planned fault happened (outage, kills, each fault kind)",
        len(outage_window) == 2 and len(kills) == len(kill_kinds) and set(fault_counts) >= set(faults),
        f"outage {outage_window}, kills {len(kills)}, faults {dict(fault_counts)}",
    )
    leaks = rig.leaked([tokens["access_token"], tokens["refresh_token"], *current_tokens()])
    result.check("no token in any log or mail of the run", not leaks, leaks)
