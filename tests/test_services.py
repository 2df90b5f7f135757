"""Real processes against real services: PostgreSQL, Redis, RabbitMQ, Celery workers and the CC sandbox.

The tests with real workers run once per broker (the ``broker`` fixture): Redis, then RabbitMQ. Skipped with
the reason printed when PostgreSQL or a broker is missing; under CI=true that is an error.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from celery import current_app
from django.db import connection as db_connection
from django.utils import timezone

from cc_sync.models import Connection, Signup
from cc_sync.sandbox import Sandbox
from rig.cc import make_connection
from rig.figures import max_in_any_window
from rig.processes import celery_worker, refresh_probe
from rig.waiting import wait_until

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("services")]


@pytest.fixture
def sandbox():
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def sandbox_settings(sandbox, cc_settings):
    cc_settings.update(sandbox.cc_sync_settings())
    cc_settings["LIST_IDS"] = [sandbox.lists()[0]["list_id"]]
    return sandbox


def connect_to(sandbox: Sandbox, expires_in: float = 3600) -> dict:
    tokens = sandbox.issue_tokens()
    make_connection(
        access_token=tokens["access_token"], refresh_token=tokens["refresh_token"], expires_in=expires_in
    )
    return tokens


@pytest.mark.parametrize("processes", [8])
def test_many_processes_finding_the_token_stale_make_exactly_one_refresh(
    transactional_db, sandbox, processes
):
    tokens = connect_to(sandbox, expires_in=-60)
    start_at = time.time() + 3.0  # every process is imported and waiting before this moment
    probes = [refresh_probe(sandbox, start_at) for _ in range(processes)]
    results = [probe.communicate(timeout=60) for probe in probes]
    assert [probe.returncode for probe in probes] == [0] * processes, [err for _out, err in results]
    assert sandbox.token_calls("refresh_token") == 1
    stored = Connection.load()
    assert stored.access_token != tokens["access_token"]
    assert stored.refresh_token != tokens["refresh_token"]  # the sandbox rotates refresh tokens
    assert {out.strip() for out, _err in results} == {stored.access_token}


def test_a_real_worker_syncs_a_signup_submitted_through_the_view(
    transactional_db, client, sandbox_settings, broker
):
    sandbox = sandbox_settings
    connect_to(sandbox)
    response = client.post(
        "/signup/",
        {"email": "Visitor@Example.COM", "first_name": "Vera", "last_name": "Visitor", "consent": "on"},
    )
    assert response.status_code == 302
    with celery_worker(broker.worker_env(sandbox)):
        wait_until(lambda: sandbox.contacts(), timeout=60, what="the contact to reach the sandbox")
        wait_until(
            lambda: Signup.objects.filter(status=Signup.Status.SYNCED).exists(),
            timeout=30,
            what="the signup to be marked synced",
        )
    [contact] = sandbox.contacts()
    assert contact["email_address"] == "Visitor@example.com"
    assert contact["first_name"] == "Vera"
    assert contact["list_memberships"] == [sandbox.lists()[0]["list_id"]]
    signup = Signup.objects.get()
    assert signup.contact_id == contact["contact_id"]


def test_with_the_broker_unreachable_the_visitor_is_answered_and_the_sweeper_delivers_later(
    transactional_db, client, sandbox_settings, broker
):
    sandbox = sandbox_settings
    connect_to(sandbox)
    current_app.conf.broker_url = broker.dead_url  # nothing listens there
    started = time.monotonic()
    response = client.post("/signup/", {"email": "late@example.com", "consent": "on"})
    elapsed = time.monotonic() - started
    assert response.status_code == 302
    assert elapsed < 5, f"the visitor waited {elapsed:.1f} s on a dead broker"
    signup = Signup.objects.get()
    assert (signup.status, signup.enqueued_at) == (Signup.Status.PENDING, None)
    # The broker is back: beat's sweeper (every second here) finds the row and a worker syncs it.
    with celery_worker(broker.worker_env(sandbox, CC_SYNC_SWEEP_INTERVAL=1), beat=True):
        wait_until(
            lambda: Signup.objects.filter(status=Signup.Status.SYNCED).exists(),
            timeout=60,
            what="the sweeper to deliver the signup",
        )
    assert [c["email_address"] for c in sandbox.contacts()] == ["late@example.com"]


def test_workers_in_several_processes_share_one_rate_limit(
    transactional_db, sandbox_settings, broker, django_capture_on_commit_callbacks
):
    sandbox = sandbox_settings
    rate, count = 8, 48
    sandbox.configure(api_rate=rate)  # the sandbox would answer 429 above the same limit
    connect_to(sandbox)
    from cc_sync.sync import enqueue_signup

    for n in range(count):
        enqueue_signup(f"person{n}@example.com")
    env = broker.worker_env(sandbox, CC_SYNC_API_RATE=rate)
    with celery_worker(env, concurrency=3, name="a"), celery_worker(env, concurrency=3, name="b"):
        wait_until(
            lambda: Signup.objects.filter(status=Signup.Status.SYNCED).count() == count,
            timeout=120,
            what=f"{count} signups to sync",
        )
    api_requests = [r for r in sandbox.requests() if r["kind"] == "api"]
    assert len(api_requests) == count
    assert max_in_any_window([r["time"] for r in api_requests]) <= rate
    assert all(r["status"] in (200, 201) for r in api_requests)
    assert len(sandbox.contacts()) == count


def test_held_signups_drain_after_reconnect_without_anyone_doing_more(
    transactional_db, sandbox_settings, broker
):
    sandbox = sandbox_settings
    make_connection(status=Connection.Status.NEEDS_RECONNECT, expires_at=timezone.now() - timedelta(days=1))
    from cc_sync.oauth import store_grant
    from cc_sync.sync import enqueue_signup

    for n in range(3):
        enqueue_signup(f"held{n}@example.com")
    with celery_worker(broker.worker_env(sandbox)):
        wait_until(
            lambda: Signup.objects.filter(status=Signup.Status.WAITING_RECONNECT).count() == 3,
            timeout=60,
            what="the signups to be held",
        )
        assert sandbox.contacts() == []
        store_grant(sandbox.issue_tokens())  # what the admin's Reconnect ends with
        wait_until(
            lambda: Signup.objects.filter(status=Signup.Status.SYNCED).count() == 3,
            timeout=60,
            what="the held signups to drain",
        )
    assert sorted(c["email_address"] for c in sandbox.contacts()) == [
        "held0@example.com",
        "held1@example.com",
        "held2@example.com",
    ]


def test_a_worker_that_keeps_its_database_connection_replaces_one_the_server_dropped(
    transactional_db, sandbox_settings, broker
):
    sandbox = sandbox_settings
    connect_to(sandbox)
    from cc_sync.sync import enqueue_signup

    def synced() -> int:
        return Signup.objects.filter(status=Signup.Status.SYNCED).count()

    # No beat: only the tasks' own messages can deliver these, never the sweeper.
    env = broker.worker_env(sandbox, CELERY_DB_REUSE_MAX=1000, CONN_MAX_AGE=600)
    with celery_worker(env, concurrency=1):
        enqueue_signup("before@example.com")
        wait_until(lambda: synced() == 1, timeout=60, what="the first signup to sync")
        with db_connection.cursor() as cursor:  # what a database restart does to the worker's connection
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        for n in range(3):
            enqueue_signup(f"after{n}@example.com")
        wait_until(lambda: synced() == 4, timeout=60, what="the signups after the restart to sync")
    assert len(sandbox.contacts()) == 4


# -- losing a worker or the broker, on each broker ----------------------------------------------------


def pool_process_waiting_for_cc(sandbox, worker) -> int:
    """Queue a signup and return the worker's pool process that is sending it to a slow CC.

    CC has stored the contact by then; only its answer is still to come, so the task is mid-way.
    """
    from cc_sync.sync import enqueue_signup
    from rig.proctable import children_of, tcp_peer_ports

    enqueue_signup("killed@example.com")
    wait_until(lambda: sandbox.contacts(), timeout=60, what="the worker's request to reach CC")
    child = wait_until(
        lambda: next((pid for pid in children_of(worker.pid) if sandbox.port in tcp_peer_ports(pid)), None),
        timeout=10,
        what="the pool process waiting for CC's answer",
    )
    assert Signup.objects.get().status == Signup.Status.SYNCING
    return child


def killed_signup_synced(sandbox) -> None:
    wait_until(
        lambda: Signup.objects.filter(status=Signup.Status.SYNCED).exists(),
        timeout=60,
        what="the killed worker's signup to sync",
    )
    signup = Signup.objects.get()
    assert signup.attempts == 2
    [contact] = sandbox.contacts()
    assert signup.contact_id == contact["contact_id"]


# CC answers after 30 s; the lease (3 s) is what a dead worker's row waits before another may take it.
KILL_ENV = {"CC_SYNC_LEASE": 3, "CC_SYNC_READ_TIMEOUT": 60}


def test_a_pool_process_killed_mid_task_is_delivered_again_without_the_sweeper(
    transactional_db, sandbox_settings, broker
):
    # task_reject_on_worker_lost: the worker's main process sees its pool process die and puts the message
    # back in the queue (on both brokers, at once). No beat runs: only that redelivery can sync the signup.
    sandbox = sandbox_settings
    connect_to(sandbox)
    sandbox.configure(delay=30)
    with celery_worker(broker.worker_env(sandbox, **KILL_ENV), concurrency=1, name="survivor") as worker:
        os.kill(pool_process_waiting_for_cc(sandbox, worker), signal.SIGKILL)
        sandbox.configure(delay=0)
        killed_signup_synced(sandbox)
        assert worker.poll() is None  # the same worker, with a new pool process, did it


def test_a_worker_killed_mid_task_loses_no_signup(transactional_db, sandbox_settings, broker):
    # task_acks_late: the whole worker dies (SIGKILL to its main process and its pool) before acknowledging.
    sandbox = sandbox_settings
    connect_to(sandbox)
    sandbox.configure(delay=30)
    env = broker.worker_env(sandbox, CC_SYNC_SWEEP_INTERVAL=1, **KILL_ENV)
    with celery_worker(env, concurrency=1, name="doomed") as doomed:
        pool_process_waiting_for_cc(sandbox, doomed)
        os.killpg(doomed.pid, signal.SIGKILL)  # the main process and its pool at once
        doomed.wait(timeout=10)
    sandbox.configure(delay=0)
    if broker.name == "rabbitmq":
        # The dead worker's connection closed: RabbitMQ has put the unacknowledged message back at once.
        wait_until(lambda: broker.ready() == 1, timeout=10, what="RabbitMQ to requeue the message")
        successor = celery_worker(env, concurrency=1, name="successor")
    else:
        # Redis keeps it aside until it is older than the visibility timeout (an hour): the row's lease
        # runs out long before, and the sweeper (beat) queues it again.
        assert (broker.ready(), broker.unacked()) == (0, 1)
        successor = celery_worker(env, concurrency=1, name="successor", beat=True)
    with successor:
        killed_signup_synced(sandbox)


def test_the_sweeper_catches_up_after_the_broker_comes_back(
    transactional_db, client, sandbox_settings, proxied_broker
):
    # The site, the worker and beat all reach the broker through a proxy; cutting it is the broker going
    # away for all of them at once (the broker itself keeps serving other runs on this machine).
    broker, sandbox = proxied_broker, sandbox_settings
    connect_to(sandbox)

    def synced() -> int:
        return Signup.objects.filter(status=Signup.Status.SYNCED).count()

    def sign_up(email: str) -> None:
        assert client.post("/signup/", {"email": email, "consent": "on"}).status_code == 302

    with celery_worker(broker.worker_env(sandbox, CC_SYNC_SWEEP_INTERVAL=1), beat=True) as worker:
        sign_up("before@example.com")
        wait_until(lambda: synced() == 1, timeout=60, what="the signup before the outage to sync")
        broker.proxy.cut()
        for n in range(3):
            sign_up(f"during{n}@example.com")
        # The broker took none of them: the rows are due and marked as never queued, for the sweeper.
        assert Signup.objects.filter(status=Signup.Status.PENDING, enqueued_at=None).count() == 3
        time.sleep(3)  # the worker and beat notice the outage and retry the connection meanwhile
        assert worker.poll() is None
        broker.proxy.restore()
        wait_until(lambda: synced() == 4, timeout=120, what="the sweeper to deliver the signups")
        assert worker.poll() is None  # the worker reconnected by itself
    assert sorted(c["email_address"] for c in sandbox.contacts()) == [
        "before@example.com",
        "during0@example.com",
        "during1@example.com",
        "during2@example.com",
    ]
