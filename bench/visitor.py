"""1. Visitor latency: cc_sync's signup view against a plain save and against calling CC in the request."""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import Counter
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from cc_sync.models import Signup

from .common import bench_rig, fmt, latency_summary, table, verdict

TITLE = "Visitor latency"
LATENCY = 0.25  # seconds: a CC-like answer time of sign_up_form
VARIANTS = {
    "cc_sync": ("/register/", "cc_sync's `SignupView`: save the row, publish the task after commit"),
    "plain": ("/bench/plain/", "(a) plain Django view: save the same fields, no sync at all"),
    "synchronous": (
        "/bench/synchronous/",
        "(b) synchronous: save, then `requests.post` to CC's `sign_up_form` inside the request",
    ),
}
GOAL_PLAIN = 1.3
GOAL_SYNCHRONOUS = 20.0


def count_queries(client: Client, sample: int = 10) -> dict[str, dict[str, Any]]:
    """SQL statements per request of each view (a separate pass: capturing slows every query down)."""
    from .overhead import _normalise_sql

    counted = {}
    for name, (url, _label) in VARIANTS.items():
        with CaptureQueriesContext(connection) as captured:
            for number in range(sample):
                data = {"email": f"queries-{name}-{number}@example.com", "first_name": "Q", "consent": "on"}
                client.post(url, data, REMOTE_ADDR=f"10.200.{names_index(name)}.{number}")
        shapes = Counter(_normalise_sql(q["sql"]) for q in captured.captured_queries)
        counted[name] = {
            "per_request": len(captured.captured_queries) / sample,
            "shapes": {shape: n / sample for shape, n in shapes.most_common()},
        }
    return counted


VIEW_AREAS = [
    ("the whole view (`SignupView.post`)", "cc_sync/views.py", "post"),
    ("form validation (`is_valid`, with the model's `full_clean`)", "django/forms/forms.py", "is_valid"),
    (
        "submission limits (`defences.within_limit`, per IP and per email)",
        "cc_sync/defences.py",
        "within_limit",
    ),
    ("`sync.enqueue_signup`", "cc_sync/sync.py", "enqueue_signup"),
    ("  `Signup.full_clean` (again, in enqueue_signup)", "django/db/models/base.py", "full_clean"),
    ("  suppression check (`privacy.is_suppressed`)", "cc_sync/privacy.py", "is_suppressed"),
    ("  INSERT (`Model.save`)", "django/db/models/base.py", "save"),
    ("  publish after commit (`sync.publish`, waits for the publisher thread)", "cc_sync/sync.py", "publish"),
    ("    waiting for the publisher thread (`BoundedRunner.run`)", "cc_sync/publisher.py", "run"),
    ("every SQL statement (`CursorWrapper._execute`)", "django/db/backends/utils.py", "_execute"),
]


def profile_view(client: Client, sample: int) -> list[dict[str, Any]]:
    """cProfile of cc_sync's view over ``sample`` requests: cumulative time per request of each area."""
    profiler = cProfile.Profile()
    profiler.enable()
    for number in range(sample):
        data = {"email": f"profile-{number}@example.com", "first_name": "P", "consent": "on"}
        client.post("/register/", data, REMOTE_ADDR=f"10.201.{number >> 8}.{number & 255}")
    profiler.disable()
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    areas = []
    for label, fragment, function in VIEW_AREAS:
        hits = [
            entry
            for (filename, _line, name), entry in raw.items()
            if fragment in filename and name == function
        ]
        # Recursive or nested calls (save inside save) would count twice: take the outermost (largest) one.
        cumulative = max((entry[3] for entry in hits), default=0.0)
        areas.append({"area": label, "ms_per_request": 1000 * cumulative / sample})
    return areas


def names_index(name: str) -> int:
    return list(VARIANTS).index(name)


