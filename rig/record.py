"""What a run's report says about itself: the machine, the versions, the load, the command and its output.

The fault suite's report (docs/reliability.md) and the benchmarks' (docs/benchmarks.md) both start with it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from rig import ROOT


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _command_output(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, str]:
    """The machine, its load, the versions of what runs, and the commit, for a report's header."""
    from django.db import connection

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown",
    )
    memory = next(
        (line.split()[1] for line in _read("/proc/meminfo").splitlines() if "MemTotal" in line), "0"
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("django", "celery", "kombu", "redis", "psycopg", "requests")
    )
    commit = _command_output("git", "rev-parse", "--short", "HEAD")
    dirty = _command_output("git", "status", "--porcelain", "--", "cc_sync")
    load = os.getloadavg()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "CPU": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{int(memory) / 1024 / 1024:.1f} GiB",
        "load average at the start (1/5/15 min)": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        "Python": platform.python_version(),
        "packages": versions,
        "PostgreSQL": postgres,
        "Redis": _command_output("redis-server", "--version").split(" sha=")[0],
        "cc_sync commit": f"{commit}{' (cc_sync/ modified)' if dirty else ''}",
    }


def run_record(args: argparse.Namespace, program: str, default_output: Path) -> tuple[str, str, str | None]:
    """The run's load average, its command line, and where its report goes (a full run: the docs page)."""
    load = os.getloadavg()
    command = f"python -m {program}" + (" --quick" if args.quick else "")
    command += f" --only {args.only}" if args.only else ""
    output = args.output
    if output is None and not args.quick and not args.only:
        output = str(default_output)
    return f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}", command, output
