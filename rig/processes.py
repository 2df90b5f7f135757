"""Real processes of the example project: Celery workers and beat, started and stopped by process id.

The service tests use :func:`celery_worker`; the fault suite and the benchmarks use :class:`Managed` and
:class:`Worker` (through :class:`rig.deployment.Rig`). Every process is started in a session of its own, so
its process group id is its pid, and is signalled by id only, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from rig import ROOT
from rig.proctable import children_of, group_members, tcp_peer_ports
from rig.services import REDIS_TEST_URL
from rig.waiting import TimedOut, wait_until


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


def refresh_probe(sandbox: Any, start_at: float, slugs: str = "") -> subprocess.Popen:
    """A separate process (``tests/refresh_probe.py``) on this test's database asking, at ``start_at``, for the
    default connection's access token, or for those of the connections ``slugs`` (comma-separated, in order).

    Its standard output is the tokens it got; the single-refresh tests start several at once.
    """
    client = sandbox.cc_sync_settings()
    arguments = [connection.settings_dict["NAME"], sandbox.token_url, str(start_at)]
    arguments += [client["CLIENT_ID"], client["CLIENT_SECRET"], *([slugs] if slugs else [])]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.refresh_probe", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
    """SIGTERM the process group of a process :func:`celery_worker` started, SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Managed:
    """A process the rig started (in its own session, so its process group id is its pid)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.starts = 0
        self._log: Any = None

    def start(self) -> Managed:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.process.pid
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL the main process by id; its group's leftovers are killed by id after a grace period."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)
        self._reap_group(grace=5.0)
        self._close_log()
        return pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a warm shutdown for Celery), then SIGKILL by id if it does not end in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._reap_group(grace=2.0)
        self._close_log()

    def _reap_group(self, grace: float) -> None:
        if self.pgid is None:
            return
        deadline = time.monotonic() + grace
        while group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in group_members(self.pgid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Worker(Managed):
    """``celery -A example_project worker`` (prefork or solo)."""

    def __init__(
        self, name: str, env: dict[str, str], log_path: Path, concurrency: int = 2, pool: str = "prefork"
    ) -> None:
        command = worker_command(name, concurrency, pool)
        super().__init__(name, command, env, log_path)
        self.concurrency = concurrency
        self.pool = pool

    def children(self) -> list[int]:
        return children_of(self.pid) if self.running else []

    def child_connected_to(self, port: int) -> int | None:
        """The pool process holding a connection to ``port`` (e.g. waiting for the sandbox's answer)."""
        return next((pid for pid in self.children() if port in tcp_peer_ports(pid)), None)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the pool's processes are up; False if they are not after ``timeout`` seconds."""
        if self.pool == "solo":
            return True
        try:
            return bool(
                wait_until(
                    lambda: len(self.children()) >= self.concurrency,
                    timeout,
                    what=f"{self.concurrency} pool processes of {self.name}",
                )
            )
        except TimedOut:
            return False
