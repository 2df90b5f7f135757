"""Run the benchmarks and write docs/benchmarks.md.

    python -m bench.run [--quick] [--only NAME[,NAME...]] [--output PATH]

Needs PostgreSQL (127.0.0.1:5432, user postgres) and ``redis-server`` on the PATH. Like the fault suite it
creates its own database (``cc_sync_bench``, dropped at the end) and starts its own Redis on a free port
for each benchmark; it never touches other databases or the shared Redis. The full run writes
``docs/benchmarks.md``; ``--quick`` (the sizes CI runs) or ``--only`` print their figures and write a
report only when ``--output`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rig import ROOT
from rig.database import scratch_database
from rig.record import run_record

DEFAULT_DB = "cc_sync_bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
# name: module under bench/ (each has run(quick: bool) -> dict with title, markdown, figures).
BENCHMARKS = {
    "visitor": "bench.visitor",
    "drain": "bench.drain",
    "overhead": "bench.overhead",
    "tokens": "bench.tokens",
    "memory": "bench.memory",
    "backfill": "bench.backfill",  # written separately; included when the module exists
    "cases": "bench.cases",
    "surge": "bench.surge",
    "keepalive": "bench.keepalive",
}


def available() -> dict[str, str]:
    """The benchmarks whose module exists."""
    return {
        name: module for name, module in BENCHMARKS.items() if importlib.util.find_spec(module) is not None
    }


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """Run one benchmark; a crash becomes a result that says so (the other benchmarks still run)."""
    started = time.monotonic()
    try:
        module = importlib.import_module(BENCHMARKS[name])
        result = dict(module.run(quick))
    except Exception:
        result = {
            "title": name,
            "markdown": f"The benchmark crashed:\n\n```\n{traceback.format_exc(limit=8)}\n```",
            "figures": {},
            "verdict": "error",
            "error": traceback.format_exc(limit=8),
        }
    result["name"] = name
    result["quick"] = quick
    result["duration"] = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes CI runs")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--output", default=None, help=f"report path (full run default: {DEFAULT_OUTPUT})")
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"database to create and drop (default {DEFAULT_DB})"
    )
    args = parser.parse_args(argv)

    known = available()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(known)}")

    with scratch_database(args.db):
        from . import report

        machine = report.machine_info()
        started = time.time()
        results = []
        for name in names:
            print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
            result = run_one(name, args.quick)
            results.append(result)
            print(report.text_summary(result), flush=True)
        elapsed = time.time() - started
        machine["load average at the end (1/5/15 min)"], command, output = run_record(
            args, "bench.run", DEFAULT_OUTPUT
        )
        if output:
            Path(output).write_text(report.markdown(results, machine, command, elapsed, args.quick))
            print(f"Report written to {output}", flush=True)
        print(f"{len(results)} benchmarks in {elapsed / 60:.1f} min.", flush=True)
        return 1 if any(r.get("verdict") == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
