"""The Celery brokers of the tests: an in-memory one for unit tests; Redis and RabbitMQ for real workers.

Unit tests publish to :data:`test_celery_app` (``memory://``), so nothing in them reaches a real broker.
Real-worker tests get an emptied broker (a Redis database, or the ``celery`` queue of a RabbitMQ virtual host)
and may put a :class:`BrokerProxy` in front of it: cutting the proxy is an outage of the broker for every
process that connects through it, without touching the broker itself, which other runs on the machine share.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
from celery import Celery
from kombu import Connection as KombuConnection
from kombu import Exchange, Queue

from rig.processes import example_env, free_port
from rig.services import REDIS_TEST_URL

test_celery_app = Celery("cc_sync_tests", broker="memory://")
test_celery_app.conf.task_ignore_result = True

# Service tests empty the `celery` queue of this virtual host; CC_SYNC_TEST_RABBITMQ_VHOST picks another
# (made with `rabbitmqctl add_vhost NAME` and `set_permissions -p NAME guest ".*" ".*" ".*"`).
RABBITMQ_VHOST = os.environ.get("CC_SYNC_TEST_RABBITMQ_VHOST", "/")
RABBITMQ_PORT = 5672
REDIS_PORT = 6379
BROKERS = ("redis", "rabbitmq")
# Celery's default queue: the example project's workers consume it, cc_sync publishes to it (QUEUE unset).
QUEUE = "celery"


@dataclass
class TestBroker:
    """One broker of the tests: its URL (through ``proxy``, if it has one) and its queue."""

    name: str
    proxy: BrokerProxy | None = None
    port: int | None = None

    __test__ = False  # not a test class, whatever its name

    @property
    def title(self) -> str:
        return {"redis": "Redis", "rabbitmq": "RabbitMQ"}[self.name]

    @property
    def own_port(self) -> int:
        return {"redis": REDIS_PORT, "rabbitmq": RABBITMQ_PORT}[self.name]

    @property
    def url(self) -> str:
        port = self.port or (self.proxy.port if self.proxy else self.own_port)
        if self.name == "redis":
            return REDIS_TEST_URL.replace(f":{REDIS_PORT}/", f":{port}/")
        return f"amqp://guest:guest@127.0.0.1:{port}/{quote(RABBITMQ_VHOST, safe='')}"

    @property
    def dead_url(self) -> str:
        """The same broker on a port where nothing listens."""
        return TestBroker(self.name, port=1).url

    def direct(self) -> TestBroker:
        """This broker without the proxy, for looking into it while the proxy is cut."""
        return TestBroker(self.name)

    def worker_env(self, sandbox: Any, **overrides: Any) -> dict[str, str]:
        """:func:`rig.processes.example_env` with this broker as the workers' and beat's."""
        return example_env(sandbox, **{"CELERY_BROKER_URL": self.url, **overrides})

    def empty(self) -> None:
        """Drop every message: the test's own Redis database, or the queue in the test's virtual host."""
        if self.name == "redis":
            redis.Redis.from_url(self.direct().url).flushdb()
            return
        with KombuConnection(self.direct().url, connect_timeout=2) as conn:
            # Purged, not deleted: a producer this process keeps in kombu's pool (keyed by URL) remembers the
            # queue as declared, and RabbitMQ drops a message published to a queue that no longer exists.
            queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE, durable=True)
            queue(conn.default_channel).declare()
            queue(conn.default_channel).purge()

    def ready(self) -> int:
        """Messages waiting in the queue for a worker to take them."""
        if self.name == "redis":
            return int(redis.Redis.from_url(self.direct().url).llen(QUEUE))
        with KombuConnection(self.direct().url, connect_timeout=2) as conn:
            # Passive: only asks (the workers declared the queue); a missing queue is an error.
            _name, messages, _consumers = conn.default_channel.queue_declare(QUEUE, passive=True)
            return int(messages)

    def unacked(self) -> int:
        """Redis: messages delivered to a worker and not yet acknowledged (kombu's ``unacked`` hash).

        They go back to the queue once older than the visibility timeout. RabbitMQ tells this only over its
        management API; there the broker itself puts them back in the queue when the worker's channel closes.
        """
        assert self.name == "redis", "RabbitMQ holds unacknowledged messages on the worker's channel"
        return int(redis.Redis.from_url(self.direct().url).hlen("unacked"))


class BrokerProxy:
    """A TCP forwarder on 127.0.0.1 to a broker, which a test can :meth:`cut` and :meth:`restore`.

    While cut, connections to it are refused and every open one is closed, as when the broker's host goes
    away; the broker itself (shared by other runs on the machine) keeps running.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    def __enter__(self) -> BrokerProxy:
        self.restore()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()

    def restore(self) -> None:
        """Listen again, on the same port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="broker-proxy", daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and close the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # shutdown() wakes the thread blocked in accept()
        with self._lock:
            open_sockets, self._open = self._open, set()
        for sock in open_sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            _close(sock)
        with self._lock:
            self._open -= {source, sink}


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def publishing_to(broker_url: str) -> Iterator[Celery]:
    """Publish from this process to ``broker_url`` with the example project's broker timeouts."""
    app = Celery("cc_sync_service_tests", broker=broker_url)
    app.conf.update(
        broker_connection_timeout=2, broker_transport_options={"socket_connect_timeout": 2, "max_retries": 0}
    )
    app.set_current()
    app.set_default()
    try:
        yield app
    finally:
        test_celery_app.set_current()
        test_celery_app.set_default()


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
