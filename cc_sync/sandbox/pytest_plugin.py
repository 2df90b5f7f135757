"""pytest fixtures for testing against the Constant Contact sandbox.

Enable with ``pytest_plugins = ["cc_sync.sandbox.pytest_plugin"]`` in your root ``conftest.py``.

* ``cc_sandbox`` - a started :class:`~cc_sync.sandbox.Sandbox` on a free port, stopped after the test.
* ``cc_sandbox_factory`` - ``make(**config)`` starting sandboxes with custom settings, all stopped after.
* ``cc_sandbox_settings`` - ``cc_sandbox`` with pytest-django's ``settings.CC_SYNC`` pointed at it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cc_sync.sandbox import Sandbox


@pytest.fixture
def cc_sandbox_factory() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with custom settings, e.g. ``cc_sandbox_factory(flow="device")``."""
    started: list[Sandbox] = []

    def make(**config: Any) -> Sandbox:
        sandbox = Sandbox(**config).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def cc_sandbox() -> Iterator[Sandbox]:
    """A started sandbox with default settings on a free port."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def cc_sandbox_settings(cc_sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """``cc_sandbox`` with ``settings.CC_SYNC`` (pytest-django) updated to use it; yields the sandbox."""
    try:
        settings = request.getfixturevalue("settings")
    except pytest.FixtureLookupError:
        pytest.fail("cc_sandbox_settings needs pytest-django's `settings` fixture (install pytest-django).")
    settings.CC_SYNC = {**getattr(settings, "CC_SYNC", {}), **cc_sandbox.cc_sync_settings()}
    yield cc_sandbox
