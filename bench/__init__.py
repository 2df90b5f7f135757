"""Benchmarks: cc_sync against the alternatives, with ratios measured side by side in one run.

``python -m bench.run [--quick] [--only NAME[,NAME...]]`` runs them on the rig of :mod:`rig.deployment`
(an own Redis, the CC sandbox, real Celery workers of the example project, PostgreSQL) and the full run
writes ``docs/benchmarks.md``. ``tests/test_bench.py`` runs each in its quick size and checks only that it
ran and produced sane figures; timing goals are never asserted (absolute times drift on a shared machine).

Each benchmark module has ``run(quick: bool) -> dict`` with the keys ``title``, ``markdown`` and
``figures`` (plus ``goal`` and ``verdict`` where it has a goal).
"""
