"""The test rig: what cc_sync's own tests, the fault suite (``faults/``) and the benchmarks (``bench/``) share.

It is not part of the wheel. Imports run one way: ``tests/``, ``faults/`` and ``bench/`` import from here,
and nothing here imports from them. What a site's own tests may use is the shipped pytest plugin,
``cc_sync.sandbox.pytest_plugin``, not this package.

- :mod:`rig.constants`: the tokens, the list and CC's URLs as ``tests/settings.py`` configures them.
- :mod:`rig.cc`: a stored connection and CC's token answers, for unit tests; a connection to a sandbox account.
- :mod:`rig.sandbox`: requests to the sandbox's endpoints, for the sandbox's own tests.
- :mod:`rig.services`: is PostgreSQL, Redis or ``redis-server`` there (a skip, or an error under CI=true).
- :mod:`rig.brokers`: the in-memory Celery app unit tests publish to.
- :mod:`rig.waiting`: :func:`~rig.waiting.wait_until`, the one wait with a deadline.
- :mod:`rig.figures`: percentiles and the busiest window of a run.
- :mod:`rig.processes`: Celery workers and beat of the example project, as real processes.
- :mod:`rig.proctable`: what ``/proc`` says of those processes.
- :mod:`rig.redis_server`: an own ``redis-server`` that can be stopped, frozen and thawed.
- :mod:`rig.timing`: the cc_sync settings the rig runs with (time scaled down, or production).
- :mod:`rig.deployment`: :class:`~rig.deployment.Rig`, a whole deployment for one scenario or benchmark.
- :mod:`rig.database`: a scratch database for a run, and reading its signups.
- :mod:`rig.record`: what a run's report says about the machine and the command.
"""

from pathlib import Path

# The checkout: the working directory of the processes the rig starts, and their PYTHONPATH.
ROOT = Path(__file__).resolve().parent.parent
