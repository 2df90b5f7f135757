"""The README's demo, run for real: SQLite, a folder broker, the sandbox, a worker with beat, runserver.

Driven over HTTP the way a person clicks through it: log in, Connect Constant Contact, Allow, choose a
list, register, and see the contact land in the sandbox. Needs nothing but Python.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from rig import ROOT
from rig.waiting import wait_until

# Real processes (runserver, a worker, the sandbox): the services tier.
pytestmark = pytest.mark.services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hidden_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def csrf(session: requests.Session, url: str) -> str:
    session.get(url, timeout=10)
    return session.cookies["csrftoken"]


def descendants(pid: int) -> list[str]:
    found, todo = [], [str(pid)]
    while todo:
        parent = todo.pop()
        kids = subprocess.run(["pgrep", "-P", parent], capture_output=True, text=True).stdout.split()
        found += kids
        todo += kids
    return found


@pytest.fixture
def demo(tmp_path: Path):
    port, sandbox_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CC_", "CELERY_", "DATABASE_", "DJANGO_"))
    }
    env.update(
        DEMO_PORT=str(port),
        DEMO_SANDBOX_PORT=str(sandbox_port),
        DEMO_DATA_DIR=str(tmp_path / "demo"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "demo.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "example_project.demo"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def password() -> str | None:
            log.seek(0)
            match = re.search(r"user: admin, password: (\S+)\)", log.read())
            return match.group(1) if match else None

        secret = wait_until(password, timeout=90, what="the demo to print the admin login")
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            # The login is printed before runserver listens; on a busy machine the gap is seconds.
            try:
                return requests.get(f"{base}/register/", timeout=5).ok
            except requests.ConnectionError:
                return False

        wait_until(serving, timeout=60, what="the web server")
        yield {
            "base": base,
            "sandbox": f"http://127.0.0.1:{sandbox_port}",
            "password": secret,
            "process": process,
            "log": log,
        }
    finally:
        started = descendants(process.pid)  # each in a session of its own: killpg alone would miss them
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in started:  # whatever a failed stop left behind must not outlive the test
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.seek(0)
        print(log.read()[-3000:])


def test_the_demo_runs_the_whole_story(demo):
    base, sandbox = demo["base"], demo["sandbox"]
    admin = requests.Session()
    token = csrf(admin, f"{base}/admin/login/")
    response = admin.post(
        f"{base}/admin/login/",
        timeout=10,
        data={
            "username": "admin",
            "password": demo["password"],
            "csrfmiddlewaretoken": token,
            "next": "/admin/",
        },
    )
    assert "Connect Constant Contact" in response.text

    consent = admin.post(
        f"{base}/admin/cc_sync/connection/connect/",
        timeout=10,
        data={"csrfmiddlewaretoken": admin.cookies["csrftoken"]},
    )
    assert consent.url.startswith(f"{sandbox}/oauth2/default/v1/authorize")
    assert "Allow" in consent.text
    page = admin.post(consent.url, data={**hidden_inputs(consent.text), "decision": "allow"}, timeout=30)
    assert "Connected to Constant Contact account Sandbox Organization." in page.text
    callback = next(r.headers["Location"] for r in page.history if "code=" in r.headers.get("Location", ""))
    code = parse_qs(urlsplit(callback).query)["code"][0]

    lists = requests.get(f"{sandbox}/_sandbox/state", timeout=10).json()["lists"]
    newsletter = next(item["list_id"] for item in lists if item["name"] == "Newsletter")
    page = admin.post(
        f"{base}/admin/cc_sync/connection/lists/",
        timeout=10,
        data={"csrfmiddlewaretoken": admin.cookies["csrftoken"], "list_ids": [newsletter]},
    )
    assert "Signups now go to: Newsletter." in page.text

    visitor = requests.Session()
    token = csrf(visitor, f"{base}/register/")
    done = visitor.post(
        f"{base}/register/",
        timeout=10,
        data={
            "csrfmiddlewaretoken": token,
            "email": "Grace@Example.com",
            "first_name": "Grace",
            "last_name": "Hopper",
            "consent": "on",
        },
    )
    assert done.url == f"{base}/register/done/"

    def landed():
        contacts = requests.get(f"{sandbox}/_sandbox/state", timeout=10).json()["contacts"]
        return [c for c in contacts if c["email_address"] == "Grace@example.com"]

    [contact] = wait_until(landed, timeout=90, interval=1, what="the contact to land in the sandbox")
    assert (contact["first_name"], contact["last_name"]) == ("Grace", "Hopper")
    assert contact["list_memberships"] == [newsletter]
    signups = admin.get(f"{base}/admin/cc_sync/signup/", timeout=10).text
    assert "Grace@example.com" in signups and "Synced" in signups

    log = demo_log(demo)
    # The output names the ports and their variables; runserver's log shows the callback without its code.
    assert re.search(r"Ports: DEMO_PORT=\d+, DEMO_SANDBOX_PORT=\d+", log)
    assert "/admin/cc_sync/connection/callback/?code=********&state=********" in log
    assert code not in log
    # Each of cc_sync's log lines once, in the worker's format (not once more by a handler of its own).
    synced = wait_until(
        lambda: re.findall(r".*Signup \d+ synced to Constant Contact.*", demo_log(demo)), 10, what="the log"
    )
    assert len(synced) == 1, synced


def demo_log(demo) -> str:
    demo["log"].seek(0)
    return demo["log"].read()


def test_ctrl_c_stops_everything_the_demo_started(demo):
    process = demo["process"]
    children = descendants(process.pid)
    assert len(children) >= 4  # the sandbox, the worker and its pool, the web server
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.5)
    alive = [
        pid
        for pid in children
        if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    ]
    assert alive == []


def test_a_port_set_in_the_environment_that_is_taken_stops_the_demo_naming_port_and_variable(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CC_", "CELERY_", "DATABASE_", "DJANGO_"))
        }
        env.update(
            DEMO_PORT=str(taken),
            DEMO_SANDBOX_PORT=str(free_port()),
            DEMO_DATA_DIR=str(tmp_path / "demo"),
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        )
        result = subprocess.run(
            [sys.executable, "-m", "example_project.demo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"Port {taken} on 127.0.0.1 (DEMO_PORT) is taken" in result.stderr
    assert "DEMO_PORT=<port> scripts/demo" in result.stderr
    assert "is running" not in result.stdout + result.stderr
    assert not (tmp_path / "db.sqlite3").exists()  # nothing was started or migrated


def test_a_taken_default_port_is_swapped_for_a_free_one_and_said_so():
    from example_project.demo import choose_port, port_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port, note = choose_port("DEMO_PORT", taken, environ={})
    assert port != taken and port_free(port)
    assert note == f"port {taken} was taken, so DEMO_PORT={port} is used (set DEMO_PORT to choose one)"
    assert choose_port("DEMO_PORT", port, environ={}) == (port, "")


def test_runserver_request_lines_hide_the_oauth_code_and_state():
    import logging

    from example_project.log_filters import HideOAuthQuery

    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /admin/cc_sync/connection/callback/?code=secret-code&state=s3cr3t HTTP/1.1", "302", "0"),
        None,
    )
    assert HideOAuthQuery().filter(record)
    assert record.getMessage() == (
        '"GET /admin/cc_sync/connection/callback/?code=********&state=******** HTTP/1.1" 302 0'
    )


def test_the_example_project_logs_each_cc_sync_line_once_in_a_celery_worker(tmp_path):
    """A Celery worker replaces the root logger's handlers; a handler on cc_sync's logger too printed twice."""
    script = (
        "import logging, django\n"
        "django.setup()\n"
        "from example_project.celery import app\n"
        "app.log.setup(loglevel='WARNING')\n"  # what `celery worker --loglevel=WARNING` does
        "logging.getLogger('cc_sync.sync').info('Signup 1 synced to Constant Contact (contact c).')\n"
        "logging.getLogger('django.request').warning('Not Found: /favicon.ico')\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CC_", "CELERY_", "DATABASE_", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DEBUG="true",
        CELERY_BROKER_URL="memory://",
        DEMO_DATA_DIR=str(tmp_path),
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("Signup 1 synced to Constant Contact") == 1, output
    assert output.count("Not Found: /favicon.ico") == 1, output
