"""The rig shared by the fault scenarios: an own Redis, the CC sandbox, Celery workers and beat.

Everything listens on 127.0.0.1. The process running a scenario plays the web site: it saves signups
(through :func:`cc_sync.sync.enqueue_signup` or the real signup view), publishes to the rig's Redis with
the example project's broker settings, and hosts the sandbox. Workers and beat are real
``celery -A example_project`` processes using the same database. Every process is started in a session
of its own and is signalled by process id only, never by name.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery import _state as celery_state
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.test.utils import override_settings
from django.utils import timezone

from cc_sync import publisher
from cc_sync.models import Connection, RateLimitState, Signup, Suppression
from cc_sync.sandbox import Sandbox
from example_project.tuning import TUNABLE_SETTINGS
from tests.processes import max_in_any_window, worker_command

__all__ = ["Rig", "max_in_any_window", "percentile", "status_counts", "wait_until"]

ROOT = Path(__file__).resolve().parent.parent

# Production settings with time scaled down. These, the sweeper interval and the visibility timeout are
# the only differences from a production deployment of the example project.
SCALED: dict[str, float] = {
    "CONNECT_TIMEOUT": 2.0,
    "READ_TIMEOUT": 2.0,
    "RETRY_BASE": 2.0,
    "RETRY_MAX": 8.0,
    "LEASE": 10.0,
    "REQUEUE_AFTER": 5.0,
    "MAX_COUNTDOWN": 10.0,
    "PUBLISH_TIMEOUT": 1.0,
}
PRODUCTION: dict[str, float] = {
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 20.0,
    "RETRY_BASE": 2.0,
    "RETRY_MAX": 600.0,
    "LEASE": 120.0,
    "REQUEUE_AFTER": 300.0,
    "MAX_COUNTDOWN": 300.0,
    "PUBLISH_TIMEOUT": 1.0,
}
SWEEP_INTERVAL = 1.0
VISIBILITY_TIMEOUT = 30
# CC_SYNC keys the example project reads from CC_SYNC_<NAME> environment variables, and those only the
# fault suite's settings overlay reads (faults/worker_settings.py; importing it would load the settings).
EXTRA_KEYS = frozenset({"QUOTA_PROBE_INTERVAL"})
ENV_KEYS = frozenset(TUNABLE_SETTINGS) | EXTRA_KEYS
ADMIN_EMAIL = "admin@example.com"
RECONNECT_SUBJECT = "Constant Contact needs to be reconnected"
QUEUE = "celery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; ``None`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of ``values``."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


# -- the process table (by id only) ----------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, pgid)`` of a process, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def _processes() -> Iterator[tuple[int, str, int, int]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                yield int(entry), *stat


def children_of(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``."""
    return sorted(p for p, state, ppid, _pgid in _processes() if ppid == pid and state != "Z")


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (a group the rig created)."""
    return sorted(p for p, state, _ppid, group in _processes() if group == pgid and state != "Z")


def tcp_peer_ports(pid: int) -> set[int]:
    """Remote ports of the established TCP connections a process holds."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


# -- processes --------------------------------------------------------------------------------------


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
        if self.pool == "solo":
            return True
        return bool(wait_until(lambda: len(self.children()) >= self.concurrency, timeout))


