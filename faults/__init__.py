"""The fault suite: cc_sync against real PostgreSQL, Redis, Celery workers and the CC sandbox, under faults.

``python -m faults.run [--quick] [--only NAME]`` runs the scenarios of :mod:`faults.scenarios` (a module
each) on the rig of :mod:`rig.deployment` and writes ``docs/reliability.md``; ``tests/test_faults.py`` runs
every scenario in its quick size. The code under test is the production code; only settings (timeouts,
backoff, lease, sweeper interval, visibility timeout) are scaled down so that each scenario takes minutes.
"""
