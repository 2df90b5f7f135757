"""Surge mode: a long queue goes to CC in bulk imports, crash-safe and contact-safe (cc_sync.surge).

Time is pinned (Django's clock, ``time.time`` and the sandbox's clock move only when a test says so). The
sandbox's request log is the witness of what reached CC and how often.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.utils import timezone

from cc_sync import backfill, privacy, surge
from cc_sync.models import Connection, RateLimitState, Signup, SurgeBatch
from cc_sync.sandbox import DEFAULT_LISTS, Sandbox
from rig.cc import make_connection

S = Signup.Status
LIST_ID = DEFAULT_LISTS[0]["list_id"]
OTHER_LIST = DEFAULT_LISTS[1]["list_id"]
IMPORT_PATH = "/v3/activities/contacts_json_import"
PINNED = datetime(2028, 2, 29, 10, 0, tzinfo=dt_timezone.utc)


class Clock:
    """One pinned clock for Django, ``time.time`` and the sandbox; ``advance`` is the only way it moves."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    pinned = Clock(PINNED)
    monkeypatch.setattr(timezone, "now", lambda: pinned.now)
    monkeypatch.setattr(time, "time", pinned.timestamp)
    surge.forget()
    yield pinned
    surge.forget()


@pytest.fixture
def sandbox(clock: Clock):
    with Sandbox(api_rate=None, token_rate=None, import_polls=2, clock=clock.timestamp) as started:
        yield started


