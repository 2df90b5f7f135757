"""Shared fixtures.

Tests marked ``services`` need the real PostgreSQL and Redis on 127.0.0.1. Without them they are skipped
with the reason printed, except under CI (``CI=true``), where a missing service is an error.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import responses
from celery import Celery
from django.conf import settings as django_settings
from django.utils import timezone

from cc_sync.models import Connection, Signup
from tests.sandbox_helpers import SPEC_PATH

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS = ("127.0.0.1", 6379)
LIST_ID = "07936f78-662a-11eb-af0a-fa163e56c9b0"
ACCESS_TOKEN = "access-token-0123456789abcdef0123456789"
REFRESH_TOKEN = "refresh-token-0123456789abcdef0123456789"
# CC's endpoints as tests/settings.py configures them, for the requests the tests expect.
AUTHORIZE_URL = "https://authz.cc.test/oauth2/default/v1/authorize"
TOKEN_URL = "https://authz.cc.test/oauth2/default/v1/token"
DEVICE_URL = "https://authz.cc.test/oauth2/default/v1/device/authorize"
API_URL = "https://api.cc.test/v3"
SIGN_UP_URL = f"{API_URL}/contacts/sign_up_form"
CONTACTS_URL = f"{API_URL}/contacts"
ADD_LISTS_URL = f"{API_URL}/activities/add_list_memberships"
REDIRECT_URI = "https://site.example/admin/cc_sync/connection/callback/"
BASIC = {"Authorization": "Basic " + base64.b64encode(b"test-client-id:test-client-secret").decode()}

# Unit tests publish to an in-memory broker; nothing in them reaches a real broker.
# The sandbox fixtures users get (cc_sandbox, cc_sandbox_factory) serve our own tests too.
pytest_plugins = ["cc_sync.sandbox.pytest_plugin"]

test_celery_app = Celery("cc_sync_tests", broker="memory://")
test_celery_app.conf.task_ignore_result = True
test_celery_app.set_default()
test_celery_app.set_current()


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def missing(message: str, hint: str) -> None:
    """Skip with the reason printed, or fail under CI, where service tests must run."""
    if IN_CI:
        pytest.fail(f"{message}, and CI=true: service tests must run in CI.", pytrace=False)
    pytest.skip(f"{message}; {hint}.")


def require_service(name: str, available: bool) -> None:
    """Skip (or fail under CI) when a real service the test needs is not there."""
    if not available:
        missing(f"{name} is not reachable on 127.0.0.1", "start it to run this test")


@pytest.fixture
def services() -> None:
    """The real PostgreSQL (as the test database) and Redis."""
    from tests.settings import POSTGRES_AVAILABLE

    require_service(
        "PostgreSQL",
        POSTGRES_AVAILABLE and django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    )
    require_service("Redis", reachable(*REDIS))


@pytest.fixture
def rig_services(services: None, transactional_db: Any) -> None:
    """The fault suite's and the benchmarks' rig: committed data (worker processes see it), ``redis-server``."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not on the PATH", "install it to run the fault suite and the benchmarks")


