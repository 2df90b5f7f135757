"""1. Visitor latency: cc_sync's signup view against a plain save and against calling CC in the request."""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from cc_sync.models import Signup
from rig.processes import Managed, free_port
from rig.waiting import TimedOut, wait_until

from .common import bench_rig, fmt, latency_summary, table, verdict

TITLE = "Visitor latency"
LATENCY = 0.25  # seconds: a CC-like answer time of POST /contacts
VARIANTS = {
    "cc_sync": ("/register/", "cc_sync's `SignupView`: save the row, publish the task after commit"),
    "plain": ("/bench/plain/", "(a) plain Django view: save the same fields, no sync at all"),
    "synchronous": (
        "/bench/synchronous/",
        "(b) synchronous: save, then `requests.post` to CC's `POST /v3/contacts` inside the request",
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


Post = Callable[[str, dict[str, str], str], int]


def timed_rounds(post: Post, prefix: str, rounds: int, warmup: int) -> tuple[dict, dict, float]:
    """POST one new signup per round to each view through ``post(url, data, ip)``; times and statuses."""
    names = list(VARIANTS)
    times: dict[str, list[float]] = {name: [] for name in names}
    statuses: dict[str, Counter[int]] = {name: Counter() for name in names}
    started = time.monotonic()
    for number in range(warmup + rounds):
        # Rotate the order, so that no variant always runs right after another one.
        for name in names[number % 3 :] + names[: number % 3]:
            ip = f"10.{(number >> 8) & 255}.{number & 255}.{names.index(name) + 1}"
            data = {
                "email": f"{prefix}-{name}-{number:05d}@example.com",
                "first_name": "Vera",
                "last_name": "Visitor",
                "consent": "on",
            }
            moment = time.perf_counter()
            status = post(VARIANTS[name][0], data, ip)
            spent = time.perf_counter() - moment
            if number >= warmup:
                times[name].append(spent)
                statuses[name][status] += 1
    return times, statuses, time.monotonic() - started


@contextmanager
def gunicorn(rig: Any) -> Iterator[str]:
    """The example project under gunicorn (one sync worker) with the benchmark's URLs; yields its base URL."""
    port = free_port()
    env = rig.env()
    # Database connections kept between requests, as a production site sets it; the test client keeps its
    # connection too, so both passes measure the views, not PostgreSQL's connection setup.
    env.update({"DJANGO_SETTINGS_MODULE": "bench.web_settings", "CONN_MAX_AGE": "60"})
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    server = Managed(
        "gunicorn", [*command, "example_project.wsgi:application"], env, rig.workdir / "gunicorn.log"
    )
    server.start()
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(base + "/register/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        try:
            wait_until(answers, timeout=60, interval=0.2, what="gunicorn to answer")
        except TimedOut as timeout:
            raise RuntimeError(f"gunicorn did not answer; see {server.log_path}") from timeout
        yield base
    finally:
        server.stop()


def http_poster(base: str) -> Post:
    """``post`` for :func:`timed_rounds` over HTTP, with the CSRF cookie and token a browser would send."""
    session = requests.Session()
    session.get(base + "/register/", timeout=10).raise_for_status()
    token = session.cookies["csrftoken"]

    def post(url: str, data: dict[str, str], ip: str) -> int:
        response = session.post(
            base + url,
            data={**data, "csrfmiddlewaretoken": token},
            headers={"X-Forwarded-For": ip, "User-Agent": "bench"},
            allow_redirects=False,
            timeout=30,
        )
        return response.status_code

    return post


def run(quick: bool) -> dict[str, Any]:
    rounds = 30 if quick else 300
    warmup = 5
    with bench_rig("visitor") as rig:
        rig.start_sandbox(api_rate=None, daily_quota=None, delay=LATENCY)
        rig.connect()
        passes = {}
        with override_settings(ROOT_URLCONF="bench.urls"):
            client = Client()

            def in_process(url: str, data: dict[str, str], ip: str) -> int:
                return client.post(url, data, REMOTE_ADDR=ip, HTTP_USER_AGENT="bench").status_code

            passes["test client"] = timed_rounds(in_process, "visitor", rounds, warmup)
            queries = count_queries(client)
            profile = profile_view(client, 20 if quick else 200)
        with gunicorn(rig) as base:
            passes["gunicorn"] = timed_rounds(http_poster(base), "http", rounds, warmup)
        published = Signup.objects.filter(
            email__regex=r"^(visitor|http)-cc_sync-", enqueued_at__isnull=False
        ).count()
        # The baselines never mark their rows: every marked row is one of cc_sync's, with its message queued.
        marked = Signup.objects.filter(enqueued_at__isnull=False).count()
        queued = rig.redis.queue_length() or 0
    figures: dict[str, Any] = {"rounds": rounds, "warmup": warmup, "passes": {}}
    latency_rows, ratio_rows, results = [], [], []
    passed = True
    for stack, (times, statuses, elapsed) in passes.items():
        summary = {name: latency_summary(values) for name, values in times.items()}
        cc, plain, synchronous = summary["cc_sync"], summary["plain"], summary["synchronous"]
        ratio_plain = cc["p50_ms"] / plain["p50_ms"]
        ratio_synchronous = synchronous["p50_ms"] / cc["p50_ms"]
        passed = passed and ratio_plain <= GOAL_PLAIN and ratio_synchronous >= GOAL_SYNCHRONOUS
        figures["passes"][stack] = {
            "seconds": elapsed,
            "latency": summary,
            "statuses": {name: dict(counter) for name, counter in statuses.items()},
            "ratio_p50_vs_plain": ratio_plain,
            "ratio_p99_vs_plain": cc["p99_ms"] / plain["p99_ms"],
            "speedup_p50_vs_synchronous": ratio_synchronous,
            "speedup_p99_vs_synchronous": synchronous["p99_ms"] / cc["p99_ms"],
        }
        latency_rows += [
            (
                stack,
                f"`{VARIANTS[name][0]}`",
                VARIANTS[name][1],
                fmt(summary[name]["p50_ms"], 2),
                fmt(summary[name]["p99_ms"], 2),
                fmt(summary[name]["max_ms"], 1),
                ", ".join(f"{k}: {v}" for k, v in sorted(statuses[name].items())),
            )
            for name in VARIANTS
        ]
        ratio_rows += [
            (
                stack,
                "cc_sync / plain save (a)",
                f"{ratio_plain:.2f}x",
                f"{cc['p99_ms'] / plain['p99_ms']:.2f}x",
                f"<= {GOAL_PLAIN}x at p50",
                f"**{verdict(ratio_plain <= GOAL_PLAIN)}**",
            ),
            (
                stack,
                "synchronous (b) / cc_sync",
                f"{ratio_synchronous:.1f}x faster",
                f"{synchronous['p99_ms'] / cc['p99_ms']:.1f}x faster",
                f">= {GOAL_SYNCHRONOUS:.0f}x at p50",
                f"**{verdict(ratio_synchronous >= GOAL_SYNCHRONOUS)}**",
            ),
        ]
        results.append(
            f"{stack}: {ratio_plain:.2f}x the plain save, {ratio_synchronous:.0f}x faster than synchronous"
        )
    figures.update(
        queries=queries,
        cc_sync_view_profile=profile,
        cc_sync_rows_published=published,
        rows_marked_queued=marked,
        messages_in_queue=queued,
    )
    markdown = "\n\n".join(
        [
            f"**How it was run.** Two passes, {rounds} rounds each after {warmup} warm-up rounds; each round "
            "POSTs one valid signup (new email, new client IP) to each of the three views, in an order that "
            "rotates every round, so the three share the same moment of the machine. *test client*: Django's "
            "test client in this process, the example project's settings with `ROOT_URLCONF=bench.urls`; time "
            f"measured around `client.post` ({fmt(passes['test client'][2], 0)} s in all). *gunicorn*: the "
            "example project served by gunicorn (one sync worker, `bench/web_settings.py`: the same URLs, "
            "`CONN_MAX_AGE=60`, the client address from `X-Forwarded-For` as behind a proxy), posted to over "
            "HTTP with `requests` carrying the CSRF cookie and token; time measured around `session.post`, a "
            f"new TCP connection each (gunicorn's sync worker closes it) ({fmt(passes['gunicorn'][2], 0)} s in "
            "all). Both: PostgreSQL, the rig's own Redis as broker (no worker consuming, so the workers' CPU "
            f"does not disturb the web side), and the CC sandbox answering `/v3` after {LATENCY * 1000:.0f} ms.",
            table(["stack", "URL", "view", "p50, ms", "p99, ms", "max, ms", "HTTP statuses"], latency_rows),
            table(["stack", "ratio", "p50", "p99", "goal", "result"], ratio_rows),
            "SQL statements per request (`CaptureQueriesContext`, test client, 10 more requests each): "
            + "; ".join(f"{name} {q['per_request']:.1f}" for name, q in queries.items())
            + ". Those of cc_sync's view: "
            + ", ".join(f"`{shape}` x {n:g}" for shape, n in queries["cc_sync"]["shapes"].items())
            + ". Both run one INSERT (cc_sync's already marks the row as queued); cc_sync's adds the "
            "suppression check and the broker publish (on a background thread, waited for).",
            "Where cc_sync's view spends its time (cProfile over "
            f"{20 if quick else 200} more requests through the test client, so every figure is inflated by the "
            "profiler; cumulative time per request; indented areas are part of the one above):",
            table(["area", "ms per request"], [(a["area"], fmt(a["ms_per_request"], 2)) for a in profile]),
            "What cc_sync's view adds to the plain save: the suppression check (one SELECT, so that an erased "
            "or unsubscribed person is not stored again), the broker publish (Celery's `apply_async` to Redis, "
            "waited for on the publisher thread so that a publish that fails is unmarked for the sweeper at "
            "once), the submission limits and a second validation of the model in `enqueue_signup` (the same "
            "checks whatever the caller). The INSERT costs the same on both sides.",
            f"cc_sync's rows whose task reached the broker: {published} of {2 * (rounds + warmup)} "
            f"({queued} messages waiting in the queue at the end).",
        ]
    )
    return {
        "title": TITLE,
        "goal": f"p50 within {GOAL_PLAIN}x of a plain save; >= {GOAL_SYNCHRONOUS:.0f}x faster than calling CC "
        "(both passes)",
        "result": "; ".join(results) + " (p50)",
        "verdict": verdict(passed),
        "markdown": markdown,
        "figures": figures,
    }