@pytest.fixture
def connected(db, sandbox: Sandbox, cc_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    cc_settings.update(sandbox.cc_sync_settings())
    cc_settings.update(LIST_IDS=[LIST_ID], SURGE_THRESHOLD=3)
    tokens = sandbox.issue_tokens()
    make_connection(access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    monkeypatch.setattr(backfill, "RETRY_BASE", 0.0)
    return sandbox


def add(count: int, start: int = 1, **fields: Any) -> list[Signup]:
    """Due signups ``person<n>@example.com`` with names, as a stranger's form would store them."""
    made = []
    for n in range(start, start + count):
        values = {
            "email": f"person{n}@example.com",
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "next_attempt_at": timezone.now(),
            "consent_given_at": timezone.now(),
            "consent_text": "Yes, send me email updates.",
            **fields,
        }
        made.append(Signup.objects.create(**values))
    return made


def imports(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [e for e in sandbox.requests() if e["method"] == "POST" and e["path"] == IMPORT_PATH]


def run_surge(django_capture_on_commit_callbacks: Any) -> int:
    with django_capture_on_commit_callbacks(execute=True):
        return surge.run(poll_interval=0, sleep=lambda seconds: None)


def statuses() -> dict[str, str]:
    return dict(Signup.objects.values_list("email", "status"))


# -- the decision ----------------------------------------------------------------------------------


def test_a_backlog_over_the_threshold_turns_surge_mode_on_and_steady_traffic_stays_one_by_one(
    db, clock, cc_settings
):
    cc_settings["SURGE_THRESHOLD"] = 3
    add(3)
    assert surge.decide() is False
    add(1, start=4)
    assert surge.decide() is True
    cc_settings["SURGE_IMPORT"] = False
    assert surge.decide() is False


def test_the_default_threshold_is_a_minute_of_sending_at_the_api_rate(cc_settings):
    cc_settings["API_RATE"] = 4.0
    assert surge.threshold() == 240
    cc_settings["SURGE_THRESHOLD"] = 1000
    assert surge.threshold() == 1000


def test_a_backlog_the_days_remaining_budget_cannot_cover_turns_surge_mode_on(db, clock, cc_settings):
    cc_settings.update(SURGE_THRESHOLD=100, DAILY_LIMIT=10)
    RateLimitState.objects.create(name="api", day=PINNED.date(), day_count=8)
    add(2)
    assert surge.decide() is False  # 2 left today, 2 due
    add(1, start=3)
    assert surge.decide() is True
    clock.advance(24 * 3600)  # a new day: the budget is whole again
    assert surge.decide() is False


def test_each_application_s_backlog_is_weighed_against_its_own_day_s_budget(db, clock, cc_settings):
    cc_settings.update(SURGE_THRESHOLD=100, DAILY_LIMIT=10)
    shop = Connection.objects.create(slug="shop", client_id="shop-id", client_secret="shop-secret")
    RateLimitState.objects.create(name=shop.budget("api"), day=PINNED.date(), day_count=9)
    add(5)  # the default connection: 10 requests left today
    assert surge.decide() is False
    add(1, start=6, connection=shop)  # the shop's application: 1 left, 1 due
    assert surge.decide() is False
    add(1, start=7, connection=shop)
    assert surge.decide() is True
    # Counted together, the 7 would fit in the settings' application's 10.
    Signup.objects.filter(connection=shop).update(connection=None)
    assert surge.decide() is False


def test_signups_that_need_sign_up_form_or_are_held_are_never_taken_in_bulk(db, clock, cc_settings):
    cc_settings["SURGE_THRESHOLD"] = 0
    plain = add(1)[0]
    confirmed = add(1, start=2, confirmed_at=timezone.now())[0]
    add(1, start=3, verified=True, custom_fields=[{"name": "shoe", "value": "42"}])
    add(1, start=4, status=S.AWAITING_CONFIRMATION)
    add(1, start=5, status=S.WAITING_LIST)
    add(1, start=6, status=S.WAITING_RECONNECT)
    add(1, start=7, next_attempt_at=timezone.now() + timedelta(minutes=5))
    verified = add(1, start=8, verified=True)[0]

    taken = {pk for batch in surge.claim_batches() for pk in batch.signup_ids}

    assert taken == {plain.pk, verified.pk}
    assert Signup.objects.get(pk=confirmed.pk).status == S.PENDING
    Signup.objects.filter(pk__in=taken).update(status=S.PENDING, surge_batch=None)
    cc_settings["DOUBLE_OPT_IN"] = True
    assert {pk for b in surge.claim_batches() for pk in b.signup_ids} == {verified.pk}
    cc_settings["CONFIRMED_OPT_IN_AT_CC"] = True
    assert surge.enabled() is False and surge.decide() is False


# -- batches ---------------------------------------------------------------------------------------


def test_batches_keep_within_cc_limits_and_one_list_set_each(db, clock, cc_settings, monkeypatch):
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 2)
    add(5)
    add(1, start=6, list_ids=[OTHER_LIST])

    batches = surge.claim_batches()

    assert [len(b.signup_ids) for b in batches] == [2, 2, 1, 1]
    assert [b.list_ids for b in batches] == [[LIST_ID]] * 3 + [[OTHER_LIST]]
    for batch in batches:
        assert set(Signup.objects.filter(surge_batch=batch).values_list("pk", flat=True)) == set(
            batch.signup_ids
        )
        body = backfill.request_body(
            [surge.contact_for(Signup.objects.get(pk=pk)) for pk in batch.signup_ids], batch.list_ids
        )
        assert len(body) < backfill.MAX_BYTES
    assert set(Signup.objects.values_list("status", flat=True)) == {S.SYNCING}


def test_a_batch_is_cut_before_it_reaches_four_megabytes(db, clock, monkeypatch):
    add(4)
    one = len(b'{"email": "person1@example.com"}')
    base = len(backfill.request_body([], [LIST_ID]))
    monkeypatch.setattr(backfill, "MAX_BYTES", base + 2 * one + 4)

    assert [len(b.signup_ids) for b in surge.claim_batches()] == [2, 2]


def test_two_workers_never_claim_the_same_signups(db, clock):
    add(3)
    first, second = surge.claim_batches(), surge.claim_batches()
    assert [len(b.signup_ids) for b in first] == [3]
    assert second == []
    assert surge.take_unfinished() == []  # the first worker holds its batch


# -- end to end against the sandbox ----------------------------------------------------------------


def test_a_surge_reaches_the_list_in_one_import_and_steady_traffic_stays_one_by_one(
    connected, django_capture_on_commit_callbacks
):
    add(10)

    assert run_surge(django_capture_on_commit_callbacks) == 1

    assert set(statuses().values()) == {S.SYNCED}
    assert len(imports(connected)) == 1 and imports(connected)[0]["detail"] == "10 contacts"
    assert len(connected.requests()) == 3  # the import and two polls (import_polls=2)
    contacts = connected.contacts()
    assert sorted(c["email_address"] for c in contacts) == sorted(statuses())
    assert all(c["list_memberships"] == [LIST_ID] for c in contacts)
    # CC's import gives new contacts implicit permission; the consent record stays on each signup.
    assert {c["permission_to_send"] for c in contacts} == {"implicit"}
    assert all(s.consent_text and s.consent_given_at for s in Signup.objects.all())
    batch = SurgeBatch.objects.get()
    assert batch.status == SurgeBatch.Status.COMPLETED and batch.state == "completed"


def test_a_worker_steps_aside_for_a_signup_the_surge_takes(connected, published, run):
    signups = add(4)

    signup = run(signups[0])

    assert signup.status == S.PENDING and signup.attempts == 0
    assert connected.requests() == []
    assert [call["task"] for call in published] == []  # the import task goes through its own publish


def test_the_sweeper_queues_the_import_once_for_a_long_queue(
    connected, monkeypatch, django_capture_on_commit_callbacks
):
    from cc_sync import tasks

    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.import_surge, "apply_async", lambda **options: queued.append(options))
    add(4)
    with django_capture_on_commit_callbacks(execute=True):
        assert surge.check_backlog() is True
        assert surge.active() is True
        assert surge.diverts(Signup.objects.first().pk) is True
    assert len(queued) == 1


def test_signups_arriving_after_the_surge_are_left_to_the_one_by_one_path(
    connected, django_capture_on_commit_callbacks, monkeypatch
):
    add(4)
    poll = surge.Surge.poll

    def poll_while_one_more_arrives(self, batch):
        if not Signup.objects.filter(email="late@example.com").exists():
            Signup.objects.create(email="late@example.com", next_attempt_at=timezone.now())
        return poll(self, batch)

    monkeypatch.setattr(surge.Surge, "poll", poll_while_one_more_arrives)

    assert run_surge(django_capture_on_commit_callbacks) == 1

    assert statuses().pop("late@example.com") == S.PENDING  # 1 due is below the threshold: not imported
    assert len(imports(connected)) == 1


def test_a_batch_left_unfinished_is_resumed_even_with_surge_mode_switched_off(
    db, clock, cc_settings, monkeypatch, django_capture_on_commit_callbacks
):
    from cc_sync import tasks

    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.import_surge, "apply_async", lambda **options: queued.append(options))
    add(2)
    surge.claim_batches()
    cc_settings["SURGE_IMPORT"] = False
    with django_capture_on_commit_callbacks(execute=True):
        assert surge.check_backlog() is False  # the first worker still holds it
        clock.advance(121)
        assert surge.check_backlog() is True
    assert len(queued) == 1


