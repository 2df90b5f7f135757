"""Run the fault scenarios and write docs/reliability.md.

    python -m faults.run [--quick] [--only NAME[,NAME...]] [--output PATH] [--keep-logs]

Needs PostgreSQL (127.0.0.1:5432, user postgres) and ``redis-server`` on the PATH. The runner creates its
own database (``cc_sync_faults``, dropped at the end), starts its own Redis on a free port for each
scenario, and never touches other databases or the shared Redis. The full run (all scenarios, full
sizes) writes ``docs/reliability.md``; ``--quick`` or ``--only`` print their figures and write a report
only when ``--output`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rig import ROOT
from rig.database import scratch_database
from rig.record import machine_info, run_record

DEFAULT_DB = "cc_sync_faults"
DEFAULT_OUTPUT = ROOT / "docs" / "reliability.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smaller sizes CI runs")
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--output", default=None, help=f"report path (full run default: {DEFAULT_OUTPUT})")
    parser.add_argument("--keep-logs", action="store_true", help="keep each scenario's logs and mails")
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"database to create and drop (default {DEFAULT_DB})"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of every random choice")
    args = parser.parse_args(argv)

    with scratch_database(args.db):
        from faults import report, scenarios

        names = [n.strip() for n in args.only.split(",") if n.strip()] or list(scenarios.SCENARIOS)
        unknown = [n for n in names if n not in scenarios.SCENARIOS]
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(scenarios.SCENARIOS)}")
        machine = machine_info()
        started = time.time()
        results = []
        for name in names:
            result = scenarios.run(name, quick=args.quick, seed=args.seed, keep=args.keep_logs)
            results.append(result)
            print(report.text_summary(result), flush=True)
        elapsed = time.time() - started
        machine["load average at the end (1/5/15 min)"], command, output = run_record(
            args, "faults.run", DEFAULT_OUTPUT
        )
        if output:
            Path(output).write_text(report.markdown(results, machine, command, elapsed, args.quick))
            print(f"Report written to {output}", flush=True)
        passed = all(r.passed for r in results)
        print(
            f"{sum(r.passed for r in results)}/{len(results)} scenarios passed in {elapsed / 60:.1f} min.",
            flush=True,
        )
        return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
