"""3. Overhead over bare HTTP: contacts per second through cc_sync's workers against a bare requests loop.

Also profiles one worker task in this process (cProfile, and the SQL it runs) to say what costs most.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from cc_sync import tasks

from .common import (
    ROOT,
    CpuMeter,
    bench_rig,
    cpu_seconds,
    create_posts,
    fmt,
    make_signups,
    publish_signups,
    start_worker,
    status_line,
    table,
    wait_synced,
)

TITLE = "Overhead over bare HTTP"
PROCESSES = 2  # worker pool processes on one side, client processes on the other (the machine's cores)
# The areas of the profile: (label, file fragment, function name) whose cumulative time is reported.
AREAS = [
    ("the whole task (`cc_sync.sync.process_signup`)", "cc_sync/sync.py", "process_signup"),
    ("claim the row (`sync.claim`: UPDATE ... RETURNING)", "cc_sync/sync.py", "claim"),
    ("suppression check (`privacy.is_suppressed`)", "cc_sync/privacy.py", "is_suppressed"),
    ("access token (`oauth.get_access_token`)", "cc_sync/oauth.py", "get_access_token"),
    ("  of which `Connection.load` (SELECT, get_or_create)", "cc_sync/models.py", "load"),
    ("  of which Fernet decryption of the tokens", "cc_sync/crypto.py", "decrypt"),
    (
        "the process's HTTP client (`client.get_client`, one session per process)",
        "cc_sync/client.py",
        "get_client",
    ),
    ("rate-limit slot (`ratelimit.wait_for_slot`)", "cc_sync/ratelimit.py", "wait_for_slot"),
    ("the HTTP call (`requests.Session.send`)", "requests/sessions.py", "send"),
    ("record the outcome (`sync._finish`: UPDATE)", "cc_sync/sync.py", "_finish"),
    ("`signup_synced` signal", "django/dispatch/dispatcher.py", "send"),
    ("logging (`Logger._log`)", "logging/__init__.py", "_log"),
    ("every SQL statement (`CursorWrapper._execute`)", "django/db/backends/utils.py", "_execute"),
]


def _rate_from_log(entries: list[dict[str, Any]]) -> tuple[float, float]:
    """Contacts per second between the first and the last create (POST /v3/contacts), and that span."""
    times = sorted(e["time"] for e in create_posts(entries))
    if len(times) < 2:
        return 0.0, 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span, span


def through_cc_sync(rig: Any, total: int, prefix: str, reuse_db: bool) -> dict[str, Any]:
    worker = start_worker(rig, prefix, concurrency=PROCESSES, reuse_db=reuse_db)
    worker.wait_ready()
    rig.wait_consumers(1)
    ids = make_signups(total, f"{prefix}-", rig.list_id)
    log_start = len(rig.sandbox.requests())
    meter = CpuMeter(**{"Celery worker (main + pool)": worker.pid, "Redis": rig.redis.process.pid}).start()
    started = time.time()
    publish_signups(ids)
    synced = wait_synced(rig, total + _synced_before(prefix), timeout=600, interval=0.1)
    cpu = meter.stop()
    worker.stop()
    rig.workers.remove(worker)  # or the rig's supervisor would start it again
    entries = rig.sandbox.requests()[log_start:]
    rate, span = _rate_from_log(entries)
    return {
        "contacts": total,
        "all_synced": synced,
        "contacts_per_s": rate,
        "span_s": span,
        "wall_s": time.time() - started,
        "posts": len(create_posts(entries)),
        "cpu_ms_per_contact": {name: 1000 * value / total for name, value in cpu.items()},
    }


def _synced_before(prefix: str) -> int:
    from cc_sync.models import Signup

    return Signup.objects.filter(status=Signup.Status.SYNCED).exclude(email__startswith=f"{prefix}-").count()


def through_bare(rig: Any, token: str, total: int, prefix: str, mode: str) -> dict[str, Any]:
    sandbox = rig.sandbox
    per_process = total // PROCESSES
    start_at = time.time() + 2.0
    log_start = len(sandbox.requests())
    meter = CpuMeter(**{"Redis": rig.redis.process.pid}).start()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bare",
                sandbox.api_url,
                token,
                rig.list_id,
                f"{prefix}{n}-",
                "0",
                str(per_process),
                str(start_at),
                mode,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    outputs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in processes]
    cpu = meter.stop()
    cpu.pop("PostgreSQL server", None)
    cpu["bare client processes"] = sum(o["cpu"] for o in outputs)
    entries = sandbox.requests()[log_start:]
    rate, span = _rate_from_log(entries)
    statuses: Counter[int] = Counter()
    for output in outputs:
        statuses.update({int(k): v for k, v in output["statuses"].items()})
    sent = per_process * PROCESSES
    return {
        "contacts": sent,
        "all_synced": statuses.get(201, 0) + statuses.get(200, 0) == sent,
        "contacts_per_s": rate,
        "span_s": span,
        "posts": len(create_posts(entries)),
        "statuses": dict(statuses),
        "cpu_ms_per_contact": {name: 1000 * value / sent for name, value in cpu.items()},
    }


def _normalise_sql(sql: str) -> str:
    sql = sql.replace('"', "")
    sql = re.sub(r"'[^']*'", "?", sql)
    sql = re.sub(r"\b\d+(\.\d+)?\b", "?", sql)
    verb = sql.split(" ", 1)[0]
    table_name = next(iter(re.findall(r"cc_sync_\w+", sql)), "")
    if verb == "SELECT":
        where = re.search(r"WHERE (.*?)( ORDER| LIMIT| FOR|$)", sql)
        detail = f"WHERE {where.group(1)[:60]}" if where else ""
        if " FOR UPDATE" in sql:
            detail += " FOR UPDATE"
    elif verb == "UPDATE":
        sets = re.search(r"SET (.*?) WHERE", sql)
        columns = re.findall(r"(\w+) = ", sets.group(1)) if sets else []
        detail = f"SET {', '.join(columns[:4])}{', ...' if len(columns) > 4 else ''} ({len(columns)} columns)"
    else:
        detail = sql[len(verb) : len(verb) + 40].strip()
    return f"{verb} {table_name} {detail}".strip()


def profile_tasks(rig: Any, count: int) -> dict[str, Any]:
    """Run the sync task in this process (``apply()``) under CaptureQueriesContext, then under cProfile."""
    sample = 20
    ids = make_signups(count + sample + 1, "profile-", rig.list_id)
    tasks.sync_signup.apply(args=(ids[0],))  # warm-up: imports, first connection
    with CaptureQueriesContext(connection) as captured:
        for pk in ids[1 : sample + 1]:
            tasks.sync_signup.apply(args=(pk,))
    shapes = Counter(_normalise_sql(q["sql"]) for q in captured.captured_queries)
    profile_ids = ids[sample + 1 :]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for pk in profile_ids:
        tasks.sync_signup.apply(args=(pk,))
    profiler.disable()
    profiled_ms = 1000 * (time.perf_counter() - started) / len(profile_ids)
    plain_ids = make_signups(count, "plain-", rig.list_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    backend_cpu = cpu_seconds(backend, with_children=False)
    own_cpu = time.process_time()
    started = time.perf_counter()
    for pk in plain_ids:
        tasks.sync_signup.apply(args=(pk,))
    plain_ms = 1000 * (time.perf_counter() - started) / len(plain_ids)
    own_cpu_ms = 1000 * (time.process_time() - own_cpu) / len(plain_ids)
    backend_cpu_ms = 1000 * (cpu_seconds(backend, with_children=False) - backend_cpu) / len(plain_ids)
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]
    areas = []
    for label, fragment, name in AREAS:
        cumulative = sum(
            entry[3]
            for (filename, _line, function), entry in raw.items()
            if fragment in filename and function == name
        )
        calls = sum(
            entry[1]
            for (filename, _line, function), entry in raw.items()
            if fragment in filename and function == name
        )
        areas.append(
            {
                "area": label,
                "ms_per_task": 1000 * cumulative / len(profile_ids),
                "calls_per_task": calls / len(profile_ids),
            }
        )
    own = []
    for (filename, line, function), entry in raw.items():
        if "/cc_sync/" in filename and "/sandbox/" not in filename:
            short = filename.split("/cc_sync/", 1)[1]
            own.append(
                (
                    f"cc_sync/{short}:{line} {function}",
                    1000 * entry[3] / len(profile_ids),
                    entry[1] / len(profile_ids),
                )
            )
    own.sort(key=lambda item: -item[1])
    by_tottime = sorted(raw.items(), key=lambda item: -item[1][2])[:12]
    hottest = [
        (f"{'/'.join(filename.rsplit('/', 2)[-2:])}:{line} {function}", 1000 * entry[2] / len(profile_ids))
        for (filename, line, function), entry in by_tottime
    ]
    return {
        "tasks_profiled": len(profile_ids),
        "ms_per_task_in_process": plain_ms,
        "cpu_ms_per_task_this_process": own_cpu_ms,
        "cpu_ms_per_task_postgres_backend": backend_cpu_ms,
        "ms_per_task_under_cprofile": profiled_ms,
        "queries_per_task": len(captured.captured_queries) / sample,
        "query_shapes_per_task": {shape: n / sample for shape, n in shapes.most_common()},
        "areas": areas,
        "cc_sync_functions": own[:15],
        "hottest_by_own_time": hottest,
    }


def run(quick: bool) -> dict[str, Any]:
    total = 400 if quick else 4000
    profile_count = 40 if quick else 300
    with bench_rig("overhead") as rig:
        sandbox = rig.start_sandbox(api_rate=None, daily_quota=None, delay=0.0)
        rig.configure(API_RATE=100_000.0, DAILY_LIMIT=10**9)
        tokens = rig.connect()
        token = tokens["access_token"]
        results = {
            "cc_sync": through_cc_sync(rig, total, "ccsync", reuse_db=False),
            "cc_sync_persistent_db": through_cc_sync(rig, total, "ccpersist", reuse_db=True),
            "bare_session": through_bare(rig, token, total, "bare-", "session"),
            "bare_fresh_session": through_bare(rig, token, total, "fresh-", "fresh"),
        }
        profile = profile_tasks(rig, profile_count)
        statuses = status_line()
        contacts_in_store = len(sandbox.contacts())
    bare = results["bare_session"]["contacts_per_s"]
    ratio = bare / results["cc_sync"]["contacts_per_s"] if results["cc_sync"]["contacts_per_s"] else 0.0
    kept = results["cc_sync_persistent_db"]["contacts_per_s"]
    ratio_kept = bare / kept if kept else 0.0
    labels = {
        "cc_sync": "cc_sync: Celery worker, the example project's default settings (a new DB connection per task)",
        "cc_sync_persistent_db": (
            "cc_sync: the same with `CELERY_DB_REUSE_MAX=1000` and `CONN_MAX_AGE=60` (`bench/worker_settings.py`, "
            "as docs/celery.md recommends)"
        ),
        "bare_session": "bare `requests.Session` loop, one session per process",
        "bare_fresh_session": "bare loop, a new `requests.Session` per POST (what a client per task would cost)",
    }
    rows = []
    for name, result in results.items():
        cpu = result["cpu_ms_per_contact"]
        rows.append(
            (
                labels[name],
                result["contacts"],
                fmt(result["contacts_per_s"], 0),
                f"{bare / result['contacts_per_s']:.2f}x" if result["contacts_per_s"] else "-",
                fmt(sum(cpu.values()), 2),
                "; ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005),
            )
        )
    area_rows = [(a["area"], fmt(a["ms_per_task"], 3), fmt(a["calls_per_task"], 1)) for a in profile["areas"]]
    query_rows = [(f"`{shape}`", fmt(n, 1)) for shape, n in profile["query_shapes_per_task"].items()]
    own_rows = [(f"`{name}`", fmt(ms, 3), fmt(calls, 1)) for name, ms, calls in profile["cc_sync_functions"]]
    markdown = "\n\n".join(
        [
            f"**How it was run.** No rate limit and no latency: the sandbox has no `/v3` limit and answers at "
            f"once; cc_sync runs with `API_RATE=100000` (its limiter still reserves a slot per request). The same "
            f"{PROCESSES} processes on each side: one prefork worker with {PROCESSES} pool processes, or "
            f"{PROCESSES} client processes (`bench/bare.py`) posting the same `POST /v3/contacts` bodies "
            "cc_sync sends for a new address (`bench.bare.create_body`) to the same sandbox; every address is "
            "new, so cc_sync's cost is that one request too. Worker rows are saved in bulk and their tasks "
            "published at once while the worker is idle. "
            "Contacts per second are counted by the sandbox, from the first to the last `POST /v3/contacts`. "
            "CPU per contact: the worker's main and pool processes, the PostgreSQL server (every process, reaped "
            "backends included; the server is shared with other users of this machine, so this figure is an upper "
            "bound), the rig's Redis, and this process (the sandbox, which serves both sides, plus the driver's "
            "polling).",
            table(
                [
                    "client",
                    "contacts",
                    "contacts/s",
                    "bare / this",
                    "CPU ms per contact",
                    "CPU ms by process",
                ],
                rows,
            ),
            f"**Ratio that matters:** the bare loop moves **{ratio:.1f}x** as many contacts per second as "
            "cc_sync's workers with the same number of processes, and "
            f"**{ratio_kept:.1f}x** as many when the workers keep their database connection (no goal was set "
            "for these figures). At CC's "
            "real limit of 4 requests/s neither side is anywhere near its ceiling: cc_sync's per-contact cost "
            "only matters for how many cores a backlog drain or a busy site needs.",
            f"**Profile of one task** (in this process, `tasks.sync_signup.apply()`, so with a persistent "
            f"database connection and without the worker's broker round trip): "
            f"{fmt(profile['ms_per_task_in_process'], 2)} ms per task, of which "
            f"{fmt(profile['cpu_ms_per_task_this_process'], 2)} ms CPU in this process (task and sandbox) and "
            f"{fmt(profile['cpu_ms_per_task_postgres_backend'], 2)} ms CPU in its PostgreSQL backend "
            f"({fmt(profile['ms_per_task_under_cprofile'], 2)} ms under cProfile, "
            f"{profile['tasks_profiled']} tasks), **{fmt(profile['queries_per_task'], 1)} SQL statements per "
            "task**. Cumulative time per task (under cProfile; areas overlap where nested):",
            table(["area", "ms per task", "calls per task"], area_rows),
            "SQL statements per task (`CaptureQueriesContext`, 20 tasks):",
            table(["statement", "per task"], query_rows),
            "The cc_sync functions with the most cumulative time per task:",
            table(["function", "ms per task", "calls per task"], own_rows),
            f"Final statuses: {statuses}; contacts in the sandbox's store: {contacts_in_store}.",
        ]
    )
    return {
        "title": TITLE,
        "goal": "(none set) report the ratio and what costs most per signup",
        "result": f"bare loop {ratio:.1f}x cc_sync's contacts/s ({ratio_kept:.1f}x with the database "
        f"connection kept); {profile['queries_per_task']:.0f} SQL statements per task",
        "verdict": "",
        "markdown": markdown,
        "figures": {
            "runs": results,
            "bare_over_cc_sync": ratio,
            "bare_over_cc_sync_kept_connection": ratio_kept,
            "profile": profile,
        },
    }