# -- contact safety --------------------------------------------------------------------------------


def test_an_existing_contacts_names_are_untouched_and_only_lists_are_added(
    connected, django_capture_on_commit_callbacks
):
    connected.add_contact("person1@example.com", first_name="Anna", last_name="Original")
    add(4)  # person1's signup carries the stranger's names First1 Last1

    run_surge(django_capture_on_commit_callbacks)

    anna = next(c for c in connected.contacts() if c["email_address"] == "person1@example.com")
    assert (anna["first_name"], anna["last_name"]) == ("Anna", "Original")
    assert anna["permission_to_send"] == "explicit" and anna["list_memberships"] == [LIST_ID]
    # The trade-off: a new contact is created without the names its stranger's signup carried.
    new = next(c for c in connected.contacts() if c["email_address"] == "person2@example.com")
    assert new.get("first_name") in (None, "")
    assert set(statuses().values()) == {S.SYNCED}


def test_a_verified_signup_sends_its_details(connected, django_capture_on_commit_callbacks):
    connected.add_contact("person1@example.com", first_name="Old", last_name="Name")
    add(1, verified=True, phone_number="555-0100", street_address={"kind": "work", "city": "Ghent"})
    add(3, start=2)

    run_surge(django_capture_on_commit_callbacks)

    person = next(c for c in connected.contacts() if c["email_address"] == "person1@example.com")
    assert (person["first_name"], person["last_name"]) == ("First1", "Last1")
    assert (
        person["street_addresses"][0]["kind"] == "work" and person["street_addresses"][0]["city"] == "Ghent"
    )


