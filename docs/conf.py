"""Sphinx configuration: Markdown pages (MyST), built with ``python -m sphinx -W -b html docs docs/_build/html``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from cc_sync import __version__  # noqa: E402

project = "cc_sync"
author = "cc_sync developers"
copyright = "cc_sync developers"
version = release = __version__

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "screenshots", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
# Headings up to ### get anchors that other pages can link to (page.md#some-heading), made the way GitHub
# makes them: the Markdown links work the same on the built site and when the files are read on a code host.
myst_heading_anchors = 3
myst_heading_slug_func = "github"

html_theme = "furo"
html_title = f"cc_sync {release}"

# -- Markdown that reads as it is on a code host -----------------------------------------------------
#
# The pages are plain Markdown where GitHub (or any code host) shows them: screenshots are ordinary image
# links, cross-page links point to headings (settings.md#list_ids). Two things are added here, at build time:
# the (setting-NAME)= targets of settings.md, which pages may still link to as #setting-NAME, and the
# generated pages' table of contents.

OPTIONAL_PAGES = ("reliability", "benchmarks")
OPTIONAL_PAGES_MARKER = "% optional pages: listed here by conf.py when they exist"
SETTING_HEADING = re.compile(r"^(?:\(setting-([A-Z0-9_]+)\)=\n)?### `([A-Z0-9_]+)`$", re.MULTILINE)
# docs/screenshots/*.png are written by the browser test; a page links them as screenshots/NAME.png.
SCREENSHOT_LINK = re.compile(r"^[ \t]*!\[[^\]]*\]\(screenshots/([^)]+)\)[ \t]*\n", re.MULTILINE)


def _setting_targets(text: str) -> str:
    """Put a (setting-NAME)= target before each ### `NAME` heading of the settings page that has none."""

    def target(match: re.Match) -> str:
        return match.group(0) if match.group(1) else f"(setting-{match.group(2)})=\n{match.group(0)}"

    return SETTING_HEADING.sub(target, text)


def _drop_missing_screenshots(text: str) -> str:
    """A screenshot that was never taken is left out, so the page simply has no picture there."""

    def keep(match: re.Match) -> str:
        return match.group(0) if (DOCS / "screenshots" / match.group(1)).is_file() else ""

    return SCREENSHOT_LINK.sub(keep, text)


def _rewrite(app, docname, source):
    source[0] = _drop_missing_screenshots(source[0])
    if docname == "settings":
        source[0] = _setting_targets(source[0])


def _list_optional_pages(app, docname, source):
    """Put the generated pages that exist into the index's table of contents."""
    if docname != root_doc:
        return
    present = [name for name in OPTIONAL_PAGES if (DOCS / f"{name}.md").is_file()]
    toctree = ""
    if present:
        toctree = "```{toctree}\n:caption: Measured\n:maxdepth: 1\n\n" + "\n".join(present) + "\n```\n"
    source[0] = source[0].replace(OPTIONAL_PAGES_MARKER, toctree)


def _reread_index(app, env, added, changed, removed):
    """Read the index again on every build, so that a generated page added since is listed (no stale toctree)."""
    return [root_doc]


def setup(app):
    app.connect("source-read", _rewrite)
    app.connect("source-read", _list_optional_pages)
    app.connect("env-get-outdated", _reread_index)
    return {"parallel_read_safe": True}
