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
        "add_account",
        "add_app",
        "sign_in",
        "revoke_grant",
        "spend_quota",
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
        return {"expired": sandbox.expire_access_tokens(**_optional(data, "account", "client_id"))}
    if name == "reset":
        sandbox.reset()
    elif name == "reset_quota":
        sandbox.reset_quota(**_optional(data, "client_id"))
    elif name == "approve_device":
        sandbox.approve_device(str(data.get("user_code", "")), **_optional(data, "account"))
    elif name == "deny_device":
        sandbox.deny_device(str(data.get("user_code", "")))
    elif name == "issue_tokens":
        scope = str(data.get("scope", DEFAULT_SCOPE))
        return sandbox.issue_tokens(data.get("client_id"), scope, **_optional(data, "account"))
    elif name == "add_contact":
        fields = dict(data)
        email = fields.pop("email", None)
        if not isinstance(email, str):
            raise ValueError("add_contact needs an 'email'")
        return sandbox.add_contact(email, **fields)
    elif name == "delete_list":
        return sandbox.delete_list(str(data.get("list_id", "")), **_optional(data, "account"))
    elif name == "add_account":
        return sandbox.add_account(**data)
    elif name == "add_app":
        return _without_secret(sandbox.add_app(**data))
    elif name == "sign_in":
        return sandbox.sign_in(**_optional(data, "account"))
    elif name == "revoke_grant":
        return {"revoked": sandbox.revoke_grant(**_optional(data, "account", "client_id"))}
    elif name == "spend_quota":
        return {"quota": sandbox.spend_quota(**_optional(data, "client_id"))}
    return {"ok": True}


def _optional(data: dict[str, Any], *names: str) -> dict[str, str]:
    """The named string fields of a control body that are present; TypeError for a non-string one."""
    fields = {name: data[name] for name in names if data.get(name) is not None}
    wrong = [name for name, value in fields.items() if not isinstance(value, str)]
    if wrong:
        raise TypeError(f"{', '.join(wrong)} must be a string")
    return fields


def _without_secret(app: dict[str, Any]) -> dict[str, Any]:
    # As in GET /_sandbox/state: the control endpoints never echo a client secret.
    shown = {name: value for name, value in app.items() if name != "client_secret"}
    return {**shown, "confidential": app["client_secret"] is not None}
