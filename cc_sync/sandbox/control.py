"""The control endpoints, ``/_sandbox/...``: Sandbox's public calls as JSON over HTTP, for a sandbox that
runs in another process (``GET /_sandbox/state``, ``POST /_sandbox/configure``, ``/reset``, seeding...).

They use only Sandbox's public API, so each takes the sandbox rather than being mixed into it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_SCOPE
from .replies import _json, _Reply, _Request

if TYPE_CHECKING:
    from .server import Sandbox

CONTROL_PREFIX = "/_sandbox/"
_CONTROL_ACTIONS = frozenset(
    {
        "configure",
        "expire_tokens",
        "reset",
        "reset_quota",
        "approve_device",
        "deny_device",
        "issue_tokens",
        "add_contact",
        "delete_list",
    }
)


def control_reply(sandbox: Sandbox, request: _Request) -> _Reply:
    """Answer a request to ``/_sandbox/...``."""
    name = request.path[len(CONTROL_PREFIX) :]
    if name == "state":
        if request.method != "GET":
            return _json(405, {"error": "use GET"})
        return _json(200, sandbox.state())
    if name not in _CONTROL_ACTIONS:
        return _json(404, {"error": f"unknown control endpoint {request.path}"})
    if request.method != "POST":
        return _json(405, {"error": "use POST"})
    try:
        data = json.loads(request.body) if request.body.strip() else {}
    except ValueError:
        return _json(400, {"error": "the body must be JSON"})
    if not isinstance(data, dict):
        return _json(400, {"error": "the body must be a JSON object"})
    try:
        return _json(200, _control_action(sandbox, name, data))
    except LookupError as exc:
        return _json(404, {"error": str(exc.args[0] if exc.args else exc)})
    except (TypeError, ValueError) as exc:
        return _json(400, {"error": str(exc)})


def _control_action(sandbox: Sandbox, name: str, data: dict[str, Any]) -> dict[str, Any]:
    if name == "configure":
        sandbox.configure(**data)
        return {"config": sandbox.state()["config"]}
    if name == "expire_tokens":
        return {"expired": sandbox.expire_access_tokens()}
    if name == "reset":
        sandbox.reset()
    elif name == "reset_quota":
        sandbox.reset_quota()
    elif name == "approve_device":
        sandbox.approve_device(str(data.get("user_code", "")))
    elif name == "deny_device":
        sandbox.deny_device(str(data.get("user_code", "")))
    elif name == "issue_tokens":
        return sandbox.issue_tokens(data.get("client_id"), str(data.get("scope", DEFAULT_SCOPE)))
    elif name == "add_contact":
        fields = dict(data)
        email = fields.pop("email", None)
        if not isinstance(email, str):
            raise ValueError("add_contact needs an 'email'")
        return sandbox.add_contact(email, **fields)
    elif name == "delete_list":
        return sandbox.delete_list(str(data.get("list_id", "")))
    return {"ok": True}
