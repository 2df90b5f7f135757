"""The fault scenarios, a module each. Each injects faults into a running rig, waits for the outcome and
checks it.

A scenario is a function ``(rig, quick, result)`` that fills ``result`` with what it injected, the figures
it observed and the checks it made (:mod:`faults.scenarios.checks` has what they share); :func:`run` gives
it a fresh :class:`~rig.deployment.Rig`. ``quick`` picks the smaller sizes that CI runs; the shape of every
scenario is the same in both sizes.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from rig.deployment import Rig

from .bad_bodies import bad_bodies
from .checks import Result, exit_note
from .lost_write import lost_write
from .no_loss import no_loss
from .one_refresh import one_refresh
from .rate_compliance import rate_compliance
from .surge import surge
from .visitor_never_waits import visitor_never_waits

__all__ = ["SCENARIOS", "Result", "run"]


SCENARIOS: dict[str, tuple[Callable[[Rig, bool, Result], None], str, str]] = {
    "no_loss": (no_loss, "No loss, no duplicate", "G1"),
    "one_refresh": (one_refresh, "One refresh", "G2"),
    "lost_write": (lost_write, "Lost write", "G3"),
    "visitor_never_waits": (visitor_never_waits, "The visitor never waits", "G4"),
    "rate_compliance": (rate_compliance, "Rate compliance", "G5"),
    "bad_bodies": (bad_bodies, "Bad bodies and permanent errors", "G7, G8"),
    "surge": (surge, "Surge mode: no loss, no second import, no overwrite", "G1"),
}


def run(name: str, quick: bool = False, seed: int = 20240601, keep: bool = False) -> Result:
    """Run one scenario on a fresh rig and return its result (a crash is a failed check, not an exception)."""
    function, title, goal = SCENARIOS[name]
    result = Result(name=name, title=title, goal=goal, quick=quick)
    started = time.monotonic()
    rig = Rig(name, seed=seed, keep=keep)
    try:
        with rig:
            try:
                function(rig, quick, result)
            finally:
                if rig.sandbox is not None:
                    result.settings = rig.settings_record()
                if rig.unexpected_exits:
                    exit_note(rig, result)
            rig.failed = not result.passed
    except Exception:
        result.check("the scenario ran to the end", False, traceback.format_exc(limit=6))
    result.duration = time.monotonic() - started
    return result
