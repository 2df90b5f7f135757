"""The cc_sync settings the rig runs with: production time scaled down (the fault suite), or production."""

from __future__ import annotations

from example_project.tuning import TUNABLE_SETTINGS

# Production settings with time scaled down. These, the sweeper interval and the visibility timeout are
# the only differences from a production deployment of the example project.
SCALED: dict[str, float] = {
    "CONNECT_TIMEOUT": 2.0,
    "READ_TIMEOUT": 2.0,
    "RETRY_BASE": 2.0,
    "RETRY_MAX": 8.0,
    "LEASE": 10.0,
    "REQUEUE_AFTER": 5.0,
    "MAX_COUNTDOWN": 10.0,
    "PUBLISH_TIMEOUT": 1.0,
    # The scenarios exercise the one-by-one path under faults (backlogs, quotas); surge mode would take their
    # queues in bulk. It has its own tests (tests/test_surge.py) and benchmark (bench/surge.py).
    "SURGE_IMPORT": 0.0,
}
PRODUCTION: dict[str, float] = {
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 20.0,
    "RETRY_BASE": 2.0,
    "RETRY_MAX": 600.0,
    "LEASE": 120.0,
    "REQUEUE_AFTER": 300.0,
    "MAX_COUNTDOWN": 300.0,
    "PUBLISH_TIMEOUT": 1.0,
    "SURGE_IMPORT": 1.0,
}
SWEEP_INTERVAL = 1.0
VISIBILITY_TIMEOUT = 30
# CC_SYNC keys the example project reads from CC_SYNC_<NAME> environment variables, and those only the
# rig's settings overlay reads (rig/worker_settings.py; importing it would load the settings).
EXTRA_KEYS = frozenset({"QUOTA_PROBE_INTERVAL"})
ENV_KEYS = frozenset(TUNABLE_SETTINGS) | EXTRA_KEYS
