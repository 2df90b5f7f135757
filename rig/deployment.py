"""A whole deployment for one fault scenario or benchmark: an own Redis, the CC sandbox, workers and beat.

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
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from celery import _state as celery_state
from django.conf import settings
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone

from cc_sync import publisher
from cc_sync.models import Connection
from cc_sync.sandbox import Sandbox
from rig import ROOT
from rig.database import reset_tables
from rig.processes import Managed, Worker
from rig.redis_server import RedisServer
from rig.timing import ENV_KEYS, EXTRA_KEYS, SCALED, SWEEP_INTERVAL, VISIBILITY_TIMEOUT
from rig.waiting import TimedOut, wait_until

ADMIN_EMAIL = "admin@example.com"
RECONNECT_SUBJECT = "Constant Contact needs to be reconnected"


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
            env["DJANGO_SETTINGS_MODULE"] = "rig.worker_settings"
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
        """Wait until ``count`` worker processes wait for tasks; False if they do not within ``timeout``."""
        try:
            return bool(
                wait_until(
                    lambda: self.redis.blocked_consumers() >= count,
                    timeout,
                    interval=0.2,
                    what=f"{count} worker processes waiting for tasks",
                )
            )
        except TimedOut:
            return False

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
        Connection.objects.filter(slug=Connection.DEFAULT_SLUG).update(
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