def test_an_unsubscribed_contact_is_not_resubscribed_and_its_signup_goes_one_by_one(
    connected, published, django_capture_on_commit_callbacks
):
    connected.add_contact("person2@example.com", permission_to_send="unsubscribed")
    add(4)

    run_surge(django_capture_on_commit_callbacks)

    gone = next(c for c in connected.contacts() if c["email_address"] == "person2@example.com")
    assert gone["permission_to_send"] == "unsubscribed" and gone["list_memberships"] == []
    assert statuses() == {
        "person1@example.com": S.SYNCED,
        "person2@example.com": S.PENDING,  # the one-by-one path: a lookup, then the confirmation email
        "person3@example.com": S.SYNCED,
        "person4@example.com": S.SYNCED,
    }
    back = Signup.objects.get(email="person2@example.com")
    assert back.surge_batch_id is not None  # never taken in bulk again
    assert surge.claim_batches() == []
    assert [call["args"] for call in published] == [(back.pk,)]
    assert SurgeBatch.objects.get().cannot_add_to_list_count == 1
    paths = [(e["method"], e["path"]) for e in connected.requests()]
    assert paths.count(("GET", "/v3/contacts")) == 1  # one page of the account's unsubscribed contacts


def test_the_unsubscribed_are_found_across_pages_of_the_accounts_unsubscribed_contacts(
    connected, published, django_capture_on_commit_callbacks, monkeypatch
):
    for n in range(3):
        connected.add_contact(f"someone{n}@example.com", permission_to_send="unsubscribed")
    connected.add_contact("person4@example.com", permission_to_send="unsubscribed")
    add(4)
    monkeypatch.setattr(surge, "UNSUBSCRIBED_PAGE_SIZE", 2)

    run_surge(django_capture_on_commit_callbacks)

    assert statuses()["person4@example.com"] == S.PENDING
    assert {statuses()[f"person{n}@example.com"] for n in (1, 2, 3)} == {S.SYNCED}
    paths = [(e["method"], e["path"]) for e in connected.requests()]
    assert paths.count(("GET", "/v3/contacts")) == 2  # stopped at the page that held the one CC counted


def test_when_the_unsubscribed_cannot_be_found_no_signup_of_the_batch_counts_as_synced(
    connected, published, django_capture_on_commit_callbacks, monkeypatch
):
    connected.add_contact("person2@example.com", permission_to_send="unsubscribed")
    add(4)
    monkeypatch.setattr(surge, "UNSUBSCRIBED_PAGE_SIZE", 1)
    monkeypatch.setattr(surge, "UNSUBSCRIBED_PAGES", 0)

    run_surge(django_capture_on_commit_callbacks)

    assert set(statuses().values()) == {S.PENDING}
    assert len(published) == 4


def test_a_suppressed_address_never_reaches_cc(connected, django_capture_on_commit_callbacks):
    add(4)
    privacy.suppress("person3@example.com")

    run_surge(django_capture_on_commit_callbacks)

    assert imports(connected)[0]["detail"] == "3 contacts"
    assert "person3@example.com" not in {c["email_address"] for c in connected.contacts()}
    signup = Signup.objects.get(email="person3@example.com")
    assert (signup.status, signup.last_error_key) == (S.FAILED, "suppressed")


def test_per_contact_errors_fail_exactly_their_signups(connected, django_capture_on_commit_callbacks):
    add(4)
    Signup.objects.filter(email="person3@example.com").update(email="person3@localhost")

    run_surge(django_capture_on_commit_callbacks)

    assert statuses() == {
        "person1@example.com": S.SYNCED,
        "person2@example.com": S.SYNCED,
        "person3@localhost": S.FAILED,
        "person4@example.com": S.SYNCED,
    }
    failed = Signup.objects.get(status=S.FAILED)
    assert failed.last_error_key == "import_error" and "Invalid email address" in failed.last_error


