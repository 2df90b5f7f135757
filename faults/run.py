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
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "cc_sync_faults"
DEFAULT_OUTPUT = ROOT / "docs" / "reliability.md"


def _admin_connection():
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True)


def create_database(name: str) -> None:
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(name: str) -> Iterator[None]:
    """Create database ``name``, set this process up on it (:func:`bootstrap`), and drop it at the end."""
    create_database(name)
    try:
        bootstrap(name)
        yield
    finally:
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        drop_database(name)


def run_record(args: argparse.Namespace, program: str, default_output: Path) -> tuple[str, str, str | None]:
    """The run's load average, its command line, and where its report goes (a full run: the docs page)."""
    load = os.getloadavg()
    command = f"python -m {program}" + (" --quick" if args.quick else "")
    command += f" --only {args.only}" if args.only else ""
    output = args.output
    if output is None and not args.quick and not args.only:
        output = str(default_output)
    return f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}", command, output


def bootstrap(db_name: str) -> None:
    """Configure this process as the example project's web process on the runner's own database."""
    import secrets

    from cryptography.fernet import Fernet

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DEBUG": "false",
            "SECRET_KEY": "fault-suite-" + secrets.token_hex(16),
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
            "CC_CLIENT_ID": "sandbox-client-id",
            "CC_CLIENT_SECRET": "sandbox-client-secret",
            "CC_SYNC_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "CC_SYNC_LOG_LEVEL": "INFO",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    # The example project logs cc_sync to the console; the rig writes it to a file per scenario.
    for handler in list(logging.getLogger("cc_sync").handlers):
        logging.getLogger("cc_sync").removeHandler(handler)
    logging.getLogger("cc_sync").propagate = False
    call_command("migrate", verbosity=0)


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
        machine = report.machine_info()
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