class FrozenBroker:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a broker that hangs.

    ``url`` as a Redis broker URL; a client without a socket timeout waits on it for good.
    """

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.received = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                peer, _address = self.server.accept()
            except OSError:  # closed
                return
            self.accepted.append(peer)
            threading.Thread(target=self._swallow, args=(peer,), daemon=True).start()

    def _swallow(self, peer: socket.socket) -> None:
        try:
            while peer.recv(65536):
                self.received.set()
        except OSError:
            pass

    def thaw(self) -> None:
        """Close every connection: the client blocked on its read gets an error at last."""
        # shutdown() first: close() alone does not wake a thread blocked on the socket, nor send the FIN.
        for sock in (self.server, *self.accepted):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected, or already shut
                pass
            sock.close()


class RedisServer:
    """An own ``redis-server`` without persistence: stopping it loses every queued message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.stopped_stats: Counter[str] = Counter()
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if not wait_until(self._pings, 10, interval=0.05):
            raise RuntimeError(f"redis-server on port {self.port} did not start")

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM by process id: Redis exits without saving (no save points, no AOF)."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.stopped_stats.update(self._commandstats())
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=15)

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, but nothing is ever answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def _commandstats(self) -> Counter[str]:
        try:
            stats = self.client().info("commandstats")
        except redis.RedisError:
            return Counter()
        return Counter({name.removeprefix("cmdstat_"): int(v.get("calls", 0)) for name, v in stats.items()})

    def calls(self, command: str) -> int:
        """Calls of ``command`` over every run of this server (LPUSH: messages published or restored)."""
        return self.stopped_stats[command] + self._commandstats()[command]

    def queue_length(self) -> int | None:
        try:
            return int(self.client().llen(QUEUE))
        except redis.RedisError:
            return None

    def blocked_consumers(self) -> int:
        """Clients waiting in BRPOP: idle worker processes ready for a task."""
        try:
            return sum(1 for client in self.client().client_list() if client.get("cmd") == "brpop")
        except redis.RedisError:
            return 0


# -- the rig ----------------------------------------------------------------------------------------


