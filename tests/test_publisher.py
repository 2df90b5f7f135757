"""The publisher: web requests queue their publishes and never wait for the broker; nothing is lost.

The publisher thread uses a database connection of its own, so the tests of that thread keep their rows
committed (``transactional_db`` on PostgreSQL, the ``services`` tier). The other tests of the suite publish
on the test's own thread (``isolated_publishing`` in conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from django.utils import timezone

from cc_sync import publisher, sync
from cc_sync.conf import app_settings
from cc_sync.models import Signup
from rig.brokers import FrozenBroker, test_celery_app
from rig.waiting import wait_until

VISITOR = {"email": "frozen@example.com", "first_name": "Vera", "consent": "on"}


@pytest.fixture
def frozen_broker(background: publisher.Outbox) -> Iterator[FrozenBroker]:
    """The current Celery app publishes to a broker that never answers (no socket timeout: forever).

    Thawed before the publisher thread is waited for (it depends on ``background``).
    """
    broker = FrozenBroker()
    app = Celery("frozen-broker", broker=broker.url)
    app.set_default()
    app.set_current()
    try:
        yield broker
    finally:
        broker.thaw()
        test_celery_app.set_default()
        test_celery_app.set_current()


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> Iterator[publisher.Outbox]:
    """The site's publisher: a real outbox and its thread (conftest makes tests publish inline)."""
    outbox = publisher.Outbox()
    monkeypatch.setattr(publisher, "outbox", outbox)
    yield outbox
    # The thread must be done with the database before the test's data goes.
    outbox.flush(timeout=60)


def record_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, publishes are recorded (the ids), not sent; one already at the broker stays there."""
    calls: list[int] = []
    monkeypatch.setattr(publisher, "_send", lambda ids, countdown: calls.extend(ids) or list(ids))
    return calls


@pytest.fixture
def published_later(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return record_sends(monkeypatch)


def later(seconds: float) -> Any:
    moment = timezone.now() + timedelta(seconds=seconds)
    return lambda: moment


@pytest.mark.services
@pytest.mark.usefixtures("services")
def test_a_frozen_broker_costs_the_visitor_nothing_and_the_row_stays_due_for_the_sweeper(
    transactional_db, client, frozen_broker, background, monkeypatch
):
    response = client.post("/signup/", VISITOR)
    # The visitor has the thank-you page while the publish is stuck at the broker, and stays stuck.
    assert response.status_code == 302
    assert wait_until(frozen_broker.received.is_set, timeout=30, what="the publish to reach the broker")
    assert background.flush(timeout=0) is False
    signup = Signup.objects.get()
    assert (signup.status, signup.enqueued_at is not None) == (Signup.Status.PENDING, True)
    # The mark makes the sweeper wait REQUEUE_AFTER for the message, then take it as lost and queue again.
    sent = record_sends(monkeypatch)  # the sweeper's own publishes
    requeue_after = app_settings.REQUEUE_AFTER
    monkeypatch.setattr(timezone, "now", later(requeue_after - 1))
    assert sync.sweep() == 0
    monkeypatch.setattr(timezone, "now", later(requeue_after + 1))
    assert sync.sweep() == 1
    assert sent == [signup.pk]
    # The stuck publish fails at last: the row keeps the sweeper's newer mark (its message was queued).
    marked_by_sweep = Signup.objects.get().enqueued_at
    frozen_broker.thaw()
    assert background.flush(timeout=60)
    assert Signup.objects.get().enqueued_at == marked_by_sweep


@pytest.mark.services
@pytest.mark.usefixtures("services")
def test_a_publish_the_broker_refuses_leaves_the_row_to_the_next_sweep(
    transactional_db, client, background, monkeypatch
):
    refusing = Celery("refusing-broker", broker="redis://127.0.0.1:1/0")  # nothing listens there
    refusing.conf.broker_transport_options = {"max_retries": 0}
    refusing.set_current()
    refusing.set_default()
    try:
        assert client.post("/signup/", VISITOR).status_code == 302
        assert background.flush(timeout=60)
    finally:
        test_celery_app.set_default()
        test_celery_app.set_current()
    signup = Signup.objects.get()
    # Unmarked by the publisher thread: the very next sweep queues it.
    assert (signup.status, signup.enqueued_at) == (Signup.Status.PENDING, None)
    sent = record_sends(monkeypatch)
    assert sync.sweep() == 1
    assert sent == [signup.pk]


def test_a_full_queue_unmarks_the_rows_at_once_for_the_sweeper(db, monkeypatch, published_later):
    held = threading.Event()
    release = threading.Event()

    def stuck(ids: list[int], countdown: float | None) -> list[int]:
        published_later.extend(ids)
        held.set()
        release.wait()
        return list(ids)

    monkeypatch.setattr(publisher, "_send", stuck)
    outbox = publisher.Outbox(maxsize=1)
    monkeypatch.setattr(publisher, "outbox", outbox)
    now = timezone.now()
    first, waiting, overflow = (
        Signup.objects.create(email=f"{name}@example.com", enqueued_at=now)
        for name in ("first", "waiting", "overflow")
    )
    try:
        publisher.publish_later([first.pk], marked_at=now)  # taken by the thread, stuck at the broker
        assert held.wait(timeout=30)
        publisher.publish_later([waiting.pk], marked_at=now)  # fills the queue
        publisher.publish_later([overflow.pk], marked_at=now)  # no room
    finally:
        release.set()
        assert outbox.flush(timeout=30)
    assert published_later == [first.pk, waiting.pk]
    marks = dict(Signup.objects.values_list("email", "enqueued_at"))
    assert marks == {"first@example.com": now, "waiting@example.com": now, "overflow@example.com": None}


def test_rows_a_dead_process_never_published_are_queued_once_their_mark_is_older_than_requeue_after(
    connection, published, django_capture_on_commit_callbacks, monkeypatch
):
    # The process died between the INSERT and the publish (killed, or its queue still full at exit).
    with django_capture_on_commit_callbacks(execute=False):
        signup = sync.enqueue_signup("lost@example.com")
    assert Signup.objects.get().enqueued_at is not None
    requeue_after = app_settings.REQUEUE_AFTER
    monkeypatch.setattr(timezone, "now", later(requeue_after - 1))
    assert sync.sweep() == 0
    monkeypatch.setattr(timezone, "now", later(requeue_after + 1))
    assert sync.sweep() == 1
    assert [call["args"] for call in published] == [(signup.pk,)]


def test_flush_waits_for_every_queued_publish(published_later):
    outbox = publisher.Outbox()
    now = timezone.now()
    outbox.put([1, 2], marked_at=now)
    outbox.put([3], marked_at=now)
    assert outbox.flush(timeout=30)
    assert published_later == [1, 2, 3]


def test_a_forked_process_starts_a_queue_and_thread_of_its_own(published_later, monkeypatch):
    outbox = publisher.Outbox()
    outbox.put([1], marked_at=timezone.now())
    assert outbox.flush(timeout=30)
    parent_queue = outbox._jobs
    monkeypatch.setattr(publisher.os, "getpid", lambda: -1)  # what os.fork() changes for the child
    outbox.put([2], marked_at=timezone.now())
    assert outbox._jobs is not parent_queue
    assert outbox.flush(timeout=30)
    assert published_later == [1, 2]
