"""The exception tree that docs/architecture.md draws is the one the code defines."""

from __future__ import annotations

import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from cc_sync import crypto, exceptions

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
# A tree line: the drawing (│, ├──, └──, spaces), then a dotted class name, then its description.
TREE_LINE = re.compile(r"^(?P<indent>[│├└─ ]*)(?P<name>[A-Za-z][\w.]*)\s")


def documented_tree() -> dict[str, str | None]:
    """Class name -> the name of its parent in the drawing (None at the top of each tree)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Exceptions\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = TREE_LINE.match(line)
        if not match:
            continue
        depth = len(match["indent"])
        name = match["name"].rsplit(".", 1)[-1]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def real_tree() -> dict[str, str | None]:
    classes = [
        cls
        for module in (exceptions, crypto)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == module.__name__
    ]
    tree: dict[str, str | None] = {cls.__name__: cls.__bases__[0].__name__ for cls in classes}
    tree["CCSyncError"] = None
    tree[ImproperlyConfigured.__name__] = None
    return tree


def test_the_architecture_page_draws_the_exception_tree_the_code_defines():
    assert documented_tree() == real_tree()


def test_every_error_talking_to_cc_is_a_ccsyncerror_but_configuration_errors_are_not():
    assert issubclass(crypto.UnreadableTokens, exceptions.ReconnectRequired)
    assert issubclass(exceptions.ActivityQueueFull, exceptions.RetryLater)
    assert not issubclass(exceptions.CCSyncConfigurationError, exceptions.CCSyncError)
