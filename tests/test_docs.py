"""The documentation: every setting is documented, and the Sphinx site builds without a warning.

The build needs the ``docs`` extra (``pip install -e '.[docs]'``). Without Sphinx the build test is skipped
with the reason printed; under CI=true that is an error instead.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cc_sync.conf import DEFAULTS
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SETTINGS_PAGE = DOCS / "settings.md"
# A MyST target before a heading: (setting-NAME)=
TARGET = re.compile(r"^\(setting-([A-Z0-9_]+)\)=\s*$", re.MULTILINE)


def documented_settings() -> list[str]:
    return TARGET.findall(SETTINGS_PAGE.read_text(encoding="utf-8"))


def test_every_setting_has_its_own_anchor_on_the_settings_page():
    documented = documented_settings()
    missing = [name for name in DEFAULTS if name not in documented]
    assert not missing, f"docs/settings.md has no (setting-NAME)= target for: {', '.join(missing)}"


def test_the_settings_page_documents_no_setting_that_does_not_exist():
    documented = documented_settings()
    unknown = sorted(set(documented) - set(DEFAULTS))
    duplicated = sorted({name for name in documented if documented.count(name) > 1})
    assert not unknown, f"docs/settings.md documents settings cc_sync does not have: {', '.join(unknown)}"
    assert not duplicated, f"docs/settings.md documents these settings twice: {', '.join(duplicated)}"


def test_each_setting_target_is_followed_by_its_heading_and_default():
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    for name in DEFAULTS:
        section = re.search(rf"^\(setting-{name}\)=\n### `{name}`\n\n\*\*Default:\*\*", text, re.MULTILINE)
        assert section, (
            f"docs/settings.md: ({name}) must be followed by '### `{name}`' and a **Default:** line"
        )


def test_the_documentation_builds_without_warnings(tmp_path):
    if importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_parser") is None:
        message = "Sphinx or myst-parser is not installed (pip install -e '.[docs]')"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true: the documentation build must run in CI.", pytrace=False)
        pytest.skip(f"{message}; install them to build the documentation.")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "html" / "settings.html").is_file()
