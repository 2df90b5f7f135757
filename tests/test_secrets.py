"""No token, client secret, authorization code or PKCE verifier in logs, admin mail, error pages or dumps."""

from __future__ import annotations

import io
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core import mail
from django.core.management import call_command
from django.db import connection as db_connection

from cc_sync import oauth, tasks
from cc_sync.models import Connection, Signup
from tests.conftest import LIST_ID, make_connection

SECRET = "client-secret-4f9a2b"
ACCESS = "access-token-77c1e0d9"
REFRESH = "refresh-token-91b3aa02"


@pytest.fixture
def hostile_http(monkeypatch):
    """Every HTTP call fails with an error that echoes the request, as some libraries' messages do."""

    def echo(self, method, url, **kwargs):
        raise requests.exceptions.InvalidHeader(f"{method} {url} {kwargs!r} {self.headers!r}")

    monkeypatch.setattr(requests.Session, "request", echo)


@pytest.fixture
def pkce_settings(cc_settings, settings):
    settings.DEBUG = False
    cc_settings.update(CLIENT_SECRET=SECRET, OAUTH_FLOW="pkce")
    return cc_settings


def everything_observable(caplog, responses_text: str) -> str:
    logged = "\n".join(
        [caplog.text]
        + [record.getMessage() for record in caplog.records]
        + [
            logging.Formatter().formatException(record.exc_info)
            for record in caplog.records
            if record.exc_info
        ]
    )
    mails = "\n".join(f"{m.subject}\n{m.body}\n{m.alternatives!r}" for m in mail.outbox)
    dump = io.StringIO()
    call_command("dumpdata", "cc_sync", stdout=dump)
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token, last_error FROM cc_sync_connection")
        raw = repr(cursor.fetchall())
        cursor.execute("SELECT last_error FROM cc_sync_signup")
        raw += repr(cursor.fetchall())
    return "\n".join([logged, mails, responses_text, dump.getvalue(), raw])


def test_a_failing_refresh_leaks_nothing(
    db, caplog, settings, cc_settings, hostile_http, django_capture_on_commit_callbacks
):
    settings.DEBUG = False
    cc_settings["CLIENT_SECRET"] = SECRET
    caplog.set_level(logging.DEBUG)
    make_connection(access_token=ACCESS, refresh_token=REFRESH, expires_in=-1)
    signup = Signup.objects.create(email="a@example.com", list_ids=[LIST_ID])
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_signup.run(signup.pk)
    signup.refresh_from_db()
    assert signup.status == Signup.Status.PENDING  # transient: retried later
    assert "InvalidHeader" in signup.last_error
    seen = everything_observable(caplog, "")
    for secret in (SECRET, ACCESS, REFRESH):
        assert secret not in seen


def test_an_exception_in_refresh_itself_leaks_nothing(
    db, caplog, settings, cc_settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.DEBUG = False
    cc_settings["CLIENT_SECRET"] = SECRET
    caplog.set_level(logging.DEBUG)
    make_connection(access_token=ACCESS, refresh_token=REFRESH, expires_in=-1)

    def broken_apply(connection, tokens):
        raise RuntimeError("storage failed")

    monkeypatch.setattr(oauth, "_apply_tokens", broken_apply)
    monkeypatch.setattr(requests.Session, "request", lambda self, method, url, **kw: fake_token_response())
    signup = Signup.objects.create(email="a@example.com", list_ids=[LIST_ID])
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sync_signup.run(signup.pk)
    assert Signup.objects.get(pk=signup.pk).status == Signup.Status.PENDING
    assert Connection.load().refresh_token == REFRESH  # nothing half-saved
    seen = everything_observable(caplog, "")
    for secret in (SECRET, ACCESS, REFRESH, "new-access-5e1d", "new-refresh-0c3b"):
        assert secret not in seen


def fake_token_response():
    response = requests.Response()
    response.status_code = 200
    response._content = (
        b'{"access_token": "new-access-5e1d", "refresh_token": "new-refresh-0c3b", '
        b'"expires_in": 86400, "token_type": "Bearer"}'
    )
    response.headers["Content-Type"] = "application/json"
    return response


@pytest.mark.parametrize("failure", ["http", "storage"])
def test_a_failing_callback_leaks_nothing_and_is_no_500(
    admin_client, db, caplog, pkce_settings, monkeypatch, failure
):
    caplog.set_level(logging.DEBUG)
    admin_client.raise_request_exception = False
    start = admin_client.post("/admin/cc_sync/connection/connect/")
    query = parse_qs(urlsplit(start["Location"]).query)
    state = query["state"][0]
    verifier = admin_client.session[oauth.SESSION_KEY][-1]["code_verifier"]
    code = "authorization-code-3c9e71"
    if failure == "http":

        def echo(self, method, url, **kwargs):
            raise requests.exceptions.InvalidHeader(f"{method} {url} {kwargs!r}")

        monkeypatch.setattr(requests.Session, "request", echo)
    else:
        monkeypatch.setattr(
            requests.Session, "request", lambda self, method, url, **kw: fake_token_response()
        )

        def broken_store(tokens, user=None):
            raise RuntimeError("database unavailable")

        monkeypatch.setattr(oauth, "store_grant", broken_store)
    response = admin_client.get(f"/admin/cc_sync/connection/callback/?code={code}&state={state}", follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "nothing was stored" in page
    assert Connection.load().status == Connection.Status.DISCONNECTED
    seen = everything_observable(caplog, page)
    for secret in (SECRET, code, verifier, "new-access-5e1d", "new-refresh-0c3b"):
        assert secret not in seen
