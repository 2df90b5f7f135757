"""The worker's side: what one synced signup costs in SQL, the pacing that keeps CC's per-second limit, and
a worker's log (each line once).

The time-dependent tests pin the clock (``time.time``, ``time.sleep`` and ``timezone.now``); none of them
measures a duration. The log test runs a real Celery worker (``services``: PostgreSQL and Redis).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cc_sync import ratelimit, sync
from cc_sync.client import ConstantContactClient
from cc_sync.conf import app_settings
from cc_sync.db import update_returning
from cc_sync.exceptions import Throttled
from cc_sync.models import RateLimitState, Signup
from rig import ROOT
from rig.cc import make_connection
from rig.constants import API_URL, CONTACTS_URL, LIST_ID
from rig.processes import example_env, stop, worker_command
from rig.waiting import wait_until

MOMENT = datetime(2028, 2, 29, 10, 0, tzinfo=dt_timezone.utc)
THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}
# The worker path of a new address: claim, suppression check, connection row (lists and token), rate-limit
# slot, outcome. Issue 15's goal is at most 5 (it was 9 and more).
MOST_STATEMENTS_PER_SYNCED_SIGNUP = 5


class Clock:
    """A pinned wall clock that moves only when told to, or when code sleeps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime = MOMENT) -> None:
        self.now = start.timestamp()
        self.slept: list[float] = []
        monkeypatch.setattr(time, "time", lambda: self.now)
        monkeypatch.setattr(time, "sleep", self.sleep)
        monkeypatch.setattr(timezone, "now", lambda: datetime.fromtimestamp(self.now, tz=dt_timezone.utc))

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def new_signup(email: str) -> Signup:
    return Signup.objects.create(
        email=email, next_attempt_at=timezone.now(), consent_given_at=timezone.now(), list_ids=[LIST_ID]
    )


def create_answer(cc_api: Any, contact_id: str) -> None:
    cc_api.post(CONTACTS_URL, status=201, json={"contact_id": contact_id})


@pytest.mark.django_db(transaction=True)
def test_a_synced_signup_costs_at_most_five_sql_statements(cc_api, monkeypatch):
    Clock(monkeypatch)
    make_connection()
    # The first request of the day opens the day's row under its lock; the count is of the usual signup.
    first, second = new_signup("first@example.com"), new_signup("second@example.com")
    create_answer(cc_api, "c-1")
    sync.process_signup(first.pk)
    create_answer(cc_api, "c-2")
    with CaptureQueriesContext(db_connection) as queries:
        sync.process_signup(second.pk)
    second.refresh_from_db()
    assert (second.status, second.contact_id, second.attempts) == (Signup.Status.SYNCED, "c-2", 1)
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) <= MOST_STATEMENTS_PER_SYNCED_SIGNUP, "\n".join(statements)


@pytest.mark.django_db(transaction=True)
def test_the_claim_returns_the_row_as_claimed_and_a_second_claim_gets_nothing(monkeypatch):
    Clock(monkeypatch)
    signup = Signup.objects.create(
        email="anna@example.com",
        next_attempt_at=timezone.now(),
        consent_given_at=timezone.now(),
        list_ids=[LIST_ID],
        custom_fields=[{"name": "colour", "value": "blue"}],
        street_address={"city": "Köln"},
    )
    claimed = sync.claim(signup.pk)
    assert claimed is not None
    stored = Signup.objects.get(pk=signup.pk)
    for field in Signup._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert (claimed.status, claimed.attempts) == (Signup.Status.SYNCING, 1)
    assert claimed.list_ids == [LIST_ID] and claimed.street_address == {"city": "Köln"}
    assert sync.claim(signup.pk) is None  # a duplicate delivery


@pytest.mark.django_db(transaction=True)
def test_update_returning_gives_nothing_when_no_row_matches():
    assert update_returning(RateLimitState.objects.filter(name="none"), day_count=1) == []


