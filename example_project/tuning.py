"""The cc_sync settings the example project reads from ``CC_SYNC_<NAME>`` environment variables.

Timing, rate and surge-mode knobs only: scaled-down test, fault and benchmark runs set them; production leaves
them.
"""

TUNABLE_SETTINGS = (
    "API_RATE",
    "TOKEN_RATE",
    "DAILY_LIMIT",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "TOKEN_LEEWAY",
    "RETRY_BASE",
    "RETRY_MAX",
    "DEADLINE",
    "LEASE",
    "MAX_COUNTDOWN",
    "REQUEUE_AFTER",
    "PUBLISH_TIMEOUT",
    "SURGE_THRESHOLD",
    # 0 turns surge mode off (read as a number like the others): the fault suite measures the one-by-one path.
    "SURGE_IMPORT",
)
