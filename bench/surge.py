"""Surge mode: 20,000 signups queued at once, by bulk import against one request per signup.

Both paths run against the CC sandbox in this process with CC's 4 requests/s enforced and a CC-like answer
time. The surge is measured in full: the rows are stored due and queued (as ``enqueue_signup`` stores them),
a worker's first one-by-one task notices the backlog and steps aside, and the ``import_surge`` task's body
runs to the end. The one-by-one path at 4/s would take about 90 minutes for 20,000 signups, so a sample is
sent through ``process_signup`` with surge mode off (four threads through the shared limiter, as workers
would) and the full time is extrapolated from the measured rate; both figures are reported, labelled.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.conf import settings
from django.test.utils import override_settings
from django.utils import timezone

from cc_sync import surge, sync
from cc_sync.models import Signup
from cc_sync.oauth import store_grant
from cc_sync.sandbox import Sandbox
from cc_sync.sandbox.server import IMPORT_PATH

from .common import fmt, run_in_threads, table, verdict

TITLE = "Surge mode: a burst of signups by bulk import against one request each"
LATENCY = 0.25  # CC-like answer time of every /v3 request (as in the drain and backfill benchmarks)
API_RATE = 4.0  # CC's per-second limit, enforced by the sandbox and used by cc_sync's limiter
DAILY_LIMIT = 10_000  # CC's documented daily quota per API key
THREADS = 4
GOAL_SECONDS = 120.0
GOAL_REQUESTS = 10


def _store(count: int, prefix: str) -> list[int]:
    """``count`` due, queued signups as ``enqueue_signup`` stores them (one INSERT per 1,000)."""
    now = timezone.now()
    rows = [
        Signup(
            email=f"{prefix}{n:06d}@example.com",
            first_name="Bench",
            last_name=f"Mark{n}",
            next_attempt_at=now,
            enqueued_at=now,
            consent_given_at=now,
            consent_text="Yes, send me email updates.",
        )
        for n in range(count)
    ]
    Signup.objects.bulk_create(rows, batch_size=1000)
    return list(Signup.objects.filter(email__startswith=prefix).values_list("pk", flat=True))


def _surge(sandbox: Sandbox, count: int, list_id: str) -> dict[str, Any]:
    start = len(sandbox.requests())
    started = time.monotonic()
    ids = _store(count, "surge")
    stored = time.monotonic()
    surge.forget()
    # The broker delivers the first messages of the burst: each worker task sees the backlog and steps aside.
    for pk in ids[:THREADS]:
        sync.process_signup(pk)
    stepped_aside = Signup.objects.filter(
        pk__in=ids[:THREADS], status=Signup.Status.PENDING, attempts=0
    ).count()
    queued = Signup.objects.filter(pk__in=ids, status=Signup.Status.PENDING).count()
    ended = surge.run()  # the import_surge task's body, as the worker runs it
    wall = time.monotonic() - started
    entries = [e for e in sandbox.requests()[start:] if e["kind"] == "api"]
    in_list = sum(
        c["email_address"].startswith("surge") and list_id in c["list_memberships"]
        for c in sandbox.contacts()
    )
    return {
        "signups": count,
        "wall_seconds": wall,
        "store_seconds": stored - started,
        "requests": len(entries),
        "import_requests": sum(e["path"] == IMPORT_PATH for e in entries),
        "status_requests": sum(e["path"] != IMPORT_PATH for e in entries),
        "throttled": sum(e["status"] == 429 for e in entries),
        "in_list": in_list,
        "synced": Signup.objects.filter(pk__in=ids, status=Signup.Status.SYNCED).count(),
        "batches": ended,
        "pending_after_first_tasks": queued,
        "first_tasks": THREADS,
        "first_tasks_sent": len([e for e in entries if e["path"] != IMPORT_PATH and e["method"] == "POST"]),
        "stepped_aside": stepped_aside,
        "poll_interval": surge.POLL_INTERVAL,
    }


def _one_by_one_sample(sandbox: Sandbox, count: int) -> dict[str, Any]:
    ids = _store(count, "single")
    start = len(sandbox.requests())

    def send(offset: int) -> None:
        for pk in ids[offset::THREADS]:
            sync.process_signup(pk)

    wall, errors = run_in_threads(send, THREADS)
    entries = [e for e in sandbox.requests()[start:] if e["kind"] == "api"]
    return {
        "measured_signups": count,
        "measured_seconds": wall,
        "rate_per_second": count / wall,
        "requests": len(entries),
        "throttled": sum(e["status"] == 429 for e in entries),
        "synced": Signup.objects.filter(pk__in=ids, status=Signup.Status.SYNCED).count(),
        "errors": errors[:5],
    }


def run(quick: bool) -> dict[str, Any]:
    """Run both paths and return ``{"title", "markdown", "figures"}``."""
    count = 2_000 if quick else 20_000
    sample = 20 if quick else 200
    with Sandbox(api_rate=API_RATE, daily_quota=None, delay=LATENCY) as sandbox:
        list_id = sandbox.lists()[0]["list_id"]
        base = dict(getattr(settings, "CC_SYNC", {}))
        cc = {
            **base,
            **sandbox.cc_sync_settings(),
            "LIST_IDS": [list_id],
            "API_RATE": API_RATE,
            "DAILY_LIMIT": DAILY_LIMIT,
            "SURGE_IMPORT": True,
            "SURGE_THRESHOLD": None,  # the default: a minute of sending at API_RATE
        }
        with override_settings(CC_SYNC=cc):
            store_grant(sandbox.issue_tokens())
            bulk = _surge(sandbox, count, list_id)
            with override_settings(CC_SYNC={**cc, "SURGE_IMPORT": False, "DAILY_LIMIT": 10**9}):
                single = _one_by_one_sample(sandbox, sample)
            threshold = surge.threshold()
    surge.forget()  # this process's cached "surge on" must not outlive the benchmark
    Signup.objects.filter(email__startswith="surge").delete()
    Signup.objects.filter(email__startswith="single").delete()

    # One request per new signup (POST /contacts), each in a slot 1.08/API_RATE s apart (ratelimit.SPACING_MARGIN).
    paced_seconds = count * 1.08 / API_RATE
    measured_seconds = count / single["rate_per_second"]
    quota_days = math.ceil(count / DAILY_LIMIT)
    figures = {
        "signups": count,
        "api_rate": API_RATE,
        "daily_limit": DAILY_LIMIT,
        "latency_seconds": LATENCY,
        "threshold": threshold,
        "surge": bulk,
        "one_by_one": {
            **single,
            "estimated_requests": count,
            "estimated_seconds_at_pacing": paced_seconds,
            "extrapolated_seconds_from_sample": measured_seconds,
            "quota_days": quota_days,
        },
        "goal_met": bulk["in_list"] == count
        and bulk["wall_seconds"] <= GOAL_SECONDS
        and bulk["requests"] <= GOAL_REQUESTS,
        "request_ratio": count / max(1, bulk["requests"]),
        "time_ratio": paced_seconds / bulk["wall_seconds"],
    }
    rows = [
        ["signups", f"{count:,} (measured)", f"{count:,} (estimated; {sample:,} measured)"],
        [
            "API requests",
            f"{bulk['requests']} ({bulk['import_requests']} import, {bulk['status_requests']} status checks)",
            f"{count:,} (one per new signup; {single['requests']:,} for the {sample:,} measured)",
        ],
        [
            "days of the 10,000/day quota",
            f"{bulk['requests'] / DAILY_LIMIT:.4f}",
            f"{count / DAILY_LIMIT:g} ({quota_days} days of sending)",
        ],
        [
            "time until all are in the list",
            f"{fmt(bulk['wall_seconds'])} s (measured, from the first INSERT; storing the rows took "
            f"{fmt(bulk['store_seconds'])} s)",
            f"{fmt(paced_seconds / 60)} min at {API_RATE:g}/s with cc_sync's pacing (estimated); "
            f"{fmt(measured_seconds / 60)} min extrapolated from {sample:,} measured "
            f"({fmt(single['rate_per_second'], 2)}/s)",
        ],
        [
            "in the list / synced",
            f"{bulk['in_list']:,} / {bulk['synced']:,}",
            f"{single['synced']} / {sample}",
        ],
        ["answered 429", str(bulk["throttled"]), str(single["throttled"])],
    ]
    outcome = "met" if figures["goal_met"] else "NOT met"
    markdown = "\n".join(
        [
            f"{count:,} signups queued at once, sent by surge mode (CC's JSON bulk import) against the "
            "one-by-one path. Goal: all in the list within 2 minutes using 10 API requests or fewer: "
            f"**{outcome}**.",
            "",
            table(["", "surge mode", "one by one"], rows),
            "",
            f"How it was run: the CC sandbox in the benchmark's process enforcing {API_RATE:g} requests/s per "
            f"API key and answering every `/v3` request after {LATENCY:g} s; cc_sync's shared limiter at "
            f"`API_RATE` {API_RATE:g}, `SURGE_THRESHOLD` at its default ({threshold}). The {count:,} rows were "
            f"stored due and queued in one go; the first {THREADS} one-by-one tasks stepped aside "
            f"({bulk['stepped_aside']} of {THREADS}, {bulk['first_tasks_sent']} requests), then the "
            f"`import_surge` task's body ran in the benchmark's process ({bulk['batches']} batch, polled every "
            f"{surge.POLL_INTERVAL:g} s). The one-by-one column: {sample:,} new signups through "
            f"`process_signup` with surge mode off, from {THREADS} threads through the same limiter (as "
            "workers would); its full time is estimated from the pacing and extrapolated from that sample, "
            "both labelled.",
            "",
            "The sandbox finishes an import after two status checks, whatever its size; how long real CC "
            "takes to process 20,000 contacts is not documented, so the surge's wall time (storing the rows, "
            "two polls 5 s apart, the sandbox's import and recording every signup) is a lower bound for real "
            "CC. The request counts do not depend on that. Surge mode imports a stranger's signup with its "
            "email and lists only, and CC gives new contacts implicit permission (docs/signups.md).",
        ]
    )
    if single["errors"]:
        markdown += "\n\nErrors while sending the one-by-one sample: " + "; ".join(single["errors"])
    return {
        "title": TITLE,
        "goal": f"{count:,} queued signups in the list within 2 min using <= {GOAL_REQUESTS} API requests",
        "result": f"{bulk['in_list']:,} in the list in {fmt(bulk['wall_seconds'])} s using {bulk['requests']} "
        f"API requests, against {count:,} requests in about {fmt(paced_seconds / 60)} min and {quota_days} "
        "days of quota one by one",
        "verdict": verdict(figures["goal_met"]),
        "markdown": markdown,
        "figures": figures,
    }