@pytest.mark.django_db(transaction=True)
def test_consecutive_slots_are_spaced_so_no_second_holds_more_than_the_rate(monkeypatch):
    clock = Clock(monkeypatch)
    slots = []
    for _ in range(9):
        ratelimit.wait_for_slot("api", 4.0)
        slots.append(clock.now)
    spacing = ratelimit.SPACING_MARGIN / 4.0
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert gaps == pytest.approx([spacing] * 8, abs=1e-6)
    # Any 4 consecutive slots span more than a second, by the margin that covers the way to CC ...
    assert 4 * spacing - 1.0 == pytest.approx(ratelimit.SPACING_MARGIN - 1.0)
    # ... and the drain reaches at least 95 % of CC's limit.
    assert 1.0 / ratelimit.SPACING_MARGIN >= 0.95


@pytest.mark.django_db(transaction=True)
def test_a_request_that_wakes_too_late_for_its_slot_takes_a_later_one(monkeypatch):
    clock = Clock(monkeypatch)
    oversleep = [0.2]  # the first wake-up comes 200 ms after the slot (a busy host); the next on time

    def sleep(seconds: float) -> None:
        clock.now += seconds + (oversleep.pop() if oversleep else 0.0)

    monkeypatch.setattr(time, "sleep", sleep)
    ratelimit.wait_for_slot("api", 4.0)  # the first slot is now; it is kept
    ratelimit.wait_for_slot("api", 4.0)
    spacing = ratelimit.SPACING_MARGIN / 4.0
    # The late wake-up gave its slot up: the request left in the one after it, on time.
    assert clock.now == pytest.approx(MOMENT.timestamp() + 2 * spacing, abs=1e-6)
    assert ratelimit.requests_today("api") == 2  # the slot given up is not counted against the daily budget


@pytest.mark.django_db(transaction=True)
def test_a_host_too_busy_for_any_slot_still_sends_and_its_429_is_not_taken_for_the_quota(monkeypatch):
    clock = Clock(monkeypatch)

    def busy_host() -> float:  # every look at the clock finds it 0.3 s on
        clock.now += 0.3
        return clock.now

    monkeypatch.setattr(time, "time", busy_host)
    reservations = []
    reserve = ratelimit.reserve
    monkeypatch.setattr(
        ratelimit, "reserve", lambda *args, **kw: reservations.append(kw) or reserve(*args, **kw)
    )
    ratelimit.wait_for_slot("api", 4.0)
    assert len(reservations) == ratelimit.LATE_RESERVATIONS + 1  # every slot passed: then it is sent
    # ... in a slot followed by a second nobody else gets, so however late it left (up to that second), the
    # request `rate` slots on cannot meet it inside one sliding second.
    assert [kw["headroom"] for kw in reservations] == [0.0] * ratelimit.LATE_RESERVATIONS + [
        ratelimit.LATE_HEADROOM
    ]
    assert ratelimit.requests_today("api") == 1  # one request, however many slots it gave up
    assert ratelimit.record_429("throttled") is None
    assert RateLimitState.objects.get(name="api").quota_429s == 0


@pytest.mark.django_db(transaction=True)
def test_a_throttled_request_is_sent_again_in_a_later_slot_after_a_back_off(cc_api, monkeypatch):
    clock = Clock(monkeypatch)
    url = f"{API_URL}/account/summary"
    cc_api.get(url, status=429, json=THROTTLED)
    cc_api.get(url, json={"organization_name": "Acme"})
    assert ConstantContactClient().account_summary("tok") == {"organization_name": "Acme"}
    # The resend waited for the back-off: nobody's slot came sooner than a second after the 429.
    assert clock.now == pytest.approx(MOMENT.timestamp() + ratelimit.THROTTLE_BACKOFF, abs=1e-6)
    state = RateLimitState.objects.get(name="api")
    assert state.quota_429s == 0  # the accepted resend ended the streak
    assert state.next_slot == pytest.approx(
        clock.now + ratelimit.spacing("api", app_settings.API_RATE), abs=1e-6
    )


@pytest.mark.django_db(transaction=True)
def test_a_signup_throttled_once_is_synced_in_the_same_attempt(cc_api, monkeypatch):
    Clock(monkeypatch)
    make_connection()
    signup = new_signup("anna@example.com")
    cc_api.post(CONTACTS_URL, status=429, json=THROTTLED)
    create_answer(cc_api, "c-1")
    sync.process_signup(signup.pk)
    signup.refresh_from_db()
    assert (signup.status, signup.attempts, signup.last_error) == (Signup.Status.SYNCED, 1, "")


