"""An own ``redis-server`` for one fault scenario or benchmark: stopped, frozen and thawed by process id."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import redis

from rig.processes import free_port
from rig.waiting import wait_until

# The queue Celery's default routing publishes to (a Redis list of that name).
QUEUE = "celery"


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
        wait_until(self._pings, 10, interval=0.05, what=f"redis-server on port {self.port} to start")

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