def test_an_error_cc_ties_to_no_contact_sends_the_whole_batch_one_by_one(
    connected, published, django_capture_on_commit_callbacks, monkeypatch
):
    add(4)
    answer = {"state": "completed", "activity_errors": ["Something went wrong."], "status": {}}
    real_call = surge.Surge._call
    monkeypatch.setattr(
        surge.Surge,
        "_call",
        lambda self, batch, method, *args: (
            answer if method == "activity" else real_call(self, batch, method, *args)
        ),
    )

    run_surge(django_capture_on_commit_callbacks)

    assert set(statuses().values()) == {S.PENDING}
    assert len(published) == 4
    assert SurgeBatch.objects.get().errors == [{"index": None, "message": "Something went wrong."}]


# -- crash safety ------------------------------------------------------------------------------------


def test_a_worker_killed_after_cc_took_the_import_is_followed_by_polling_never_a_second_import(
    connected, django_capture_on_commit_callbacks, monkeypatch, clock
):
    add(5)

    def killed(self, batch):
        raise SystemExit("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(surge.Surge, "poll", killed)
        with pytest.raises(SystemExit):
            run_surge(django_capture_on_commit_callbacks)
    batch = SurgeBatch.objects.get()
    assert batch.status == SurgeBatch.Status.SUBMITTED and batch.activity_id
    assert set(statuses().values()) == {S.SYNCING}

    assert run_surge(django_capture_on_commit_callbacks) == 0  # its lease still holds: nobody takes it
    clock.advance(121)  # the lease (LEASE) runs out; the rows' own lease does not
    assert Signup.objects.claimable().count() == 0
    assert run_surge(django_capture_on_commit_callbacks) == 1

    assert set(statuses().values()) == {S.SYNCED}
    assert len(imports(connected)) == 1
    assert len(connected.contacts()) == 5


@pytest.mark.services
@pytest.mark.usefixtures("services")
def test_a_real_worker_sigkilled_after_cc_took_the_import_is_followed_by_polling_never_a_second_import(
    transactional_db, cc_settings, redis_broker
):
    from cc_sync.publisher import publish
    from rig.processes import celery_worker, example_env
    from rig.waiting import wait_until

    with Sandbox(api_rate=None, token_rate=None, import_polls=2) as sandbox:
        cc_settings.update(sandbox.cc_sync_settings(), LIST_IDS=[LIST_ID])
        tokens = sandbox.issue_tokens()
        make_connection(access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
        signups = add(10)
        env = example_env(sandbox, CC_SYNC_SURGE_THRESHOLD=3, CC_SYNC_LEASE=3, CC_SYNC_SWEEP_INTERVAL=1)
        with celery_worker(env, concurrency=1, name="surge1") as worker:
            publish([signups[0].pk], marked_at=timezone.now())  # its task notices the surge
            wait_until(
                lambda: SurgeBatch.objects.filter(status=SurgeBatch.Status.SUBMITTED).exists(),
                timeout=60,
                what="CC to accept the import",
            )
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        assert len(imports(sandbox)) == 1
        assert set(statuses().values()) == {S.SYNCING}

        # Beat's sweeper finds the batch once its lease has run out, and a worker polls the same activity.
        with celery_worker(env, concurrency=1, beat=True, name="surge2"):
            wait_until(
                lambda: set(statuses().values()) == {S.SYNCED}, timeout=90, what="the signups to be synced"
            )
        assert len(imports(sandbox)) == 1
        assert sorted(c["email_address"] for c in sandbox.contacts()) == sorted(statuses())
        assert all(c["list_memberships"] == [LIST_ID] for c in sandbox.contacts())


def test_a_worker_whose_lease_ran_out_sends_nothing_more(
    connected, django_capture_on_commit_callbacks, monkeypatch, clock
):
    monkeypatch.setattr(backfill, "MAX_CONTACTS", 2)
    monkeypatch.setattr(backfill, "MAX_IN_FLIGHT", 1)
    add(4)
    taken_over: list[SurgeBatch] = []

    def stalled(seconds: float) -> None:
        if not taken_over:  # this worker stalls past its lease; the sweeper's next import_surge takes over
            clock.advance(121)
            taken_over.extend(surge.take_unfinished())

    with django_capture_on_commit_callbacks(execute=True):
        assert surge.Surge(poll_interval=0, sleep=stalled).run() == 0
    assert [b.status for b in taken_over] == [SurgeBatch.Status.SUBMITTED, SurgeBatch.Status.PENDING]
    assert len(imports(connected)) == 1  # the stalled worker did not send the second batch

    with django_capture_on_commit_callbacks(execute=True):
        assert surge.Surge(poll_interval=0, sleep=lambda seconds: None).drive(taken_over) == 2
    assert set(statuses().values()) == {S.SYNCED}
    assert len(imports(connected)) == 2


def test_a_crash_while_recording_the_outcome_leaves_the_batch_to_be_polled_again(
    connected, django_capture_on_commit_callbacks, monkeypatch, clock
):
    add(4)
    connected.add_contact("person1@example.com", permission_to_send="unsubscribed")

    def crash(*args, **kwargs):
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(surge, "_one_by_one", crash)
        with pytest.raises(RuntimeError):
            run_surge(django_capture_on_commit_callbacks)
    assert SurgeBatch.objects.get().status == SurgeBatch.Status.SUBMITTED
    assert set(statuses().values()) == {S.SYNCING}  # nothing recorded halfway

    clock.advance(121)
    run_surge(django_capture_on_commit_callbacks)

    assert statuses()["person1@example.com"] == S.PENDING
    assert {statuses()[f"person{n}@example.com"] for n in (2, 3, 4)} == {S.SYNCED}
    assert len(imports(connected)) == 1


def test_a_failed_activity_puts_its_signups_back_never_synced(
    connected, django_capture_on_commit_callbacks, monkeypatch
):
    add(4)
    real_call = surge.Surge._call
    monkeypatch.setattr(
        surge.Surge,
        "_call",
        lambda self, batch, method, *args: (
            {"state": "failed", "activity_errors": ["Import failed."]}
            if method == "activity"
            else real_call(self, batch, method, *args)
        ),
    )

    run_surge(django_capture_on_commit_callbacks)

    signups = list(Signup.objects.all())
    assert {s.status for s in signups} == {S.PENDING}
    assert all(s.surge_batch_id is None and s.next_attempt_at > timezone.now() for s in signups)
    assert {s.last_error for s in signups} == {"Import failed."}
    assert SurgeBatch.objects.get().status == SurgeBatch.Status.FAILED


def test_a_full_activity_queue_leaves_the_batch_to_wait(connected, django_capture_on_commit_callbacks, clock):
    connected.configure(activity_queue_limit=0)
    add(4)

    run_surge(django_capture_on_commit_callbacks)

    batch = SurgeBatch.objects.get()
    assert batch.status == SurgeBatch.Status.PENDING and "1,000" in batch.last_error
    assert batch.lease_expires_at >= timezone.now() + timedelta(seconds=60)
    assert set(statuses().values()) == {S.SYNCING}
    connected.configure(activity_queue_limit=1000)
    clock.advance(61)
    run_surge(django_capture_on_commit_callbacks)
    assert set(statuses().values()) == {S.SYNCED}


def test_sync_process_signup_still_sends_one_by_one_below_the_threshold(connected, run):
    signup = add(1)[0]
    signup = run(signup)
    assert signup.status == S.SYNCED
    assert [(e["method"], e["path"]) for e in connected.requests()] == [("POST", "/v3/contacts")]


def test_bulk_imports_are_shown_read_only_in_the_admin(admin_client):
    batch = SurgeBatch.objects.create(
        list_ids=[LIST_ID], signup_ids=[1, 2], status=SurgeBatch.Status.SUBMITTED, activity_id="a-1"
    )
    assert "a-1" in admin_client.get(f"/admin/cc_sync/surgebatch/{batch.pk}/change/").content.decode()
    assert admin_client.get("/admin/cc_sync/surgebatch/").status_code == 200
    assert admin_client.get("/admin/cc_sync/surgebatch/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/cc_sync/surgebatch/{batch.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert SurgeBatch.objects.filter(pk=batch.pk).exists()
