"""The example project's settings with the ``LOGGING`` dict given as JSON in ``CC_SYNC_TEST_LOGGING``.

For the worker processes of ``tests/test_worker.py``, which run the configuration docs/operations.md shows.
"""

import json
import os

from example_project.settings import *  # noqa: F403

LOGGING = json.loads(os.environ["CC_SYNC_TEST_LOGGING"])
