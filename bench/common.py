"""What the benchmarks share: the rig with production settings, bulk signups, waiting, memory and CPU readings.

The rig (Redis, sandbox, workers) is the fault suite's, :class:`rig.deployment.Rig`; only its settings
differ: the benchmarks run cc_sync with its production defaults (:data:`rig.timing.PRODUCTION`), not scaled
ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.db import connection as db_connection
from django.db.models import Max, Min
from django.utils import timezone

from bench.bare import create_body
from cc_sync import privacy
from cc_sync.models import Signup
from cc_sync.sync import publish
from rig import ROOT
from rig.database import status_counts
from rig.deployment import Rig
from rig.figures import percentile
from rig.processes import Worker
from rig.proctable import children_of
from rig.timing import PRODUCTION
from rig.waiting import TimedOut, wait_until

__all__ = [
    "ROOT",
    "BenchRig",
    "Rig",
    "Worker",
    "bench_rig",
    "cpu_seconds",
    "fmt",
    "make_signups",
    "percentile",
    "postgres_cpu_seconds",
    "publish_signups",
    "rss_kib",
    "create_posts",
    "create_body",
    "start_worker",
    "status_counts",
    "synced_span",
    "table",
    "wait_synced",
    "wait_until",
]

# A new address costs cc_sync one request, POST /v3/contacts (docs/signups.md, "Contact safety").
CONTACTS_PATH = "/v3/contacts"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchRig(Rig):
    """A fault-suite rig (own Redis, sandbox, workers) running cc_sync with its production settings."""

    def __init__(self, name: str) -> None:
        super().__init__(f"bench_{name}")
        # Production settings, but the one-by-one path: these benchmarks queue hundreds to thousands of signups
        # at once to measure it, which surge mode would send in bulk (measured on its own by bench/surge.py).
        self.cc = {**PRODUCTION, "SURGE_IMPORT": 0.0}


def bench_rig(name: str) -> BenchRig:
    """The rig of one benchmark: use it as a context manager."""
    return BenchRig(name)


def start_worker(rig: Rig, name: str, concurrency: int = 2, reuse_db: bool = False) -> Worker:
    """A prefork worker of the example project on the rig.

    ``reuse_db`` runs it with :mod:`bench.worker_settings`, which keeps database connections between tasks.
    """
    env = rig.env()
    if reuse_db:
        env["DJANGO_SETTINGS_MODULE"] = "bench.worker_settings"
    worker = Worker(name, env, rig.workdir / f"worker-{name}.log", concurrency)
    worker.start()
    rig.workers.append(worker)
    return worker


def make_signups(count: int, prefix: str, list_id: str, start: int = 0) -> list[int]:
    """Save ``count`` pending signups as :func:`cc_sync.sync.enqueue_signup` would (without publishing them).

    One bulk INSERT instead of ``count`` visitor requests: the benchmarks that use it measure the worker
    side, and the sweeper is not running, so nothing is queued until the benchmark publishes the ids.
    """
    now = timezone.now()
    rows = []
    for n in range(start, start + count):
        email = f"{prefix}{n:06d}@example.com"
        rows.append(
            Signup(
                email=email,
                first_name="Bench",
                last_name=f"Mark{n}",
                list_ids=[list_id],
                email_hash=privacy.email_hash(email),
                consent_given_at=now,
                consent_text="Yes, send me email updates.",
                consent_version="1",
            )
        )
    return [row.pk for row in Signup.objects.bulk_create(rows, batch_size=1000)]


def publish_signups(ids: list[int]) -> list[int]:
    """Mark the rows as queued and publish their tasks, as the sweeper does (waiting for the broker)."""
    marked_at = timezone.now()
    Signup.objects.filter(pk__in=ids).update(enqueued_at=marked_at)
    return publish(ids, marked_at=marked_at)


def wait_synced(rig: Rig, count: int, timeout: float, interval: float = 0.2) -> bool:
    """Wait until ``count`` signups are synced (restarting a worker that died, as the rig does)."""

    def done() -> bool:
        rig.supervise()
        return Signup.objects.filter(status=Signup.Status.SYNCED).count() >= count

    try:
        return bool(wait_until(done, timeout, interval=interval, what=f"{count} signups synced"))
    except TimedOut:
        return False


def synced_span() -> tuple[float, float]:
    """Unix times of the first and the last ``synced_at``."""
    span = Signup.objects.filter(status=Signup.Status.SYNCED).aggregate(
        first=Min("synced_at"), last=Max("synced_at")
    )
    if span["first"] is None:
        return 0.0, 0.0
    return span["first"].timestamp(), span["last"].timestamp()


def create_posts(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /v3/contacts`` in the sandbox's request log: the one request a new address costs."""
    return [e for e in entries if e["kind"] == "api" and e["method"] == "POST" and e["path"] == CONTACTS_PATH]


# -- /proc readings -----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS, KiB); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """User + system CPU of a process, plus its live children's and the children it has reaped."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based).
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
        total = ticks / CLOCK_TICKS
        return total + sum(cpu_seconds(child, with_children=True) for child in children_of(pid))
    return ticks / CLOCK_TICKS


def postgres_cpu_seconds() -> float:
    """CPU used by every PostgreSQL process so far (the postmaster's reaped backends included)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm != "postgres":
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        ticks = int(fields[11]) + int(fields[12])
        parent_comm = ""
        try:
            parent_comm = Path(f"/proc/{fields[1]}/comm").read_text().strip()
        except OSError:
            pass
        if parent_comm != "postgres":  # the postmaster: add the backends it has reaped
            ticks += int(fields[13]) + int(fields[14])
        total += ticks / CLOCK_TICKS
    return total


class CpuMeter:
    """CPU seconds used by groups of processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        values = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        values["PostgreSQL server"] = postgres_cpu_seconds()
        times = os.times()
        values["this process (sandbox and driver)"] = times.user + times.system
        return values

    def start(self) -> CpuMeter:
        self.before = self._read()
        self.started = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.wall = time.monotonic() - self.started
        self.used = {name: after[name] - self.before.get(name, 0.0) for name in after}
        return self.used


# -- formatting ---------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def latency_summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * percentile(times, 0.5),
        "p99_ms": 1000 * percentile(times, 0.99),
        "max_ms": 1000 * max(times) if times else 0.0,
        "n": len(times),
    }


def verdict(passed: bool) -> str:
    return "pass" if passed else "miss"


def status_line(counts: dict[str, int] | None = None) -> str:
    counts = status_counts() if counts is None else counts
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def run_in_threads(work: Callable[[int], None], threads: int) -> tuple[float, list[str]]:
    """Run ``work(offset)`` for offsets 0 .. threads-1 at once; return the wall time and the errors raised.

    As workers would: each thread sends through cc_sync's shared limiter on a database connection of its own,
    closed at the end. An error is reported in the figures, never hidden.
    """
    errors: list[str] = []

    def run(offset: int) -> None:
        try:
            work(offset)
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
        finally:
            db_connection.close()

    started = time.monotonic()
    running = [threading.Thread(target=run, args=(offset,)) for offset in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return time.monotonic() - started, errors
