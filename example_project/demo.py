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
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PORT = int(os.environ.get("DEMO_PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("DEMO_SANDBOX_PORT", "8765"))


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def main() -> int:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT: Ctrl-C (or a
    # supervisor's SIGINT) must stop the demo however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    os.environ.setdefault("CC_SANDBOX_URL", f"http://{HOST}:{SANDBOX_PORT}")
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
        callback = f"http://{HOST}:{PORT}/admin/cc_sync/connection/callback/"
        commands.append(
            (
                "sandbox",
                manage(
                    "cc_sync_sandbox",
                    "--port",
                    str(SANDBOX_PORT),
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
    commands.append(("web", manage("runserver", f"{HOST}:{PORT}", "--noreload")))

    processes = []
    for name, command in commands:
        processes.append((name, subprocess.Popen(command, cwd=ROOT, start_new_session=True)))
        time.sleep(1.0)

    base = f"http://{HOST}:{PORT}"
    sandbox_note = (
        f"   The Constant Contact sandbox stands in for CC: http://{HOST}:{SANDBOX_PORT}/ shows its lists and "
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
        f"{sandbox_note}",
        flush=True,
    )

    def stop(*_args: object) -> None:
        for _name, process in reversed(processes):
            if process.poll() is None:
                process.terminate()  # the main process only: Celery then stops its own pool cleanly
        for _name, process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

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
