"""Fault injection: one seeded draw per request picks at most one fault, and how each fault answers.

``FAULTS`` are the names the ``faults`` and ``token_faults`` settings take. Those in ``PROCESSED_FAULTS``
happen after CC did the work (the contact is stored, a refresh token rotated): only the answer is lost or
garbled. The others stop the request before it is processed. The RNG is the sandbox's, seeded by ``seed``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

from .replies import _THROTTLED, _cc_errors, _html, _json, _oauth_error, _Reply

# Checked in this order against one uniform draw, so probabilities add up.
FAULTS = (
    "error_5xx",
    "timeout",
    "drop",
    "throttle",
    "html_200",
    "empty_200",
    "truncated_json",
    "missing_contact_id",
)
# Faults that happen after CC has done the work: only the answer is lost or garbled.
PROCESSED_FAULTS = frozenset({"timeout", "html_200", "empty_200", "truncated_json", "missing_contact_id"})


def draw_fault(rng: random.Random, faults: Mapping[str, float]) -> str | None:
    """The fault this request gets (one draw of ``rng``), or None."""
    if not faults:
        return None
    draw, total = rng.random(), 0.0
    for name in FAULTS:
        total += faults.get(name, 0.0)
        if draw < total:
            return name
    return None


def fault_reply(rng: random.Random, fault: str, *, oauth: bool) -> _Reply:
    """The answer for a fault that stops the request before it is processed."""
    if fault == "drop":
        return _Reply(0, drop=True)
    if fault == "throttle":
        return _json(429, _THROTTLED, error="throttled")
    status = rng.choice((500, 502, 503))
    if status == 500:
        if oauth:
            return _oauth_error(500, "server_error", "The server encountered an internal error.")
        return _cc_errors(500, "server_error", "An internal server error occurred.")
    title = "502 Bad Gateway" if status == 502 else "503 Service Temporarily Unavailable"
    return _html(status, f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>")


def garble(
    fault: str, reply: _Reply, *, timeout_seconds: float, sign_up: bool = False, oauth: bool = False
) -> _Reply:
    """Apply a fault that happens after processing to the real ``reply``."""
    if fault == "timeout":
        reply.wait += timeout_seconds
        return reply
    if fault == "html_200":
        return _html(200, "<html><body><h1>Constant Contact</h1><p>Please try again later.</p></body></html>")
    if fault == "empty_200":
        return _Reply(200, b"")
    if fault == "truncated_json":
        return _Reply(200, reply.body[: max(1, len(reply.body) // 2)])
    # missing_contact_id: a success answer, well-formed, without the field the client needs.
    if reply.status not in (200, 201):
        return reply
    body = json.loads(reply.body)
    if sign_up:
        return _json(reply.status, {"action": body["action"]})
    if oauth:
        return _json(200, {k: v for k, v in body.items() if k not in ("access_token", "refresh_token")})
    return _json(reply.status, {})
