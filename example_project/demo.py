"""Run the example site with everything it needs, on one machine, until Ctrl-C.

``python -m example_project.demo`` (``scripts/demo`` sets up the environment first) migrates the SQLite
database, creates an admin login, and starts: the CC sandbox (unless real CC credentials are configured),
a Celery worker with beat on a folder broker, and Django's development server. It runs with ``DEBUG`` on,
which the example project otherwise leaves off.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: The ports, their environment variables and their defaults.
PORTS = {"web": ("DEMO_PORT", 8000), "sandbox": ("DEMO_SANDBOX_PORT", 8765)}
#: How long the servers get to start listening before the demo gives up.
START_TIMEOUT = 60.0


class PortTaken(SystemExit):
    """A port given in the environment is in use: nothing was started."""


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listening(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def choose_port(variable: str, default: int, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """The port to use and a note for the output.

    A port set in the environment is used as it is, or the demo stops with a message naming it; the default
    port, when taken, is swapped for a free one, so that a busy machine still runs the demo.
    """
    environ = os.environ if environ is None else environ
    if environ.get(variable):
        port = int(environ[variable])
        if not port_free(port):
            raise PortTaken(
                f"Port {port} on {HOST} ({variable}) is taken by another program. Stop it, or choose another "
                f"port: {variable}=<port> scripts/demo (leave {variable} unset to get a free port)."
            )
        return port, ""
    if port_free(default):
        return default, ""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    return port, f"port {default} was taken, so {variable}={port} is used (set {variable} to choose one)"


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def main() -> int:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT: Ctrl-C (or a
    # supervisor's SIGINT) must stop the demo however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        (port, web_note), (sandbox_port, sandbox_port_note) = (
            choose_port(*PORTS[name]) for name in ("web", "sandbox")
        )
    except PortTaken as err:
        print(f"cc_sync demo: {err}", file=sys.stderr)
        return 2
    notes = [note for note in (web_note, sandbox_port_note) if note]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    os.environ["CC_SANDBOX_URL"] = f"http://{HOST}:{sandbox_port}"
    # The example project defaults to DEBUG off; the demo, on this machine only, wants its conveniences (the
    # sandbox, demo keys when no real CC application is configured). Its processes inherit this.
    os.environ["DEBUG"] = "true"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    password = secrets.token_urlsafe(9)
    user, _created = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
    )
    user.set_password(password)
    user.save()

    commands: list[tuple[str, list[str]]] = []
    if settings.USING_SANDBOX:
        callback = f"http://{HOST}:{port}/admin/cc_sync/connection/callback/"
        commands.append(
            (
                "sandbox",
                manage(
                    "cc_sync_sandbox",
                    "--port",
                    str(sandbox_port),
                    "--quiet",
                    "--redirect-uri",
                    callback,
                    "--redirect-uri",
                    callback.replace(HOST, "localhost"),
                ),
            )
        )
    beat_schedule = settings.DEMO_DATA_DIR / "celerybeat-schedule"
    commands.append(
        (
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "example_project",
                "worker",
                "--beat",
                f"--schedule={beat_schedule}",
                "--concurrency=2",
                "--loglevel=WARNING",
            ],
        )
    )
    commands.append(("web", manage("runserver", f"{HOST}:{port}", "--noreload")))

    processes = []
    for name, command in commands:
        processes.append((name, subprocess.Popen(command, cwd=ROOT, start_new_session=True)))
        time.sleep(1.0)

    def stop(*_args: object) -> None:
        for _name, process in reversed(processes):
            if process.poll() is None:
                process.terminate()  # the main process only: Celery then stops its own pool cleanly
        for _name, process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    # "Running" only once the servers answer: a port taken meanwhile, or a crash, is said as such instead.
    servers = [("web", port)] + ([("sandbox", sandbox_port)] if settings.USING_SANDBOX else [])
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not all(listening(number) for _name, number in servers):
            dead = [name for name, process in processes if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = (
                    f"{', '.join(dead)} exited" if dead else f"nothing listened within {START_TIMEOUT:.0f} s"
                )
                variables = " or ".join(PORTS[name][0] for name, _number in servers)
                print(
                    f"cc_sync demo did not start: {why} (see the messages above). If a port is taken, choose "
                    f"another with {variables}.",
                    file=sys.stderr,
                )
                stop()
                return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop()
        return 0

    base = f"http://{HOST}:{port}"
    sandbox_note = (
        f"   The Constant Contact sandbox stands in for CC: http://{HOST}:{sandbox_port}/ shows its lists and "
        "contacts.\n"
        if settings.USING_SANDBOX
        else "   Using the real Constant Contact application from .env.\n"
    )
    print(
        "\ncc_sync demo is running. Ctrl-C stops everything.\n\n"
        f"1. Admin: {base}/admin/  (user: admin, password: {password})\n"
        "   Click 'Connect Constant Contact', then 'Allow'; pick a list on the connection page.\n"
        f"2. Sign up as a visitor: {base}/register/\n"
        f"3. Watch the contact land: {base}/admin/cc_sync/signup/\n"
        f"{sandbox_note}"
        f"Ports: DEMO_PORT={port}, DEMO_SANDBOX_PORT={sandbox_port} (set these variables to choose others)."
        + "".join(f"\nNote: {note}." for note in notes),
        flush=True,
    )

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        while all(process.poll() is None for _name, process in processes):
            time.sleep(0.5)
        dead = [name for name, process in processes if process.poll() is not None]
        print(f"Stopped because {', '.join(dead)} exited.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
