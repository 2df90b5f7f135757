"""Command-line front end shared by ``python -m cc_sync.sandbox`` and ``manage.py cc_sync_sandbox``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .config import FLOWS, REFRESH_TOKEN_TYPES
from .faults import FAULTS
from .server import Sandbox

DEFAULT_PORT = 8765
# Options whose value goes straight to the Sandbox setting of the same name.
_SETTINGS = (
    "client_id",
    "client_secret",
    "redirect_uris",
    "flow",
    "refresh_tokens",
    "token_lifetime",
    "api_rate",
    "token_rate",
    "daily_quota",
    "delay",
    "seed",
    "activity_queue_limit",
    "quota_reset_hour_utc",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to an argparse (or Django ``CommandParser``) parser."""
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"Port (default {DEFAULT_PORT}; 0 = any free)."
    )
    parser.add_argument("--client-id", help="Client id (API key) of the sandbox's CC application.")
    parser.add_argument("--client-secret", help="Client secret of a confidential (authorization_code) app.")
    parser.add_argument(
        "--redirect-uri",
        dest="redirect_uris",
        action="append",
        metavar="URL",
        help="A registered redirect URI (repeatable; replaces the defaults on 127.0.0.1:8000 and "
        "localhost:8000).",
    )
    parser.add_argument("--flow", choices=FLOWS, help="OAuth2 flow the application is registered for.")
    parser.add_argument(
        "--refresh-tokens", choices=REFRESH_TOKEN_TYPES, help="Refresh token type (default rotating)."
    )
    parser.add_argument(
        "--token-lifetime", type=float, metavar="SECONDS", help="Access token lifetime (default 86400)."
    )
    parser.add_argument(
        "--api-rate", type=float, metavar="N", help="/v3 requests per second (default 4; 0 = no limit)."
    )
    parser.add_argument(
        "--token-rate", type=float, metavar="N", help="Token calls per second (default 1; 0 = no limit)."
    )
    parser.add_argument(
        "--daily-quota", type=int, metavar="N", help="/v3 requests per UTC day (default 10000)."
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        metavar="NAME=PROBABILITY",
        help=f"Inject a fault into /v3 calls (repeatable). Names: {', '.join(FAULTS)}.",
    )
    parser.add_argument("--delay", type=float, metavar="SECONDS", help="Extra latency on every /v3 answer.")
    parser.add_argument("--seed", type=int, help="Seed of the fault RNG (default 0).")
    parser.add_argument(
        "--confirmed-opt-in",
        action="store_true",
        help="The account has Confirmed Opt-In on: sign_up_form makes new contacts pending_confirmation.",
    )
    parser.add_argument(
        "--activity-queue-limit",
        type=int,
        metavar="N",
        help="Queued bulk activities before POST /v3/activities/... answers 429 (default 1000).",
    )
    parser.add_argument(
        "--quota-reset-hour",
        dest="quota_reset_hour_utc",
        type=int,
        metavar="HOUR",
        help="UTC hour at which the daily quota resets (default 0).",
    )
    parser.add_argument(
        "--account",
        dest="accounts",
        action="append",
        metavar="ACCOUNT_ID",
        help="Add a CC account with its own lists and contacts (repeatable); the consent page then offers "
        "a choice of account.",
    )
    parser.add_argument(
        "--app",
        dest="apps",
        action="append",
        metavar="CLIENT_ID:SECRET",
        help="Add a confidential CC application with its own rate and quota (repeatable).",
    )
    parser.add_argument("--quiet", action="store_true", help="Do not print a log line per request.")


def _faults(values: Sequence[str]) -> dict[str, float]:
    faults = {}
    for value in values:
        name, sep, probability = value.partition("=")
        try:
            faults[name.strip()] = float(probability) if sep else 1.0
        except ValueError:
            raise ValueError(f"--fault {value!r}: expected NAME=PROBABILITY") from None
    return faults


def sandbox_from_options(options: Mapping[str, Any]) -> Sandbox:
    """Build an unstarted :class:`Sandbox` from parsed options; raises ValueError for bad values."""
    config: dict[str, Any] = {name: options[name] for name in _SETTINGS if options.get(name) is not None}
    if options.get("faults"):
        config["faults"] = _faults(options["faults"])
    if options.get("confirmed_opt_in"):
        config["confirmed_opt_in"] = True
    sandbox = Sandbox(
        host=options.get("host") or "127.0.0.1",
        port=DEFAULT_PORT if options.get("port") is None else int(options["port"]),
        verbose=not options.get("quiet"),
        **config,
    )
    for account_id in options.get("accounts") or ():
        sandbox.add_account(account_id)
    for value in options.get("apps") or ():
        client_id, sep, secret = value.partition(":")
        if not sep or not secret:
            raise ValueError(f"--app {value!r}: expected CLIENT_ID:SECRET")
        sandbox.add_app(client_id, secret)
    return sandbox


def describe(sandbox: Sandbox) -> str:
    """The banner printed at start: URLs, the registered app and the ``CC_SYNC`` settings to use."""
    config = sandbox.config()
    app = config["apps"][0]
    settings = sandbox.cc_sync_settings()
    if app["flow"] in ("pkce", "device"):
        settings["OAUTH_FLOW"] = app["flow"]
    lines = [
        f"Constant Contact sandbox running at {sandbox.base_url}",
        "",
        f"  Watch contacts land:  {sandbox.base_url}/",
        f"  Authorize URL:        {sandbox.authorize_url}",
        f"  Token URL:            {sandbox.token_url}",
        f"  Device authorize URL: {sandbox.device_authorize_url}",
        f"  API URL:              {sandbox.api_url}",
        f"  State (JSON):         {sandbox.base_url}/_sandbox/state",
        "",
        f"Application {app['name']!r}: flow {app['flow']}, refresh tokens {config['refresh_tokens']}.",
    ]
    if app["flow"] != "device":
        lines.append("Registered redirect URIs (the callback must match one exactly):")
        lines.extend(f"  {uri}" for uri in app["redirect_uris"])
    lines.append("Lists:")
    lines.extend(f"  {item['list_id']}  {item['name']}" for item in config["lists"])
    for account in sandbox.accounts()[1:]:
        lines.append(f"Account {account['encoded_account_id']!r}, lists:")
        lines.extend(
            f"  {item['list_id']}  {item['name']}"
            for item in sandbox.lists(account=account["encoded_account_id"])
        )
    lines.extend(f"Application {app['client_id']!r}: flow {app['flow']}." for app in config["apps"][1:])
    lines += ["", "Django settings:", "CC_SYNC = {"]
    lines.extend(f"    {json.dumps(name)}: {json.dumps(value)}," for name, value in settings.items())
    lines += ["}", "", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def wait_until_interrupted(sandbox: Sandbox, poll: float = 0.5) -> None:
    """Block until Ctrl-C (or until the sandbox is stopped elsewhere), then stop it."""
    try:
        while sandbox.running:
            time.sleep(poll)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m cc_sync.sandbox``."""
    parser = argparse.ArgumentParser(
        prog="python -m cc_sync.sandbox",
        description="Run a local Constant Contact emulator (OAuth2 + the V3 calls cc_sync makes).",
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        sandbox = sandbox_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    sandbox.start()
    print(describe(sandbox), flush=True)
    wait_until_interrupted(sandbox)
    return 0