class Rig:
    """One scenario's world: Redis, the sandbox, workers, beat, and the settings they all share."""

    def __init__(self, name: str, seed: int = 0, keep: bool = False) -> None:
        self.name = name
        self.seed = seed
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix=f"cc_sync_faults_{name}_"))
        self.mail_dir = self.workdir / "mail"
        self.mail_dir.mkdir()
        self.redis = RedisServer(self.workdir)
        self.sandbox: Sandbox | None = None
        self.workers: list[Worker] = []
        self.beat: Managed | None = None
        self.cc: dict[str, float] = dict(SCALED)
        self.started = time.time()
        self.events: list[tuple[float, str]] = []
        self.unexpected_exits: list[str] = []
        self._override: Any = None
        self._base_cc_sync = dict(getattr(settings, "CC_SYNC", {}))
        self._previous_apps: tuple[Any, Any] | None = None
        self._previous_outbox: publisher.Outbox | None = None
        self._beat_runs = 0
        self._log_handler: logging.Handler | None = None
        self._broker_env: str | None = None
        self.failed = False

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Rig:
        self.open()
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        self.failed = self.failed or exc_type is not None
        self.close()

    def open(self) -> None:
        reset_tables()
        # Celery lets CELERY_BROKER_URL in the environment override any app's broker: not this one's.
        self._broker_env = os.environ.pop("CELERY_BROKER_URL", None)
        self.redis.start()
        app = Celery(f"cc_sync_faults_{self.name}", broker=self.redis.url, set_as_current=False)
        # The example project's broker settings, as its web processes publish with them.
        app.conf.update(
            broker_connection_timeout=2,
            broker_connection_retry_on_startup=True,
            broker_transport_options={
                "visibility_timeout": VISIBILITY_TIMEOUT,
                "socket_connect_timeout": 2,
                "socket_timeout": 5,
                "max_retries": 0,
            },
            task_ignore_result=True,
            task_acks_late=True,
            task_reject_on_worker_lost=True,
        )
        self._previous_apps = (celery_state.get_current_app(), celery_state.default_app)
        app.set_current()
        app.set_default()
        self.app = app
        # This process plays the web site: it publishes from the site's background thread (the test suite
        # makes its own tests publish inline).
        self._previous_outbox = publisher.outbox
        publisher.outbox = publisher.Outbox()
        self._log_handler = logging.FileHandler(self.workdir / "web.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger("cc_sync").addHandler(self._log_handler)
        self.note(f"rig up in {self.workdir}; redis on port {self.redis.port}")

    def close(self) -> None:
        # Publishes still queued go out (or are unmarked) before the broker and the database go away.
        publisher.outbox.flush(timeout=10)
        if self._previous_outbox is not None:
            publisher.outbox = self._previous_outbox
        for worker in self.workers:
            worker.stop()
        if self.beat is not None:
            self.beat.stop()
        if self.sandbox is not None:
            self.sandbox.stop()
        self.redis.stop()
        if self._override is not None:
            self._override.disable()
            self._override = None
        if self._broker_env is not None:
            os.environ["CELERY_BROKER_URL"] = self._broker_env
        if self._previous_apps is not None:
            current, default = self._previous_apps
            if current is not None:
                current.set_current()
            if default is not None:
                default.set_default()
        if self._log_handler is not None:
            logging.getLogger("cc_sync").removeHandler(self._log_handler)
            self._log_handler.close()
        if self.keep or self.failed:
            print(f"[{self.name}] logs kept in {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def note(self, text: str) -> None:
        moment = time.time()
        self.events.append((moment, text))
        print(f"[{self.name} {moment - self.started:7.1f}s] {text}", flush=True)

    # -- the sandbox and the settings ----------------------------------------------------------

    def start_sandbox(self, **config: Any) -> Sandbox:
        self.sandbox = Sandbox(seed=self.seed, **config).start()
        self.configure()
        return self.sandbox

    def configure(self, **cc: float) -> None:
        """Set CC_SYNC values (on top of :data:`SCALED`) for the web side now and for workers started later."""
        unknown = set(cc) - ENV_KEYS
        if unknown:
            raise ValueError(f"the example project cannot take {sorted(unknown)} from its environment")
        self.cc.update(cc)
        assert self.sandbox is not None
        values = {
            **self._base_cc_sync,
            **self.sandbox.cc_sync_settings(),
            "LIST_IDS": [self.list_id],
            "ENCRYPTION_KEYS": self.encryption_keys,
            **self.cc,
        }
        if self._override is not None:
            self._override.disable()
        self._override = override_settings(CC_SYNC=values)
        self._override.enable()

    @property
    def list_id(self) -> str:
        assert self.sandbox is not None
        return self.sandbox.lists()[0]["list_id"]

    @property
    def encryption_keys(self) -> list[str]:
        keys = self._base_cc_sync.get("ENCRYPTION_KEYS")
        if isinstance(keys, str):
            keys = keys.split(",")
        return [k.decode() if isinstance(k, bytes) else str(k) for k in keys]

    def env(self) -> dict[str, str]:
        """The environment of the example project's worker and beat processes."""
        assert self.sandbox is not None
        db = connection.settings_dict
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        client = self.sandbox.cc_sync_settings()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DEBUG": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
            f"/{db['NAME']}",
            "CELERY_BROKER_URL": self.redis.url,
            "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "CC_CLIENT_ID": client["CLIENT_ID"],
            "CC_CLIENT_SECRET": client["CLIENT_SECRET"],
            "CC_AUTHORIZE_URL": client["AUTHORIZE_URL"],
            "CC_TOKEN_URL": client["TOKEN_URL"],
            "CC_DEVICE_AUTHORIZE_URL": client["DEVICE_AUTHORIZE_URL"],
            "CC_API_URL": client["API_URL"],
            "CC_LIST_IDS": self.list_id,
            "CC_SYNC_ENCRYPTION_KEYS": ",".join(self.encryption_keys),
            "CC_SYNC_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "CC_SYNC_LOG_LEVEL": "INFO",
            "ADMINS": ADMIN_EMAIL,
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(self.mail_dir),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"CC_SYNC_{name}": str(value) for name, value in self.cc.items()})
        if EXTRA_KEYS & set(self.cc):
            env["DJANGO_SETTINGS_MODULE"] = "faults.worker_settings"
        return env

    def settings_record(self) -> dict[str, Any]:
        """What a report shows as the scenario's settings."""
        assert self.sandbox is not None
        config = self.sandbox.config()
        sandbox = {
            name: config[name]
            for name in (
                "api_rate",
                "token_rate",
                "daily_quota",
                "refresh_tokens",
                "token_lifetime",
                "timeout_seconds",
                "seed",
            )
        }
        return {
            "cc_sync": {f"CC_SYNC_{name}": value for name, value in sorted(self.cc.items())},
            "celery": {
                "CC_SYNC_SWEEP_INTERVAL": SWEEP_INTERVAL,
                "CELERY_VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT,
                "acks_late": True,
                "reject_on_worker_lost": True,
                "prefetch_multiplier": 1,
            },
            "sandbox": sandbox,
        }

    # -- workers and beat ----------------------------------------------------------------------

    def start_worker(self, name: str, concurrency: int = 2, pool: str = "prefork") -> Worker:
        worker = Worker(name, self.env(), self.workdir / f"worker-{name}.log", concurrency, pool)
        worker.start()
        self.workers.append(worker)
        return worker

    def restart(self, worker: Worker) -> None:
        worker.env = self.env()
        worker.start()

    def start_beat(self) -> Managed:
        self._beat_runs += 1
        schedule = self.workdir / f"beat-schedule-{self._beat_runs}"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "beat",
            "--loglevel=INFO",
            f"--schedule={schedule}",
            f"--pidfile={self.workdir / 'beat.pid'}",
        ]
        self.beat = Managed("beat", command, self.env(), self.workdir / "beat.log").start()
        return self.beat

    def supervise(self) -> None:
        """Restart a worker or beat that exited on its own (as systemd would), and record it."""
        for process in [*self.workers, *([self.beat] if self.beat else [])]:
            if process.process is not None and process.process.poll() is not None:
                code = process.process.returncode
                self.unexpected_exits.append(f"{process.name} exited with {code}")
                self.note(f"{process.name} exited on its own ({code}); restarting it")
                process._close_log()
                process.env = self.env()
                process.start()

    def wait_consumers(self, count: int, timeout: float = 90.0) -> bool:
        return bool(wait_until(lambda: self.redis.blocked_consumers() >= count, timeout, interval=0.2))

    # -- CC connection -------------------------------------------------------------------------

    def connect(self, scope: str | None = None) -> dict[str, Any]:
        """What the admin's Connect ends with: a fresh grant stored through cc_sync."""
        from cc_sync.oauth import store_grant

        assert self.sandbox is not None
        tokens = self.sandbox.issue_tokens(scope=scope) if scope else self.sandbox.issue_tokens()
        store_grant(tokens)
        return tokens

    @staticmethod
    def expire_stored_token(seconds_ago: float = 60.0) -> None:
        Connection.objects.filter(pk=Connection.SINGLETON_PK).update(
            expires_at=timezone.now() - timedelta(seconds=seconds_ago)
        )

    # -- reading the outcome -------------------------------------------------------------------

    def web_publish_failures(self) -> int:
        """Publishes from the web side that the broker did not take (cc_sync logs each)."""
        path = self.workdir / "web.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text.count("Could not queue signup") + text.count("The broker did not take")

    def exit_reasons(self) -> Counter[str]:
        """The fatal errors worker and beat processes logged before exiting on their own."""
        reasons: Counter[str] = Counter()
        for path in self.workdir.glob("*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if "Unrecoverable error:" in line:
                    reasons[line.split("Unrecoverable error:", 1)[1].strip()[:160]] += 1
        return reasons

    def mails(self) -> list[str]:
        return [path.read_text(errors="replace") for path in sorted(self.mail_dir.glob("*"))]

    def reconnect_mails(self) -> int:
        return sum(text.count(f"Subject: [Django] {RECONNECT_SUBJECT}") for text in self.mails())

    def leaked(self, secrets: list[str]) -> list[str]:
        """Files of this run (logs, mails) that contain any of ``secrets``."""
        secrets = [s for s in secrets if s]
        hits = []
        for path in sorted(self.workdir.rglob("*")):
            if path.is_file() and path.suffix != ".db" and "beat-schedule" not in path.name:
                text = path.read_text(errors="replace")
                if any(secret in text for secret in secrets):
                    hits.append(path.name)
        return hits


def reset_tables() -> None:
    with transaction.atomic():
        Signup.objects.all().delete()
        Connection.objects.all().delete()
        RateLimitState.objects.all().delete()
        Suppression.objects.all().delete()


def status_counts() -> dict[str, int]:
    return {
        row["status"]: row["n"] for row in Signup.objects.values("status").annotate(n=Count("id")).order_by()
    }


@contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - started)