@pytest.mark.django_db(transaction=True)
def test_a_request_throttled_twice_in_a_row_is_left_to_the_signups_retry(cc_api, monkeypatch):
    Clock(monkeypatch)
    url = f"{API_URL}/account/summary"
    cc_api.get(url, status=429, json=THROTTLED)
    cc_api.get(url, status=429, json=THROTTLED)
    with pytest.raises(Throttled):
        ConstantContactClient().account_summary("tok")
    assert RateLimitState.objects.get(name="api").quota_429s == 2


# -- logs: each line once, also in a Celery worker ---------------------------------------------------------


def documented_logging() -> dict[str, Any]:
    """The ``LOGGING`` example of docs/operations.md ("Log records"), as the page shows it."""
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = page[page.index("To see cc_sync's INFO records") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace["LOGGING"]


@pytest.mark.services
@pytest.mark.usefixtures("services")
@pytest.mark.parametrize("logging_from", ["example project", "docs/operations.md"])
def test_a_celery_worker_prints_each_cc_sync_line_once(
    logging_from, transactional_db, redis_broker, tmp_path, cc_settings
):
    from cc_sync import privacy, tasks
    from cc_sync.sandbox import Sandbox

    email = "erased@example.com"
    privacy.suppress(email)  # the worker fails the signup at once and says so: nothing reaches CC
    signup = new_signup(email)
    with Sandbox() as sandbox:
        # The same key as this process, so that the worker finds the suppressed address by its hash.
        env = example_env(sandbox, CC_SYNC_LOG_LEVEL="INFO", SECRET_KEY=django_settings.SECRET_KEY)
        if logging_from != "example project":
            env.update(
                DJANGO_SETTINGS_MODULE="tests.logging_settings",
                CC_SYNC_TEST_LOGGING=json.dumps(documented_logging()),
            )
        log_path = tmp_path / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [*worker_command("logs", 1), "--loglevel=INFO"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            tasks.sync_signup.delay(signup.pk)
            wait_until(
                lambda: Signup.objects.filter(pk=signup.pk, status=Signup.Status.FAILED).exists(),
                timeout=60,
                what="the worker to fail the suppressed signup",
            )
        finally:
            stop(worker)
    line = f"Signup {signup.pk} failed: This email is on the suppression list."
    output = log_path.read_text(encoding="utf-8", errors="replace")
    assert output.count(line) == 1, output[-3000:]


@pytest.mark.django_db(transaction=True)
def test_the_last_request_of_the_daily_budget_keeps_its_place_when_it_wakes_late(monkeypatch, cc_settings):
    clock = Clock(monkeypatch)
    oversleep = [0.2]

    def sleep(seconds: float) -> None:
        clock.now += seconds + (oversleep.pop() if oversleep else 0.0)

    monkeypatch.setattr(time, "sleep", sleep)
    RateLimitState.objects.create(name="api", day=MOMENT.date(), day_count=9, next_slot=clock.now + 0.1)
    ratelimit.wait_for_slot("api", 4.0, daily_limit=10)  # the 10th: late, re-slotted, not refused
    assert ratelimit.requests_today("api") == 10


@pytest.mark.django_db(transaction=True)
def test_without_update_returning_the_claim_and_the_slot_take_the_long_way(cc_api, monkeypatch):
    # MySQL and MariaDB cannot return columns from an UPDATE: update_returning() says so with None.
    Clock(monkeypatch)
    make_connection()
    monkeypatch.setattr(sync, "update_returning", lambda queryset, **values: None)
    monkeypatch.setattr(ratelimit, "update_returning", lambda queryset, **values: None)
    signup = new_signup("anna@example.com")
    create_answer(cc_api, "c-1")
    sync.process_signup(signup.pk)
    signup.refresh_from_db()
    assert (signup.status, signup.contact_id, signup.attempts) == (Signup.Status.SYNCED, "c-1", 1)
    assert sync.claim(signup.pk) is None
    assert ratelimit.requests_today("api") == 1
