"""Starting, stopping and configuring the sandbox, and the ways to run it."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from cc_sync.sandbox import Sandbox, cli
from rig import ROOT
from rig.sandbox import CLIENT_ID, PINNED, lists_page, sign_up


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="bogus"):
        Sandbox(bogus=1)
    with pytest.raises(ValueError, match="unknown fault"):
        Sandbox(faults={"meteor": 0.1})
    with pytest.raises(ValueError, match="probability"):
        Sandbox(faults={"drop": 2})
    with pytest.raises(ValueError, match="client_secret must be None"):
        Sandbox(flow="pkce", client_secret="s")
    with pytest.raises(ValueError, match="refresh_tokens"):
        Sandbox(refresh_tokens="forever")
    with pytest.raises(ValueError, match="UUID"):
        Sandbox(lists=[{"list_id": "newsletter", "name": "Newsletter"}])
    sandbox = Sandbox(
        client_id="my-key", client_secret="my-secret", redirect_uris=["https://example.org/cb/"]
    )
    app = sandbox.config()["apps"][0]
    assert (app["client_id"], app["client_secret"], app["redirect_uris"]) == (
        "my-key",
        "my-secret",
        ["https://example.org/cb/"],
    )
    assert Sandbox(flow="device").config()["apps"][0]["client_secret"] is None


def test_urls_settings_and_restart_on_the_same_port(make_sandbox):
    sandbox = make_sandbox()
    base = sandbox.base_url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
    assert sandbox.cc_sync_settings() == {
        "AUTHORIZE_URL": base + "/oauth2/default/v1/authorize",
        "TOKEN_URL": base + "/oauth2/default/v1/token",
        "DEVICE_AUTHORIZE_URL": base + "/oauth2/default/v1/device/authorize",
        "API_URL": base + "/v3",
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": "sandbox-client-secret",
    }
    token = sandbox.issue_tokens()["access_token"]
    sandbox.stop()
    assert not sandbox.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base + "/_sandbox/state", timeout=2)
    sandbox.start()
    assert sandbox.base_url == base
    assert lists_page(sandbox, token).status_code == 200


def test_stop_cuts_sleeping_requests_short(make_sandbox):
    sandbox = make_sandbox(faults={"timeout": 1.0}, timeout_seconds=30)
    token = sandbox.issue_tokens()["access_token"]
    timer = threading.Timer(0.2, sandbox.stop)
    timer.start()
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        sign_up(sandbox, token, timeout=10)
    timer.join()
    assert time.monotonic() - started < 2


def test_context_manager_starts_and_stops():
    with Sandbox() as sandbox:
        url = sandbox.base_url + "/_sandbox/state"
        assert requests.get(url).status_code == 200
    assert not sandbox.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=2)


# -- entry points ----------------------------------------------------------------------------------


def test_server_module_does_not_import_django():
    code = "import sys, cc_sync.sandbox.server; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "False", result.stderr


def test_python_m_runs_the_sandbox_and_prints_the_urls():
    process = subprocess.Popen(
        [sys.executable, "-m", "cc_sync.sandbox", "--port", "0", "--quiet", "--flow", "pkce"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        match = re.search(r"running at (http://127\.0\.0\.1:\d+)", first)
        assert match, first + process.stderr.read()
        base = match.group(1)
        banner = "".join(iter(process.stdout.readline, "}\n"))
        assert f'"TOKEN_URL": "{base}/oauth2/default/v1/token",' in banner
        assert '"OAUTH_FLOW": "pkce",' in banner
        state = requests.get(base + "/_sandbox/state", timeout=5).json()
        assert state["config"]["apps"][0]["flow"] == "pkce"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def test_management_command_prints_settings_and_serves_until_interrupted(monkeypatch):
    from django.core.management.base import OutputWrapper

    from cc_sync.management.commands.cc_sync_sandbox import Command

    seen = {}

    def fake_wait(sandbox, poll=0.5):
        seen["state"] = requests.get(sandbox.base_url + "/_sandbox/state", timeout=5).json()
        sandbox.stop()

    monkeypatch.setattr(cli, "wait_until_interrupted", fake_wait)
    command = Command()
    out = io.StringIO()
    command.stdout = OutputWrapper(out)
    argv = [
        "--port", "0", "--quiet", "--client-id", "cmd-key", "--client-secret", "cmd-secret",
        "--redirect-uri", "https://example.org/a/", "--redirect-uri", "https://example.org/b/",
        "--refresh-tokens", "long_lived", "--token-lifetime", "60", "--api-rate", "2", "--daily-quota", "9",
        "--fault", "error_5xx=0.1",
    ]  # fmt: skip
    options = vars(command.create_parser("manage.py", "cc_sync_sandbox").parse_args(argv))
    command.handle(**options)
    config = seen["state"]["config"]
    app = config["apps"][0]
    assert (app["client_id"], app["redirect_uris"], app["confidential"]) == (
        "cmd-key",
        ["https://example.org/a/", "https://example.org/b/"],
        True,
    )
    assert (
        config["refresh_tokens"],
        config["token_lifetime"],
        config["api_rate"],
        config["daily_quota"],
    ) == (
        "long_lived",
        60,
        2,
        9,
    )
    assert config["faults"] == {"error_5xx": 0.1}
    printed = out.getvalue()
    assert "Constant Contact sandbox running at http://127.0.0.1:" in printed
    assert '"CLIENT_ID": "cmd-key",' in printed and '"CLIENT_SECRET": "cmd-secret",' in printed
    assert "https://example.org/b/" in printed


def test_wait_until_interrupted_returns_once_the_sandbox_stops():
    sandbox = Sandbox().start()
    timer = threading.Timer(0.1, sandbox.stop)
    timer.start()
    started = time.monotonic()
    cli.wait_until_interrupted(sandbox, poll=0.02)
    timer.join()
    assert not sandbox.running
    assert time.monotonic() - started < 2


def test_pytest_plugin_fixtures(tmp_path):
    (tmp_path / "plugin_settings.py").write_text(
        'SECRET_KEY = "x"\nINSTALLED_APPS = []\nCC_SYNC = {"LIST_IDS": ["keep-me"]}\n'
    )
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            import requests

            def test_cc_sandbox(cc_sandbox):
                assert requests.get(cc_sandbox.base_url + "/_sandbox/state").status_code == 200

            def test_factory(cc_sandbox_factory):
                assert cc_sandbox_factory(flow="device").cc_sync_settings()["CLIENT_SECRET"] == ""

            def test_settings(cc_sandbox_settings, settings):
                assert settings.CC_SYNC["TOKEN_URL"] == cc_sandbox_settings.token_url
                assert settings.CC_SYNC["LIST_IDS"] == ["keep-me"]
            """
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "cc_sync.sandbox.pytest_plugin",
            "--ds",
            "plugin_settings",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_uses_plugin.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_timestamps_come_from_the_injected_clock(make_sandbox):
    sandbox = make_sandbox(clock=lambda: PINNED)
    token = sandbox.issue_tokens()["access_token"]
    sign_up(sandbox, token)
    contact = sandbox.contact("ann@example.com")
    assert contact["created_at"] == contact["email_address"]["opt_in_date"] == "2026-01-01T00:00:00.000Z"
    assert sandbox.now() == PINNED


def test_command_line_sets_confirmed_opt_in_queue_limit_and_quota_reset_hour():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--confirmed-opt-in", "--activity-queue-limit", "5", "--quota-reset-hour", "8"]
    config = cli.sandbox_from_options(vars(parser.parse_args(argv))).config()
    assert (config["confirmed_opt_in"], config["activity_queue_limit"], config["quota_reset_hour_utc"]) == (
        True,
        5,
        8,
    )
    defaults = cli.sandbox_from_options(vars(parser.parse_args([]))).config()
    assert (defaults["confirmed_opt_in"], defaults["activity_queue_limit"]) == (False, 1000)
