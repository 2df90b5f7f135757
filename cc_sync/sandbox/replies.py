"""HTTP request and reply values, and the helpers that build them, shared by the sandbox's modules."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlencode

_THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _with_query(uri: str, params: Mapping[str, str | None]) -> str:
    query = urlencode([(name, value) for name, value in params.items() if value is not None])
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    arrived: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def form(self) -> dict[str, str]:
        pairs = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in pairs.items()}


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    drop: bool = False
    wait: float = 0.0


def _json(status: int, payload: Any, *, error: str | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), error=error)


def _html(status: int, document: str, *, error: str | None = None) -> _Reply:
    return _Reply(status, document.encode(), "text/html; charset=utf-8", error=error)


def _redirect(location: str, *, error: str | None = None) -> _Reply:
    return _Reply(302, b"", None, [("Location", location)], error=error)


def _oauth_error(status: int, error: str, description: str) -> _Reply:
    reply = _json(status, {"error": error, "error_description": description}, error=error)
    if status == 401:
        reply.headers.append(("WWW-Authenticate", 'Basic realm="cc-sync-sandbox"'))
    return reply


def _cc_errors(status: int, error_key: str, *messages: str) -> _Reply:
    # CC's error bodies are a JSON array of {error_key, error_message} (glossary of responses).
    return _json(status, [{"error_key": error_key, "error_message": m} for m in messages], error=error_key)


def _json_body(request: _Request) -> tuple[Any, _Reply | None]:
    media_type = _media_type(request.header("Content-Type"))
    if media_type != "application/json":
        return None, _cc_errors(
            415, "unsupported_media_type", f"Content type '{media_type or 'none'}' is not supported."
        )
    try:
        return json.loads(request.body), None
    except ValueError:
        return None, _cc_errors(400, "malformed_json", "The request body is not valid JSON.")
