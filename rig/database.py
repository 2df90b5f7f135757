"""The database of a run: a scratch PostgreSQL database for the fault suite and the benchmarks, and its rows.

``python -m faults.run`` and ``python -m bench.run`` each create their own database, set the process up
as the example project's web process on it, and drop it at the end; they never touch other databases.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rig import ROOT


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


def reset_tables() -> None:
    """Delete every signup, the connection, the rate-limit state and the suppressions."""
    from django.db import transaction

    from cc_sync.models import Connection, RateLimitState, Signup, Suppression

    with transaction.atomic():
        Signup.objects.all().delete()
        Connection.objects.all().delete()
        RateLimitState.objects.all().delete()
        Suppression.objects.all().delete()


def status_counts() -> dict[str, int]:
    """How many signups have each status."""
    from django.db.models import Count

    from cc_sync.models import Signup

    return {
        row["status"]: row["n"] for row in Signup.objects.values("status").annotate(n=Count("id")).order_by()
    }
