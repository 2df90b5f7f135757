"""The example project's settings plus the cc_sync settings the rig tunes beyond the example's own list.

``example_project.tuning.TUNABLE_SETTINGS`` names the settings the example project reads from
``CC_SYNC_<NAME>`` environment variables; ``QUOTA_PROBE_INTERVAL`` (an hour in production) is not among
them, and the rate scenario needs it in seconds. Workers and beat run with this module only when a
scenario sets one of :data:`EXTRA_SETTINGS` (:data:`rig.timing.EXTRA_KEYS` names the same).
"""

import os

from example_project.settings import *  # noqa: F403

EXTRA_SETTINGS = ("QUOTA_PROBE_INTERVAL",)

for _name in EXTRA_SETTINGS:
    if os.environ.get(f"CC_SYNC_{_name}"):
        CC_SYNC[_name] = float(os.environ[f"CC_SYNC_{_name}"])  # noqa: F405
