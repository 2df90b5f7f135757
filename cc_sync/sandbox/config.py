"""The sandbox's settings: CC's defaults, and the validation that ``Sandbox(**settings)`` and ``configure()`` run.

Each setting is described on :class:`~cc_sync.sandbox.Sandbox`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

from .faults import FAULTS

FLOWS = ("authorization_code", "pkce", "device")
REFRESH_TOKEN_TYPES = ("rotating", "long_lived")
DEFAULT_SCOPE = "contact_data offline_access account_read"

DEFAULT_APP: dict[str, Any] = {
    "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret",
    "redirect_uris": [
        "http://127.0.0.1:8000/admin/cc_sync/connection/callback/",
        "http://localhost:8000/admin/cc_sync/connection/callback/",
    ],
    "flow": "authorization_code",
    "name": "cc_sync sandbox app",
}
_LIST_TIMESTAMP = "2024-01-15T10:00:00.000Z"
DEFAULT_LISTS: list[dict[str, Any]] = [
    {"list_id": "07936f78-662a-11eb-af0a-fa163e56c9b0", "name": "General Interest"},
    {"list_id": "06526938-56dd-11e9-932a-fa163ea075fa", "name": "Newsletter"},
    {"list_id": "1fb28c36-56dd-11e9-932a-fa163ea075fa", "name": "Events"},
]
DEFAULT_ACCOUNT: dict[str, Any] = {
    "organization_name": "Sandbox Organization",
    "encoded_account_id": "sandbox-account",
}
_DEFAULT_SECRET = DEFAULT_APP["client_secret"]

_DEFAULT_CONFIG: dict[str, Any] = {
    "apps": [DEFAULT_APP],
    "refresh_tokens": "rotating",
    "token_lifetime": 86400,
    "code_lifetime": 300,
    "device_lifetime": 600,
    "device_interval": 5,
    "refresh_token_idle_lifetime": 180 * 86400,
    "token_rate": 1.0,
    "api_rate": 4,
    "daily_quota": 10000,
    "lists": DEFAULT_LISTS,
    "account": DEFAULT_ACCOUNT,
    "faults": {},
    "token_faults": {},
    "seed": 0,
    "timeout_seconds": 30.0,
    "delay": 0.0,
    "import_polls": 2,
    "list_activity_seconds": 1.0,
    "confirmed_opt_in": False,
    "activity_queue_limit": 1000,
    "quota_error_key": "quota_exceeded",
    "quota_reset_hour_utc": 0,
}
_APP_SHORTCUTS = ("client_id", "client_secret", "redirect_uris", "flow")
_APP_KEYS = frozenset({"client_id", "client_secret", "redirect_uris", "flow", "name"})
_LIST_KEYS = frozenset(
    {"list_id", "name", "description", "favorite", "created_at", "updated_at", "deleted_at"}
)


def _fail(message: str) -> NoReturn:
    raise ValueError(message)


def _number(config: dict[str, Any], name: str, *, minimum: float = 0.0, optional: bool = False) -> None:
    value = config[name]
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        _fail(f"{name} must be a number >= {minimum}" + (" or None" if optional else "") + f", not {value!r}")


def _rate(config: dict[str, Any], name: str) -> None:
    # 0 and None both switch a limit off.
    if config[name] == 0:
        config[name] = None
    _number(config, name, minimum=0.0, optional=True)


def _normalize_app(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        _fail(f"each app must be a dict, not {raw!r}")
    unknown = set(raw) - _APP_KEYS
    if unknown:
        _fail(f"unknown app key(s): {', '.join(sorted(unknown))}")
    app = {
        "client_id": raw.get("client_id"),
        "client_secret": raw.get("client_secret"),
        "redirect_uris": list(raw.get("redirect_uris") or []),
        "flow": raw.get("flow", "authorization_code"),
        "name": raw.get("name") or f"Sandbox app {raw.get('client_id')}",
    }
    if not isinstance(app["client_id"], str) or not app["client_id"]:
        _fail("each app needs a non-empty client_id")
    if app["flow"] not in FLOWS:
        _fail(f"flow must be one of {', '.join(FLOWS)}, not {app['flow']!r}")
    if not all(isinstance(uri, str) and uri for uri in app["redirect_uris"]):
        _fail("redirect_uris must be a list of URLs")
    if app["flow"] == "authorization_code" and not isinstance(app["client_secret"], str):
        _fail(f"app {app['client_id']!r} uses the authorization_code flow and needs a client_secret")
    if app["flow"] != "authorization_code" and app["client_secret"] is not None:
        _fail(f"app {app['client_id']!r} is a public ({app['flow']}) app: its client_secret must be None")
    return app


def _normalize_list(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        _fail(f"each list must be a dict with list_id and name, not {raw!r}")
    unknown = set(raw) - _LIST_KEYS
    if unknown:
        _fail(f"unknown list key(s): {', '.join(sorted(unknown))}")
    try:
        list_id = str(uuid.UUID(str(raw.get("list_id"))))
    except ValueError:
        _fail(f"list_id must be a UUID (CC's list ids are), not {raw.get('list_id')!r}")
    return {
        "list_id": list_id,
        "name": raw["name"],
        "description": raw.get("description", ""),
        "favorite": bool(raw.get("favorite", False)),
        "created_at": raw.get("created_at", _LIST_TIMESTAMP),
        "updated_at": raw.get("updated_at", raw.get("created_at", _LIST_TIMESTAMP)),
        # A list deleted at CC (Sandbox.delete_list): writes naming it answer 404.
        "deleted_at": raw.get("deleted_at"),
    }


def _normalize_faults(name: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        _fail(f"{name} must be a dict of fault name to probability")
    unknown = set(raw) - set(FAULTS)
    if unknown:
        _fail(f"unknown fault(s) in {name}: {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    faults = {}
    for fault, probability in raw.items():
        if (
            isinstance(probability, bool)
            or not isinstance(probability, (int, float))
            or not 0 <= probability <= 1
        ):
            _fail(f"{name}[{fault!r}] must be a probability from 0 to 1, not {probability!r}")
        if probability:
            faults[fault] = float(probability)
    return faults


def _build_config(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` to ``base`` and return the validated result; raise ValueError if invalid."""
    unknown = set(changes) - set(_DEFAULT_CONFIG) - set(_APP_SHORTCUTS)
    if unknown:
        _fail(
            f"unknown sandbox setting(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join([*_DEFAULT_CONFIG, *_APP_SHORTCUTS])}"
        )
    config = copy.deepcopy(dict(base))
    for name in _DEFAULT_CONFIG:
        if name in changes:
            config[name] = copy.deepcopy(changes[name])

    if not isinstance(config["apps"], list) or not config["apps"]:
        _fail("apps must be a non-empty list")
    apps = [dict(app) if isinstance(app, Mapping) else app for app in config["apps"]]
    shortcuts = {name: changes[name] for name in _APP_SHORTCUTS if name in changes}
    if shortcuts and isinstance(apps[0], dict):
        first = apps[0]
        if "flow" in shortcuts:
            first["flow"] = shortcuts["flow"]
            if "client_secret" not in shortcuts:
                confidential = shortcuts["flow"] == "authorization_code"
                first["client_secret"] = (
                    (first.get("client_secret") or _DEFAULT_SECRET) if confidential else None
                )
        for name in ("client_id", "client_secret", "redirect_uris"):
            if name in shortcuts:
                first[name] = shortcuts[name]
    config["apps"] = [_normalize_app(app) for app in apps]
    client_ids = [app["client_id"] for app in config["apps"]]
    if len(set(client_ids)) != len(client_ids):
        _fail("client_ids must be unique")

    if config["refresh_tokens"] not in REFRESH_TOKEN_TYPES:
        _fail(
            f"refresh_tokens must be one of {', '.join(REFRESH_TOKEN_TYPES)}, "
            f"not {config['refresh_tokens']!r}"
        )
    for name in ("token_lifetime", "code_lifetime", "device_lifetime"):
        _number(config, name, minimum=0.001)
    _number(config, "refresh_token_idle_lifetime", minimum=0.001, optional=True)
    for name in ("device_interval", "timeout_seconds", "delay"):
        _number(config, name)
    _number(config, "list_activity_seconds", optional=True)
    polls = config["import_polls"]
    if isinstance(polls, bool) or not isinstance(polls, int) or polls < 1:
        _fail(f"import_polls must be an integer >= 1, not {polls!r}")
    _rate(config, "token_rate")
    _rate(config, "api_rate")
    limit = config["activity_queue_limit"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        _fail(f"activity_queue_limit must be an integer >= 0 or None, not {limit!r}")
    hour = config["quota_reset_hour_utc"]
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        _fail(f"quota_reset_hour_utc must be an integer from 0 to 23, not {hour!r}")
    key = config["quota_error_key"]
    if key is not None and (not isinstance(key, str) or not key):
        _fail(f"quota_error_key must be a non-empty string or None, not {key!r}")
    if not isinstance(config["confirmed_opt_in"], bool):
        _fail(f"confirmed_opt_in must be True or False, not {config['confirmed_opt_in']!r}")
    quota = config["daily_quota"]
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
        _fail(f"daily_quota must be an integer >= 0 or None, not {quota!r}")

    if not isinstance(config["lists"], list):
        _fail("lists must be a list of {'list_id', 'name'} dicts")
    config["lists"] = [_normalize_list(item) for item in config["lists"]]
    list_ids = [item["list_id"] for item in config["lists"]]
    if len(set(list_ids)) != len(list_ids):
        _fail("list_ids must be unique")
    if not isinstance(config["account"], Mapping):
        _fail("account must be a dict")
    config["account"] = {**DEFAULT_ACCOUNT, **config["account"]}
    config["faults"] = _normalize_faults("faults", config["faults"])
    config["token_faults"] = _normalize_faults("token_faults", config["token_faults"])
    if not isinstance(config["seed"], (int, str, type(None))) or isinstance(config["seed"], bool):
        _fail("seed must be an int, a str or None")
    return config
