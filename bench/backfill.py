"""Backfill: existing contacts by bulk import (``cc_sync_backfill``) against one ``sign_up_form`` call each.

Both run against the CC sandbox in this process with CC's 4 requests/s enforced and a CC-like answer time.
The backfill is measured in full. ``sign_up_form`` at 4/s would take 42 minutes for 10,000 contacts, so a
sample is sent (four threads through cc_sync's shared limiter, as workers would) and the full time is
extrapolated from the measured rate; both figures are reported separately.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test.utils import override_settings

from cc_sync import backfill
from cc_sync.client import get_client
from cc_sync.oauth import get_access_token, store_grant
from cc_sync.sandbox import Sandbox
from cc_sync.sandbox.server import IMPORT_PATH

from .common import fmt, run_in_threads, table

TITLE = "Backfill: bulk import against sign_up_form"
LATENCY = 0.25  # CC-like answer time of every /v3 request (as in the drain benchmark)
API_RATE = 4.0  # CC's per-second limit, enforced by the sandbox and used by cc_sync's limiter
THREADS = 4
SIGN_UP_PATH = "/v3/contacts/sign_up_form"


def _csv(directory: Path, count: int) -> str:
    path = directory / "existing.csv"
    lines = ["email,first_name,last_name,consent"]
    lines += [f"backfill{n:06d}@example.com,Bench,Mark{n},yes" for n in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _backfill(sandbox: Sandbox, path: str, poll_interval: float) -> dict[str, Any]:
    start = len(sandbox.requests())
    started = time.monotonic()
    out = io.StringIO()
    try:
        call_command(
            "cc_sync_backfill",
            "--csv",
            path,
            "--restart",
            "--poll-interval",
            str(poll_interval),
            "--verbosity",
            "0",
            stdout=out,
            stderr=io.StringIO(),
        )
        exit_code = 0
    except CommandError as err:  # reported in the figures
        exit_code = err.returncode
        out.write(str(err))
    wall = time.monotonic() - started
    entries = [e for e in sandbox.requests()[start:] if e["kind"] == "api"]
    imports = sum(e["path"] == IMPORT_PATH for e in entries)
    return {
        "exit_code": exit_code,
        "wall_seconds": wall,
        "requests": len(entries),
        "import_requests": imports,
        "status_requests": len(entries) - imports,
        "throttled": sum(e["status"] == 429 for e in entries),
        "imported": sum(c["email_address"].startswith("backfill") for c in sandbox.contacts()),
        "implicit": sum(c.get("permission_to_send") == "implicit" for c in sandbox.contacts()),
        "poll_interval": poll_interval,
        "output": out.getvalue()[-2000:],
    }


def _sign_up_sample(sandbox: Sandbox, count: int, list_id: str) -> dict[str, Any]:
    token = get_access_token()
    start = len(sandbox.requests())

    def send(offset: int) -> None:
        client = get_client()
        for n in range(offset, count, THREADS):
            payload = {"email_address": f"signup{n:06d}@example.com", "list_memberships": [list_id]}
            client.sign_up_form(token, payload)

    wall, errors = run_in_threads(send, THREADS)
    entries = [e for e in sandbox.requests()[start:] if e["path"] == SIGN_UP_PATH]
    return {
        "measured_calls": count,
        "measured_seconds": wall,
        "rate_per_second": count / wall,
        "requests": len(entries),
        "throttled": sum(e["status"] == 429 for e in entries),
        "errors": errors[:5],
    }


def run(quick: bool) -> dict[str, Any]:
    """Run both paths and return ``{"title", "markdown", "figures"}``."""
    contacts = 400 if quick else 10_000
    sample = 40 if quick else 200
    poll_interval = 1.0 if quick else backfill.POLL_INTERVAL
    with (
        tempfile.TemporaryDirectory(prefix="cc_sync_bench_backfill_") as directory,
        Sandbox(api_rate=API_RATE, daily_quota=None, delay=LATENCY) as sandbox,
    ):
        list_id = sandbox.lists()[0]["list_id"]
        base = dict(getattr(settings, "CC_SYNC", {}))
        cc = {
            **base,
            **sandbox.cc_sync_settings(),
            "LIST_IDS": [list_id],
            "API_RATE": API_RATE,
            "DAILY_LIMIT": 10**9,  # the sample and the import must not stop on the local budget
        }
        with override_settings(CC_SYNC=cc):
            store_grant(sandbox.issue_tokens())
            bulk = _backfill(sandbox, _csv(Path(directory), contacts), poll_interval)
            signups = _sign_up_sample(sandbox, sample, list_id)

    extrapolated = contacts / signups["rate_per_second"]
    figures = {
        "contacts": contacts,
        "api_rate": API_RATE,
        "latency_seconds": LATENCY,
        "backfill": bulk,
        "sign_up_form": {**signups, "extrapolated_requests": contacts, "extrapolated_seconds": extrapolated},
        "request_ratio": contacts / max(1, bulk["requests"]),
        "time_ratio": extrapolated / bulk["wall_seconds"],
    }
    rows = [
        ["contacts", f"{contacts:,}", f"{contacts:,} (extrapolated from {sample:,} sent)"],
        [
            "API requests",
            f"{bulk['requests']:,} ({bulk['import_requests']} import, {bulk['status_requests']} status checks)",
            f"{contacts:,} (one per contact; {signups['requests']:,} measured)",
        ],
        [
            "share of the 10,000/day quota",
            f"{100 * bulk['requests'] / 10_000:.2f} %",
            f"{100 * contacts / 10_000:.0f} %",
        ],
        [
            "wall time",
            f"{fmt(bulk['wall_seconds'])} s (measured)",
            f"{fmt(extrapolated / 60)} min (extrapolated); measured {fmt(signups['measured_seconds'])} s "
            f"for {sample:,} = {fmt(signups['rate_per_second'], 2)}/s",
        ],
        ["answered 429", str(bulk["throttled"]), str(signups["throttled"])],
    ]
    markdown = "\n".join(
        [
            f"{contacts:,} existing contacts put into a list by `manage.py cc_sync_backfill` (CC's JSON bulk "
            "import) against one `sign_up_form` call per contact.",
            "",
            table(["", "backfill", "sign_up_form"], rows),
            "",
            f"How it was run: the CC sandbox in the benchmark's process enforcing {API_RATE:g} requests/s per "
            f"API key and answering every `/v3` request after {LATENCY:g} s; cc_sync's shared limiter at "
            f"`API_RATE` {API_RATE:g}. The backfill ran the management command on a CSV file of "
            f"{contacts:,} rows with `--poll-interval {poll_interval:g}`; "
            f"{bulk['imported']:,} contacts arrived, {bulk['implicit']:,} of them with *implicit* permission. "
            f"`sign_up_form` sent {sample:,} contacts from {THREADS} threads through the same limiter (as "
            "workers would), and the time for all contacts is extrapolated from that measured rate.",
            "",
            "The sandbox finishes an import after two status checks, whatever its size; how long real CC "
            "takes to process a 10,000-contact import is not documented, so the backfill's wall time here is "
            "mostly the poll interval and a lower bound. The request counts do not depend on that. The bulk "
            "import gives new contacts implicit permission, `sign_up_form` explicit (see docs/backfill.md).",
        ]
    )
    if signups["errors"]:
        markdown += "\n\nErrors while sending the sign_up_form sample: " + "; ".join(signups["errors"])
    return {
        "title": TITLE,
        "goal": f"(comparison) API requests and wall time for {contacts:,} existing contacts",
        "result": f"{bulk['requests']:,} API requests in {fmt(bulk['wall_seconds'])} s against {contacts:,} "
        f"requests in {fmt(extrapolated / 60)} min ({figures['request_ratio']:,.0f}x fewer requests)",
        "markdown": markdown,
        "figures": figures,
    }
