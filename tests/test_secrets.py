"""No token, client secret, authorization code or PKCE verifier in logs, admin mail, error pages or dumps."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit

import pytest
import requests
from django.core import mail
from django.core.management import call_command
from django.db import connection as db_connection
from django.test import RequestFactory
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter, technical_500_response

from cc_sync import oauth, tasks
from cc_sync.client import scrub
from cc_sync.exceptions import ReconnectRequired
from cc_sync.models import Connection, Signup
from rig.cc import make_connection, token_body
from rig.constants import API_URL, LIST_ID, TOKEN_URL

SECRET = "client-secret-4f9a2b"
ACCESS = "access-token-77c1e0d9"
REFRESH = "refresh-token-91b3aa02"


@pytest.fixture
def hostile_http(monkeypatch):
    """Every HTTP call fails with an error that echoes the request, as some libraries' messages do."""

    def echo(self, request, **kwargs):
        raise requests.exceptions.InvalidHeader(
            f"{request.method} {request.url} {request.headers!r} {request.body!r} {kwargs!r}"
        )

    monkeypatch.setattr(requests.Session, "send", echo)


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
    monkeypatch.setattr(requests.Session, "send", lambda self, request, **kw: fake_token_response())
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

        def echo(self, request, **kwargs):
            raise requests.exceptions.InvalidHeader(
                f"{request.method} {request.url} {request.body!r} {kwargs!r}"
            )

        monkeypatch.setattr(requests.Session, "send", echo)
    else:
        monkeypatch.setattr(requests.Session, "send", lambda self, request, **kw: fake_token_response())

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


# -- token-endpoint error text is scrubbed by value (issue 11 section 5) -------------------------------

LIVE_REFRESH = "rt-live+Q9/7f3e=aa02-91b3c4d5e6f7"  # '+', '/' and '=' change when URL-encoded
LIVE_SECRET = "cs-live-5c0e7d21ab"


def _echoes() -> list[tuple[str, str, bytes]]:
    form = urlencode({"grant_type": "refresh_token", "refresh_token": LIVE_REFRESH})
    basic = base64.b64encode(f"test-client-id:{LIVE_SECRET}".encode()).decode()
    return [
        (
            "an HTML page of a proxy echoing the form body",
            "text/html",
            f"<html><body><h1>400 Bad Request</h1><pre>POST /token\n{form}</pre></body></html>".encode(),
        ),
        (
            "a text body echoing the raw token right where the description is cut",
            "text/plain",
            ("Bad Request. " + "x" * 174 + f" {LIVE_REFRESH} refused").encode(),  # starts at char 188,
        ),
        (
            "OAuth JSON whose description quotes the token and the Basic credentials",
            "application/json",
            json.dumps(
                {
                    "error": "invalid_request",
                    "error_description": f"Malformed grant {LIVE_REFRESH!r} (Authorization: Basic {basic})",
                }
            ).encode(),
        ),
        (
            "a JSON echo of the request under other keys",
            "application/json",
            json.dumps(
                [{"error_key": "bad_request", "error_message": "echo", "request": {"body": form}}]
            ).encode(),
        ),
    ]


@pytest.mark.parametrize(
    ("_what", "content_type", "body"),
    _echoes(),
    ids=["html-echo", "text-echo-at-the-cut", "oauth-json", "json-echo"],
)
def test_token_endpoint_errors_are_scrubbed_of_every_secret_sent(
    db, caplog, settings, cc_settings, cc_api, django_capture_on_commit_callbacks, _what, content_type, body
):
    settings.DEBUG = False
    cc_settings["CLIENT_SECRET"] = LIVE_SECRET
    caplog.set_level(logging.DEBUG)
    make_connection(refresh_token=LIVE_REFRESH)
    cc_api.post(TOKEN_URL, status=400, body=body, content_type=content_type)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReconnectRequired) as excinfo:
        oauth.refresh_now()
    connection = Connection.load()
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert len(mail.outbox) == 1  # the admins are told, with the scrubbed reason
    seen = everything_observable(caplog, f"{excinfo.value!s} {excinfo.value.errors!r}")
    assert "refused the token request" in connection.last_error  # still says what happened
    for secret in (LIVE_REFRESH, LIVE_SECRET):
        for form in (secret, quote(secret, safe=""), quote_plus(secret), secret[:10]):
            assert form not in seen


def test_scrubbing_keeps_the_rest_of_the_message_readable():
    text = scrub("invalid_grant: refresh_token=abcdef123 was revoked (error code=400)", ["abcdef123"])
    assert text == "invalid_grant: refresh_token=*** was revoked (error code=400)"


# -- token-holding functions are hidden from Django's debug page -------------------------------------


def _failing_list_fetch(cc_api, failure: str) -> Any:
    """Run the list fetch (as the admin's Refresh does) until it breaks; return the exception info."""
    if failure == "a list without an id":  # breaks in oauth.refresh_lists
        cc_api.get(f"{API_URL}/contact_lists", json={"lists": [{"name": "No id"}]})
    else:  # breaks in client.contact_lists
        cc_api.get(f"{API_URL}/contact_lists", json={"lists": 5})
    cc_api.post(TOKEN_URL, json=token_body(NEW_ACCESS, NEW_REFRESH))
    try:
        oauth.refresh_lists(Connection.load(), oauth.refresh_now())
    except (KeyError, TypeError):
        return sys.exc_info()
    raise AssertionError("the list fetch did not fail")


# Made at run time: the debug page shows the source lines around each frame, and these must not be in them.
NEW_ACCESS = "new-access-" + secrets.token_hex(12)
NEW_REFRESH = "new-refresh-" + secrets.token_hex(12)


class HidingWithDebugOn(SafeExceptionReporterFilter):
    """As the admin's views (and a careful project) set it: sensitive variables hidden with DEBUG on too."""

    def is_active(self, request: Any) -> bool:
        return True


@pytest.mark.parametrize("failure", ["a list without an id", "lists that are no list"])
def test_the_debug_page_of_a_failing_list_fetch_shows_no_token(db, cc_api, settings, failure):
    settings.DEBUG = True
    make_connection(access_token=ACCESS, refresh_token=REFRESH)
    exc_info = _failing_list_fetch(cc_api, failure)
    request = RequestFactory().post("/admin/cc_sync/connection/refresh/")
    request.exception_reporter_filter = HidingWithDebugOn()
    page = technical_500_response(request, *exc_info).content.decode()
    assert "refresh_lists" in page  # the frames are there, their tokens are not
    for secret in (ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH):
        assert secret not in page


@pytest.mark.parametrize("failure", ["a list without an id", "lists that are no list"])
def test_the_error_mail_of_a_failing_list_fetch_shows_no_token(db, cc_api, settings, failure):
    settings.DEBUG = False  # production: Django's own filter is active, AdminEmailHandler mails this report
    make_connection(access_token=ACCESS, refresh_token=REFRESH)
    exc_info = _failing_list_fetch(cc_api, failure)
    reporter = ExceptionReporter(RequestFactory().get("/"), *exc_info, is_email=True)
    report = reporter.get_traceback_text() + reporter.get_traceback_html()
    assert "refresh_lists" in report
    for secret in (ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH):
        assert secret not in report
