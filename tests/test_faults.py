"""The fault suite in its quick sizes: every scenario of docs/reliability.md, with real processes.

Each scenario starts its own ``redis-server`` on a free port, the CC sandbox, and Celery worker and beat
processes of the example project on the test database, injects its faults and checks the outcome (see
``faults/scenarios/``, a module per scenario). ``python -m faults.run`` runs the full sizes and writes
docs/reliability.md.

Needs PostgreSQL and Redis on 127.0.0.1 (the ``services`` fixture) and the ``redis-server`` binary; without
them the tests are skipped with the reason printed, and under CI=true that is an error.
"""

from __future__ import annotations

import pytest

from faults import report, scenarios

pytestmark = [pytest.mark.services, pytest.mark.fault, pytest.mark.usefixtures("services")]


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_fault_scenario_passes_in_its_quick_size(name: str, rig_services: None) -> None:
    result = scenarios.run(name, quick=True)
    print(report.text_summary(result))
    assert result.passed, "\n".join(result.failures())
