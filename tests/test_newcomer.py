"""The first hour of a new user, done the way docs/installation.md tells it.

The snippets are read from the guide itself: every ```python block whose first line names a file
(``# yourproject/settings.py``) is added to that file of a project made by ``django-admin startproject
yourproject``, and the guide's ``pip install`` line is what installs the package. So these tests fail when
the guide and the package drift apart, not only when the package breaks.

- The quick test uses this virtualenv: the documented settings load before any key exists, the key command
  runs on them, ``check`` says what is missing, and passes once the keys are set.
- The full test builds the wheel, installs it into a new virtualenv with the guide's extra only, and runs
  ``check``, ``migrate``, ``cc_sync_generate_key``, ``cc_sync_connect`` (against the sandbox), a real Celery
  worker on Redis, and ``cc_sync_status``: a signup gets synced. It needs Redis (and, like every service
  test, PostgreSQL) and PyPI or pip's cache for the dependencies.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from cc_sync.sandbox import Sandbox
from rig import ROOT
from rig.processes import stop
from rig.waiting import wait_until

GUIDE = ROOT / "docs" / "installation.md"
PROJECT = "yourproject"
FILE_LINE = re.compile(rf"# ({PROJECT}/\S+\.py)")
# Redis database of the full test (the other service tests empty CC_SYNC_TEST_REDIS_DB, 15 by default).
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('CC_SYNC_TEST_NEWCOMER_REDIS_DB', '14')}"
REDIRECT_URI = "http://127.0.0.1:8000/admin/cc_sync/connection/callback/"


def guide_snippets() -> list[tuple[str, str]]:
    """(file, code) of each ```python block of the guide that names its file, in the guide's order."""
    text = GUIDE.read_text(encoding="utf-8")
    snippets = []
    for block in re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        match = FILE_LINE.fullmatch(block.splitlines()[0])
        if match:
            snippets.append((match.group(1), block))
    return snippets


def guide_install_command() -> list[str]:
    """The guide's first ``pip install`` line, as arguments."""
    match = re.search(r"^pip install (.+)$", GUIDE.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "docs/installation.md has no `pip install` line"
    return shlex.split(match.group(1))


def new_project(django_admin: list[str], where: Path) -> Path:
    """``django-admin startproject yourproject`` and the guide's snippets added, file by file."""
    where.mkdir()
    run([*django_admin, "startproject", PROJECT, str(where)], cwd=where)
    snippets = guide_snippets()
    files = {name for name, _code in snippets}
    assert {f"{PROJECT}/settings.py", f"{PROJECT}/urls.py", f"{PROJECT}/celery.py"} <= files, files
    for name, code in snippets:
        with (where / name).open("a", encoding="utf-8") as target:
            target.write("\n\n" + code)
    return where


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CC_", "CELERY_", "DJANGO_", "DATABASE_", "PYTHONPATH", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, **kwargs: Any):
    result = subprocess.run(
        command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=600, **kwargs
    )
    if check:
        assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def keys_from(output: str) -> dict[str, str]:
    lines = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert sorted(lines) == ["CC_SYNC_ENCRYPTION_KEYS", "CC_SYNC_HASH_KEY"], output
    return lines


@pytest.mark.slow
def test_the_documented_settings_make_their_keys_first_and_pass_check_once_set(tmp_path):
    """Item 2 and 8 of issue 13: in the documented order, nothing crashes (no ``KeyError: 'CC_CLIENT_ID'``)."""
    project = new_project([sys.executable, "-m", "django"], tmp_path / "site")
    manage = [sys.executable, "manage.py"]
    made = run([*manage, "cc_sync_generate_key", "--env"], cwd=project)
    keys = keys_from(made.stdout)

    unfinished = run([*manage, "check"], cwd=project, check=False)
    assert unfinished.returncode == 1
    assert "Traceback" not in unfinished.stderr, unfinished.stderr
    for check_id in ("cc_sync.E001", "cc_sync.E002", "cc_sync.E003"):
        assert check_id in unfinished.stderr

    env = clean_env(CC_CLIENT_ID="client-id", CC_CLIENT_SECRET="client-secret", **keys)
    finished = run([*manage, "check"], cwd=project, env=env)
    assert "no issues" in finished.stdout


@pytest.mark.services
@pytest.mark.package
@pytest.mark.usefixtures("services")
def test_a_new_project_built_from_the_wheel_and_the_guide_syncs_a_signup(tmp_path):
    timings: dict[str, float] = {}
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        timings[name] = time.monotonic() - started
        started = time.monotonic()

    # The wheel, as it would be published, with the license the metadata declares and cc_sync alone: the
    # test rig (rig/), the tests, the fault suite and the benchmarks stay in the checkout.
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)], cwd=ROOT
    )
    [wheel] = wheels.glob("cc_sync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert {name.split("/")[0] for name in names} == {"cc_sync", dist_info}
    lap("build the wheel")

    # A new virtualenv with the guide's install line, the wheel standing in for the name on PyPI.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    bin_dir = venv / "bin"
    install = [
        str(wheel) + arg.removeprefix("cc-sync") if arg.startswith("cc-sync") else arg
        for arg in guide_install_command()
    ]
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *install], cwd=tmp_path)
    lap("install into a new virtualenv")

    with Sandbox(redirect_uris=[REDIRECT_URI]) as sandbox:
        newsletter = next(item["list_id"] for item in sandbox.lists() if item["name"] == "Newsletter")
        project = new_project([str(bin_dir / "django-admin")], tmp_path / "site")
        endpoints = {k: v for k, v in sandbox.cc_sync_settings().items() if k.endswith("_URL")}
        queue = f"newcomer-{uuid.uuid4().hex[:8]}"
        with (project / PROJECT / "settings.py").open("a", encoding="utf-8") as settings:
            # Not from the guide: the sandbox stands in for CC, the list is set instead of chosen in the admin,
            # and a queue of this run's own keeps it apart from any other run on the same Redis.
            settings.write(
                "\n\n# -- the test's own, after the guide's ----------------------------------------\n"
                f"CC_SYNC.update({endpoints!r}, LIST_IDS=[{newsletter!r}])\n"
                f"CELERY_TASK_DEFAULT_QUEUE = {queue!r}\n"
            )
        manage = [str(bin_dir / "python"), "manage.py"]
        keys = keys_from(run([*manage, "cc_sync_generate_key", "--env"], cwd=project).stdout)
        app = sandbox.cc_sync_settings()
        env = clean_env(
            CC_CLIENT_ID=app["CLIENT_ID"],
            CC_CLIENT_SECRET=app["CLIENT_SECRET"],
            CELERY_BROKER_URL=REDIS_URL,
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            **keys,
        )
        assert "no issues" in run([*manage, "check"], cwd=project, env=env).stdout
        run([*manage, "migrate"], cwd=project, env=env)
        lap("startproject, the guide's snippets, keys, check, migrate")

        connect_by_pasting_the_redirect(manage, project, env)
        assert (
            "connection: connected"
            in run([*manage, "cc_sync_status"], cwd=project, env=env, check=False).stdout
        )
        lap("cc_sync_connect")

        worker = subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                PROJECT,
                "worker",
                "--beat",
                f"--schedule={tmp_path / 'beat-schedule'}",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=project,
            env=env,
            stdout=(tmp_path / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            run(
                [
                    *manage,
                    "shell",
                    "-c",
                    "from cc_sync.sync import enqueue_signup; "
                    "enqueue_signup('ada.newcomer@example.com', first_name='Ada', last_name='Lovelace')",
                ],
                cwd=project,
                env=env,
            )

            def landed() -> dict[str, Any] | None:
                return next(
                    (c for c in sandbox.contacts() if c["email_address"] == "ada.newcomer@example.com"), None
                )

            contact = wait_until(landed, timeout=90, interval=0.5, what="the signup to reach the sandbox")
            lap("a real worker syncs the signup")
        finally:
            stop(worker)
            print((tmp_path / "worker.log").read_text()[-3000:])
        assert (contact["first_name"], contact["last_name"]) == ("Ada", "Lovelace")
        assert contact["list_memberships"] == [newsletter]
        status = run([*manage, "cc_sync_status"], cwd=project, env=env).stdout
        assert "pending: 0" in status
    print("newcomer timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


def connect_by_pasting_the_redirect(manage: list[str], project: Path, env: dict[str, str]) -> None:
    """``manage.py cc_sync_connect`` (paste mode): open the printed URL, Allow, paste where CC sent us."""
    process = subprocess.Popen(
        [*manage, "cc_sync_connect", "--redirect-uri", REDIRECT_URI],
        cwd=project,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = ""
        while not url:
            line = process.stdout.readline()
            assert line, f"cc_sync_connect printed no URL: {process.stderr.read()}"
            url = line.strip() if line.startswith("http") else ""
        consent = requests.get(url, timeout=10)
        action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', consent.text).group(1))
        fields = {
            html.unescape(name): html.unescape(value)
            for name, value in re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text
            )
        }
        answer = requests.post(
            requests.compat.urljoin(url, action),
            data={**fields, "decision": "allow"},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.headers["Location"].startswith(REDIRECT_URI + "?code="), answer.headers
        out, err = process.communicate(answer.headers["Location"] + "\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, f"{out}\n{err}"
    assert "Connected to Constant Contact account" in out
