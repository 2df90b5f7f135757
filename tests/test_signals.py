"""Signals a site can connect to."""

from __future__ import annotations

import pytest
from responses import matchers

from cc_sync import oauth, signals, tasks
from cc_sync.exceptions import ReconnectRequired
from cc_sync.models import Connection, Signup
from rig.cc import make_connection
from rig.constants import CONTACTS_URL, LIST_ID, TOKEN_URL


@pytest.fixture
def received():
    seen = []

    def listener(signal):
        def receive(sender, **kwargs):
            seen.append((signal, kwargs))

        return receive

    receivers = {
        name: listener(name)
        for name in ("connection_established", "connection_needs_reconnect", "signup_synced", "signup_failed")
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_signup_synced_is_sent_with_the_signup(connection, cc_api, received):
    signup = Signup.objects.create(email="a@example.com", list_ids=[LIST_ID])
    cc_api.post(CONTACTS_URL, status=201, json={"contact_id": "c-1"})
    tasks.sync_signup.run(signup.pk)
    assert [(name, kw["signup"].pk, kw["signup"].contact_id) for name, kw in received] == [
        ("signup_synced", signup.pk, "c-1")
    ]


def test_signup_failed_is_sent_with_the_reason(connection, cc_api, received):
    signup = Signup.objects.create(email="a@example.com", list_ids=[LIST_ID])
    cc_api.post(CONTACTS_URL, status=400, json=[{"error_key": "bad", "error_message": "Bad phone."}])
    tasks.sync_signup.run(signup.pk)
    [(name, kwargs)] = received
    assert name == "signup_failed"
    assert "Bad phone." in kwargs["reason"]


def test_connection_needs_reconnect_is_sent_once(db, cc_api, received, django_capture_on_commit_callbacks):
    make_connection(expires_in=-1)
    cc_api.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant"},
        match=[
            matchers.urlencoded_params_matcher(
                {"grant_type": "refresh_token", "refresh_token": Connection.load().refresh_token}
            )
        ],
    )
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconnectRequired):
            oauth.get_access_token()
    assert [name for name, _kw in received] == ["connection_needs_reconnect"]
    assert "invalid_grant" in received[0][1]["reason"]


def test_connection_established_is_sent_after_connecting(db, cc_api, received):
    cc_api.get("https://api.cc.test/v3/account/summary", json={"organization_name": "Acme"})
    cc_api.get("https://api.cc.test/v3/contact_lists", json={"lists": []})
    oauth.store_grant(
        {
            "access_token": "a",
            "refresh_token": "r",
            "expires_in": 86400,
            "scope": "contact_data offline_access account_read",
        }
    )
    assert [(name, kw["connection"].account_name) for name, kw in received] == [
        ("connection_established", "Acme")
    ]