def run(quick: bool) -> dict[str, Any]:
    rounds = 30 if quick else 300
    warmup = 5
    with bench_rig("visitor") as rig:
        rig.start_sandbox(api_rate=None, daily_quota=None, delay=LATENCY)
        rig.connect()
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        statuses: dict[str, Counter[int]] = {name: Counter() for name in VARIANTS}
        names = list(VARIANTS)
        with override_settings(ROOT_URLCONF="bench.urls"):
            client = Client()
            started = time.monotonic()
            for number in range(warmup + rounds):
                # Rotate the order, so that no variant always runs right after another one.
                order = names[number % 3 :] + names[: number % 3]
                for name in order:
                    url = VARIANTS[name][0]
                    ip = f"10.{(number >> 8) & 255}.{number & 255}.{names.index(name) + 1}"
                    data = {
                        "email": f"visitor-{name}-{number:05d}@example.com",
                        "first_name": "Vera",
                        "last_name": "Visitor",
                        "consent": "on",
                    }
                    moment = time.perf_counter()
                    response = client.post(url, data, REMOTE_ADDR=ip, HTTP_USER_AGENT="bench")
                    spent = time.perf_counter() - moment
                    if number >= warmup:
                        times[name].append(spent)
                        statuses[name][response.status_code] += 1
            elapsed = time.monotonic() - started
            queries = count_queries(client)
            profile = profile_view(client, 20 if quick else 200)
        published = Signup.objects.filter(
            email__startswith="visitor-cc_sync-", enqueued_at__isnull=False
        ).count()
        queued = rig.redis.queue_length() or 0

    summary = {name: latency_summary(values) for name, values in times.items()}
    cc, plain, synchronous = summary["cc_sync"], summary["plain"], summary["synchronous"]
    ratio_plain = cc["p50_ms"] / plain["p50_ms"]
    ratio_synchronous = synchronous["p50_ms"] / cc["p50_ms"]
    passed = ratio_plain <= GOAL_PLAIN and ratio_synchronous >= GOAL_SYNCHRONOUS
    figures = {
        "rounds": rounds,
        "latency": summary,
        "statuses": {name: dict(counter) for name, counter in statuses.items()},
        "ratio_p50_vs_plain": ratio_plain,
        "ratio_p99_vs_plain": cc["p99_ms"] / plain["p99_ms"],
        "speedup_p50_vs_synchronous": ratio_synchronous,
        "speedup_p99_vs_synchronous": synchronous["p99_ms"] / cc["p99_ms"],
        "queries": queries,
        "cc_sync_view_profile": profile,
        "cc_sync_rows_published": published,
        "messages_in_queue": queued,
    }
    rows = [
        (
            f"`{VARIANTS[name][0]}`",
            VARIANTS[name][1],
            fmt(summary[name]["p50_ms"], 2),
            fmt(summary[name]["p99_ms"], 2),
            fmt(summary[name]["max_ms"], 1),
            ", ".join(f"{k}: {v}" for k, v in sorted(statuses[name].items())),
        )
        for name in VARIANTS
    ]
    markdown = "\n\n".join(
        [
            f"**How it was run.** {rounds} rounds after {warmup} warm-up rounds; each round POSTs one valid "
            "signup (new email, new client IP) to each of the three views, in an order that rotates every round, "
            "so the three share the same moment of the machine. Django's test client in this process (gunicorn "
            "is not in the project's extras), the example project's settings with `ROOT_URLCONF=bench.urls`, "
            "PostgreSQL, the rig's own Redis as broker (no worker consuming, so the workers' CPU does not "
            f"disturb the web side), and the CC sandbox answering `/v3` after {LATENCY * 1000:.0f} ms. "
            f"Time per request is measured around `client.post` ({fmt(elapsed, 0)} s in all).",
            table(["URL", "view", "p50, ms", "p99, ms", "max, ms", "HTTP statuses"], rows),
            table(
                ["ratio", "p50", "p99", "goal", "result"],
                [
                    (
                        "cc_sync / plain save (a)",
                        f"{ratio_plain:.2f}x",
                        f"{figures['ratio_p99_vs_plain']:.2f}x",
                        f"<= {GOAL_PLAIN}x at p50",
                        f"**{verdict(ratio_plain <= GOAL_PLAIN)}**",
                    ),
                    (
                        "synchronous (b) / cc_sync",
                        f"{ratio_synchronous:.1f}x faster",
                        f"{figures['speedup_p99_vs_synchronous']:.1f}x faster",
                        f">= {GOAL_SYNCHRONOUS:.0f}x at p50",
                        f"**{verdict(ratio_synchronous >= GOAL_SYNCHRONOUS)}**",
                    ),
                ],
            ),
            "SQL statements per request (`CaptureQueriesContext`, 10 more requests each): "
            + "; ".join(f"{name} {q['per_request']:.1f}" for name, q in queries.items())
            + ". Those of cc_sync's view: "
            + ", ".join(f"`{shape}` x {n:g}" for shape, n in queries["cc_sync"]["shapes"].items())
            + ". Both run one INSERT (cc_sync's already marks the row as queued); cc_sync's adds the "
            "suppression check and the broker publish (on a background thread, waited for).",
            "Where cc_sync's view spends its time (cProfile over "
            f"{20 if quick else 200} more requests, so every figure is inflated by the profiler; cumulative "
            "time per request; indented areas are part of the one above):",
            table(["area", "ms per request"], [(a["area"], fmt(a["ms_per_request"], 2)) for a in profile]),
            f"cc_sync's rows whose task reached the broker: {published} of {rounds + warmup} "
            f"({queued} messages waiting in the queue at the end).",
        ]
    )
    return {
        "title": TITLE,
        "goal": f"p50 within {GOAL_PLAIN}x of a plain save; >= {GOAL_SYNCHRONOUS:.0f}x faster than calling CC",
        "result": f"{ratio_plain:.2f}x the plain save; {ratio_synchronous:.0f}x faster than synchronous (p50)",
        "verdict": verdict(passed),
        "markdown": markdown,
        "figures": figures,
    }
