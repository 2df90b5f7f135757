"""HTTP plumbing: the threaded server and the handler that turns each request into a ``_Request`` for
``Sandbox._dispatch`` and writes its ``_Reply`` back (values in :mod:`cc_sync.sandbox.replies`)."""

from __future__ import annotations

import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .replies import _json, _Reply, _Request

if TYPE_CHECKING:
    from .server import Sandbox


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes bursts of concurrent clients wait for SYN retries.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients giving up (read timeouts, the drop fault) are expected here, not errors.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two send() calls: with Nagle's algorithm on, a client that keeps the
    # connection alive (cc_sync reuses its session) would wait for its delayed ACK, ~40 ms per answer.
    disable_nagle_algorithm = True
    server_version = "cc-sync-sandbox"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        sandbox = self.server.sandbox
        with sandbox._lock:
            sandbox._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        sandbox = self.server.sandbox
        with sandbox._lock:
            sandbox._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        arrived = time.time()
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._write(
                _json(411, {"error": "length_required", "error_description": "Send a Content-Length."})
            )
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(_json(400, {"error": "invalid_request", "error_description": "Bad Content-Length."}))
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        sandbox = self.server.sandbox
        reply = sandbox._dispatch(_Request(self.command, url.path, query, self.headers, body, arrived))
        if reply.wait > 0 and sandbox._stopping.wait(reply.wait):
            reply.drop = True  # the sandbox stopped meanwhile: a stopped server answers nothing
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            # The client is gone (it timed out, or the sandbox is stopping).
            self.close_connection = True
