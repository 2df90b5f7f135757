"""Real processes for the service tests: Celery workers of the example project, and token probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# Service tests empty this Redis database; CC_SYNC_TEST_REDIS_DB picks another to run suites side by side.
REDIS_TEST_URL = f"redis://127.0.0.1:6379/{os.environ.get('CC_SYNC_TEST_REDIS_DB', '15')}"


def example_env(sandbox: Any, **overrides: Any) -> dict[str, str]:
    """Environment for example-project processes sharing this test's database and the sandbox."""
    db = connection.settings_dict
    cc = settings.CC_SYNC
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DEBUG": "true",
        "SECRET_KEY": "service-tests",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": REDIS_TEST_URL,
        "CC_CLIENT_ID": sandbox.cc_sync_settings()["CLIENT_ID"],
        "CC_CLIENT_SECRET": sandbox.cc_sync_settings()["CLIENT_SECRET"],
        "CC_AUTHORIZE_URL": sandbox.authorize_url,
        "CC_TOKEN_URL": sandbox.token_url,
        "CC_DEVICE_AUTHORIZE_URL": sandbox.device_authorize_url,
        "CC_API_URL": sandbox.api_url,
        "CC_LIST_IDS": ",".join(cc.get("LIST_IDS", [])),
        "CC_SYNC_ENCRYPTION_KEYS": ",".join(cc["ENCRYPTION_KEYS"]),
        "CC_SYNC_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def worker_command(name: str, concurrency: int, pool: str = "prefork") -> list[str]:
    """The command line of a quiet ``celery -A example_project worker`` named ``name``."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "example_project",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--loglevel=WARNING",
        f"--hostname={name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


@contextmanager
def celery_worker(
    env: dict[str, str], concurrency: int = 2, beat: bool = False, name: str = "w1"
) -> Iterator[subprocess.Popen]:
    """A real ``celery -A example_project worker`` process (prefork), stopped at the end."""
    command = worker_command(name, concurrency)
    with tempfile.TemporaryDirectory(prefix="cc-sync-beat-") as schedule_dir:
        if beat:
            # A clean checkout has no cache folder; beat's shelve file needs one that exists.
            command += ["--beat", f"--schedule={Path(schedule_dir) / f'beat-{name}'}"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def wait_until(
    condition: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of events inside any half-open window of ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
