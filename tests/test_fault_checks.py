"""The fault suite's own accounting: what it counts as explained must still let a real duplicate fail."""

from __future__ import annotations

from faults.scenarios.no_loss import interrupted_attempts


def entry(time: float, method: str = "POST", status: int = 201) -> dict:
    return {
        "time": time,
        "kind": "api",
        "method": method,
        "path": "/v3/contacts",
        "status": status,
        "fault": None,
    }


def test_a_create_cut_short_by_a_disruption_before_its_lookup_is_explained():
    # The 409 at 13 was not followed by its lookup: the task was cancelled when the broker went at 14.
    entries = [entry(10, status=201), entry(13, status=409), entry(38, status=409), entry(38.2, "GET", 200)]
    assert interrupted_attempts(entries, disruptions=[14.0]) == 1


def test_a_second_create_without_a_disruption_in_between_is_not_explained():
    entries = [entry(10, status=409), entry(38, status=409), entry(38.2, "GET", 200)]
    assert interrupted_attempts(entries, disruptions=[50.0]) == 0


def test_an_attempt_that_got_its_valid_answer_before_the_disruption_is_not_explained():
    # The lookup answered before the outage: a further create after it is a duplicate, not a loss.
    entries = [entry(10, status=409), entry(10.2, "GET", 200), entry(38, status=409), entry(38.2, "GET", 200)]
    assert interrupted_attempts(entries, disruptions=[14.0]) == 0
