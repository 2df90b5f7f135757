"""A local Constant Contact emulator for demos and test suites.

``with Sandbox() as sb: settings.CC_SYNC.update(sb.cc_sync_settings())`` points cc_sync at it. Run it
standalone with ``python -m cc_sync.sandbox`` or ``python manage.py cc_sync_sandbox``; in pytest, use
the ``cc_sandbox`` fixture from ``cc_sync.sandbox.pytest_plugin``.
"""

from .server import DEFAULT_ACCOUNT, DEFAULT_APP, DEFAULT_LISTS, DEFAULT_SCOPE, FAULTS, Sandbox

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_APP", "DEFAULT_LISTS", "DEFAULT_SCOPE", "FAULTS", "Sandbox"]
