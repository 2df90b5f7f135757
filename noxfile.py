"""The version matrix and the release checks: `nox -l` lists the sessions.

CI runs the oldest and the newest supported pair (`nox -s oldest newest`) plus `lint`, `types`,
`migrations`, `docs` and `package`; `nox -s matrix` runs every supported pair.
"""

from __future__ import annotations

import os
import sys

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["oldest", "newest", "lint", "types", "migrations", "docs", "package"]

# Supported pairs: Django 5.2 LTS on Python 3.10+, Django 6.x on Python 3.12+ (Django's own support).
MATRIX = [
    ("3.10", "5.2"),
    ("3.11", "5.2"),
    ("3.12", "5.2"),
    ("3.13", "5.2"),
    ("3.12", "6.0"),
    ("3.13", "6.0"),
    ("3.12", "6.1"),
    ("3.13", "6.1"),
]
# Sessions without a virtualenv of their own use the interpreter nox runs in (the project's .venv).
PY = sys.executable
# Tiers are pytest markers (pyproject.toml). The fault and benchmark suites, the newcomer's wheel install and
# the slow single tests (the docs build) run once, under the main test command (and the docs session); the
# matrix runs every other tier. The browser test runs in the main command and on the newest pair, whose admin
# markup is the newest (the layout comparison with the admin's own pages).
MATRIX_TIERS = "not (fault or bench or package or slow)"


def run_tests(session: nox.Session, django: str, browser: bool = False) -> None:
    session.install("-e", ".[test]", f"django~={django}.0")
    session.run("python", "-m", "django", "--version")
    env = {
        "CC_SYNC_TEST_DB_NAME": f"nox_{session.python}_{django}".replace(".", "_"),
        "CC_SYNC_FUZZ_EXAMPLES": os.environ.get("CC_SYNC_FUZZ_EXAMPLES", "1000"),
        "PYTHONWARNINGS": "error::DeprecationWarning:cc_sync",
    }
    tiers = MATRIX_TIERS if browser else f"{MATRIX_TIERS} and not browser"
    session.run("python", "-m", "pytest", "-q", "-m", tiers, *session.posargs, env=env)


@nox.session(python="3.10")
def oldest(session: nox.Session) -> None:
    """Python 3.10 with Django 5.2."""
    run_tests(session, "5.2")


@nox.session(python="3.13")
def newest(session: nox.Session) -> None:
    """Python 3.13 with Django 6.1, the browser test included."""
    run_tests(session, "6.1", browser=True)


@nox.session
@nox.parametrize("python,django", MATRIX)
def matrix(session: nox.Session, django: str) -> None:
    """Every supported pair."""
    run_tests(session, django)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run(
        PY,
        "-m",
        "ruff",
        "check",
        "cc_sync",
        "tests",
        "example_project",
        "bench",
        "faults",
        "rig",
        "noxfile.py",
        external=True,
    )
    session.run(
        PY, "-m", "ruff", "format", "--check", "cc_sync", "tests", "example_project", "rig", external=True
    )


@nox.session(python=False)
def types(session: nox.Session) -> None:
    """mypy with django-stubs on cc_sync/ (configured in pyproject.toml's [tool.mypy])."""
    session.run(PY, "-m", "mypy", *session.posargs, external=True)


@nox.session(python=False)
def migrations(session: nox.Session) -> None:
    """The models and the migrations agree."""
    session.run(
        PY,
        "-m",
        "django",
        "makemigrations",
        "--check",
        "--dry-run",
        "--settings=tests.settings",
        external=True,
    )


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    session.run(
        PY,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        external=True,
    )


@nox.session(python=False)
def package(session: nox.Session) -> None:
    """Build the sdist and wheel and check their metadata renders."""
    session.run("rm", "-rf", "dist", external=True)
    session.run(PY, "-m", "build", "--outdir", "dist", external=True)
    session.run(PY, "-m", "twine", "check", "--strict", "dist/*", external=True)