@pytest.fixture
def cc_api():
    """``responses`` mock in which every registered request must be made (and nothing else may be)."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def cc_settings(settings: Any) -> dict[str, Any]:
    """The CC_SYNC dict of tests/settings.py (editable per test through pytest-django's ``settings``)."""
    settings.CC_SYNC = dict(settings.CC_SYNC)
    return settings.CC_SYNC


def make_connection(expires_in: float = 3600, **fields: Any) -> Connection:
    defaults = {
        "status": Connection.Status.CONNECTED,
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "expires_at": timezone.now() + timedelta(seconds=expires_in),
        "scopes": "contact_data offline_access account_read",
        "account_name": "Acme Inc",
        "last_refreshed_at": timezone.now(),
        "connected_at": timezone.now(),
    }
    defaults.update(fields)
    Connection.objects.update_or_create(pk=Connection.SINGLETON_PK, defaults=defaults)
    return Connection.load()


@pytest.fixture
def connection(db: Any) -> Connection:
    """A connected account whose access token is valid for another hour."""
    return make_connection()


@pytest.fixture(autouse=True)
def isolated_publishing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test publishes through the in-memory test app, on the test's own thread.

    Importing example_project makes its Celery app current. The publisher thread of a site would not see a
    test's rows (pytest-django's ``db`` keeps them in an uncommitted transaction) and would carry a hanging
    publish into the next test: tests of that thread install an ``Outbox()`` of their own.
    """
    from django.core.cache import cache

    from cc_sync import publisher

    cache.clear()
    test_celery_app.set_default()
    test_celery_app.set_current()
    monkeypatch.setattr(publisher, "outbox", publisher.Outbox(background=False))


@pytest.fixture
def run(django_capture_on_commit_callbacks: Any) -> Any:
    """Run the sync task's body for a signup as a worker would (after-commit callbacks included)."""
    from cc_sync import tasks

    def run_task(signup: Signup) -> Signup:
        with django_capture_on_commit_callbacks(execute=True):
            tasks.sync_signup.run(signup.pk)
        signup.refresh_from_db()
        return signup

    return run_task


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the sync tasks cc_sync publishes instead of sending them to a broker."""
    from cc_sync import tasks

    calls: list[dict[str, Any]] = []

    def recorder(task: Any) -> Any:
        def record(args: Any = None, kwargs: Any = None, **options: Any) -> None:
            calls.append({"task": task.name, "args": tuple(args or ()), **options})

        return record

    for task in (tasks.sync_signup, tasks.sweep_due_signups):
        monkeypatch.setattr(task, "apply_async", recorder(task))
    return calls


@pytest.fixture
def redis_broker() -> Iterator[Celery]:
    """Publish from this process to a real, emptied Redis database, as the example project's web does."""
    from tests.processes import REDIS_TEST_URL

    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    app = Celery("cc_sync_service_tests", broker=REDIS_TEST_URL)
    app.conf.update(
        broker_connection_timeout=2, broker_transport_options={"socket_connect_timeout": 2, "max_retries": 0}
    )
    app.set_current()
    app.set_default()
    yield app
    test_celery_app.set_current()
    test_celery_app.set_default()
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()


SCOPES = "contact_data offline_access account_read"


def token_body(access: str, refresh: str, expires_in: int = 86400) -> dict[str, Any]:
    """A token endpoint's success body, as CC answers it."""
    return {
        "token_type": "Bearer",
        "expires_in": expires_in,
        "access_token": access,
        "refresh_token": refresh,
        "scope": SCOPES,
    }


def no_authorization_header(request: Any) -> tuple[bool, str]:
    """A ``responses`` matcher: public (PKCE, device) clients send no HTTP Basic credentials."""
    if "Authorization" in request.headers:
        return False, "the request carries an Authorization header"
    return True, ""


# -- the sandbox's own tests (tests/test_sandbox_*.py) ------------------------------------------------


@pytest.fixture
def make_sandbox(cc_sandbox_factory):
    """Start sandboxes; the 1/s token and 4/s API limits are off unless a test turns them on."""
    return lambda **config: cc_sandbox_factory(**{"token_rate": None, "api_rate": None, **config})


@pytest.fixture
def sb(make_sandbox):
    return make_sandbox()


@pytest.fixture(scope="module")
def spec_schema():
    """``check(body, schema_name)`` validates a body against a schema of CC's spec (build 3.0.161)."""
    if not SPEC_PATH.exists():
        pytest.skip(f"CC's OpenAPI file is not at {SPEC_PATH}")
    import yaml
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    spec = yaml.load(SPEC_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    registry = Registry().with_resource("spec", Resource.from_contents(spec, default_specification=DRAFT4))

    def check(body, name):
        schema = {"$ref": f"spec#/components/schemas/{name}"}
        validator = OAS30Validator(schema, registry=registry, format_checker=OAS30Validator.FORMAT_CHECKER)
        errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(body)]
        assert errors == [], errors
        return body

    return check
