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
from rig.services import IN_CI

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SETTINGS_PAGE = DOCS / "settings.md"
# A setting's heading on the settings page (docs/conf.py adds the (setting-NAME)= target before it at build).
HEADING = re.compile(r"^### `([A-Z0-9_]+)`$", re.MULTILINE)


def documented_settings() -> list[str]:
    return HEADING.findall(SETTINGS_PAGE.read_text(encoding="utf-8"))


def test_every_setting_has_its_own_heading_on_the_settings_page():
    documented = documented_settings()
    missing = [name for name in DEFAULTS if name not in documented]
    assert not missing, f"docs/settings.md has no ### `NAME` heading for: {', '.join(missing)}"


def test_the_settings_page_documents_no_setting_that_does_not_exist():
    documented = documented_settings()
    unknown = sorted(set(documented) - set(DEFAULTS))
    duplicated = sorted({name for name in documented if documented.count(name) > 1})
    assert not unknown, f"docs/settings.md documents settings cc_sync does not have: {', '.join(unknown)}"
    assert not duplicated, f"docs/settings.md documents these settings twice: {', '.join(duplicated)}"


def test_each_setting_heading_is_followed_by_its_default():
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    for name in DEFAULTS:
        section = re.search(rf"^### `{name}`\n\n\*\*Default:\*\*", text, re.MULTILINE)
        assert section, f"docs/settings.md: '### `{name}`' must be followed by a **Default:** line"


@pytest.mark.slow
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


# -- the Markdown as a code host shows it ---------------------------------------------------------------

#: Pages that read correctly as plain Markdown (GitHub, GitLab, an editor's preview), not only once built.
CODE_HOST_PAGES = [
    ROOT / "README.md",
    *(DOCS / f"{name}.md" for name in ("index", "quickstart", "installation", "connecting", "settings")),
    *(DOCS / f"{name}.md" for name in ("operations", "troubleshooting")),
]
LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s]+)\)")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading (docs/conf.py makes Sphinx use the same)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def anchors(path: Path) -> set[str]:
    return {github_slug(h) for h in re.findall(r"^#{1,6} (.+)$", prose(path), re.MULTILINE)}


@pytest.mark.parametrize("page", CODE_HOST_PAGES, ids=lambda p: p.name)
def test_pages_read_on_a_code_host_have_no_build_only_syntax_and_their_links_work(page):
    text = prose(page)
    assert "{{" not in re.sub(r"`[^`]*`", "", text), f"{page.name}: a substitution placeholder is left raw"
    assert not re.search(r"^\([\w-]+\)=$", text, re.MULTILINE), f"{page.name}: a MyST target shows as text"
    for image, target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.exists(), f"{page.name}: link to {target}, which does not exist"
        if image:
            continue
        if anchor:
            assert linked.suffix == ".md" and anchor in anchors(linked), (
                f"{page.name}: link to {target}, but {linked.name} has no heading with that anchor"
            )


def python_snippets(path: Path) -> dict[str, list[str]]:
    """The ```python blocks whose first line names the file they go in (# yourproject/settings.py)."""
    found: dict[str, list[str]] = {}
    for block in re.findall(
        r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL
    ):
        first = block.splitlines()[0]
        if re.fullmatch(r"# yourproject/\S+\.py", first):
            found.setdefault(first[2:], []).append(block)
    return found


def test_the_readme_install_snippets_are_the_installation_guides_own():
    """One snippet in both places: the README shows exactly what docs/installation.md says (and the newcomer
    test runs), never an older or a shortened copy."""
    guide = python_snippets(DOCS / "installation.md")
    readme = python_snippets(ROOT / "README.md")
    assert readme.get("yourproject/settings.py"), "the README shows no settings snippet"
    for name, blocks in readme.items():
        for block in blocks:
            assert block in guide.get(name, []), f"README's {name} snippet differs from docs/installation.md"
    install = re.findall(r"^pip install .*$", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert install and install[0] in (DOCS / "installation.md").read_text(encoding="utf-8")
    assert "cc_sync_generate_key --env" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_license_file_is_the_mit_license_pyproject_declares():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "MIT"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
