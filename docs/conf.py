"""Sphinx configuration: Markdown pages (MyST), built with ``python -m sphinx -W -b html docs docs/_build/html``."""

from __future__ import annotations

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

myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
# Headings up to ### get anchors that other pages can link to (page.md#some-heading).
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"cc_sync {release}"

# -- Pages and pictures that other tools produce ---------------------------------------------------
#
# docs/reliability.md and docs/benchmarks.md are written by the fault and benchmark runs, and
# docs/screenshots/*.png by the browser test. The build must pass with or without them, so they are
# only referenced when they exist.

OPTIONAL_PAGES = ("reliability", "benchmarks")
OPTIONAL_PAGES_MARKER = "% optional pages: listed here by conf.py when they exist"

SCREENSHOTS = {
    # substitution name: (file, alt text and caption)
    "shot_admin_index": (
        "admin-index.png",
        "The admin index with the banner: Constant Contact is not connected, and a Connect button.",
    ),
    "shot_sandbox_consent": (
        "sandbox-consent.png",
        "The consent page (here the sandbox's) with Allow and Deny.",
    ),
    "shot_connection_connected": (
        "connection-connected.png",
        "The connection page after Allow: status, account, token times, the lists to choose.",
    ),
    "shot_register_form": (
        "register-form.png",
        "The example project's /register/ page: the signup form with its consent checkbox.",
    ),
}


def _figure(filename: str, caption: str) -> str:
    return f":::{{figure}} screenshots/{filename}\n:alt: {caption}\n:width: 720px\n\n{caption}\n:::\n"


# A missing screenshot becomes an empty substitution, so the page simply has no picture there.
myst_substitutions = {
    name: (_figure(filename, caption) if (DOCS / "screenshots" / filename).is_file() else "")
    for name, (filename, caption) in SCREENSHOTS.items()
}


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
    app.connect("source-read", _list_optional_pages)
    app.connect("env-get-outdated", _reread_index)
    return {"parallel_read_safe": True}
