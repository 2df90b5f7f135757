"""Is a real service there? Without it a test is skipped with the reason, except under CI (``CI=true``).

In CI a missing service is an error: the service tests must run there.
"""

from __future__ import annotations

import os
import shutil
import socket

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
# Service tests empty this Redis database; CC_SYNC_TEST_REDIS_DB picks another to run suites side by side.
REDIS_TEST_URL = f"redis://127.0.0.1:6379/{os.environ.get('CC_SYNC_TEST_REDIS_DB', '15')}"


def reachable(host: str, port: int) -> bool:
    """Does something accept TCP connections on ``host:port`` (within half a second)?"""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def missing(message: str, hint: str) -> None:
    """Skip with the reason printed, or fail under CI, where service tests must run."""
    import pytest  # here, not above: tests/settings.py reads this module outside pytest too (checks, mypy)

    if IN_CI:
        pytest.fail(f"{message}, and CI=true: service tests must run in CI.", pytrace=False)
    pytest.skip(f"{message}; {hint}.")


def require_service(name: str, available: bool) -> None:
    """Skip (or fail under CI) when a real service the test needs is not there."""
    if not available:
        missing(f"{name} is not reachable on 127.0.0.1", "start it to run this test")


def require_redis_server() -> None:
    """The fault suite and the benchmarks start Redis servers of their own."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not on the PATH", "install it to run the fault suite and the benchmarks")
