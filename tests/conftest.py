"""The fixtures of cc_sync's own tests, built on the rig (``rig/``); nothing imports from this file.

Tests marked ``services`` need the real PostgreSQL and Redis on 127.0.0.1, and those with real workers
RabbitMQ too (the ``broker`` fixture). Without them they are skipped with the reason printed, except under CI
(``CI=true``), where a missing service is an error (:mod:`rig.services`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import responses
from celery import Celery
from django.conf import settings as django_settings

from cc_sync.models import Connection, Signup
from rig.brokers import BROKERS, BrokerProxy, TestBroker, publishing_to, test_celery_app
from rig.cc import make_connection
from rig.constants import SPEC_PATH
from rig.services import REDIS, REDIS_TEST_URL, reachable, require_redis_server, require_service

# Unit tests publish to an in-memory broker; nothing in them reaches a real broker.
# The sandbox fixtures users get (cc_sandbox, cc_sandbox_factory) serve our own tests too.
pytest_plugins = ["cc_sync.sandbox.pytest_plugin"]

test_celery_app.set_default()
test_celery_app.set_current()


@pytest.fixture
def services() -> None:
    """The real PostgreSQL (as the test database) and Redis."""
    # tests/settings.py chose PostgreSQL only if it answered; otherwise the tests run on SQLite.
    require_service("PostgreSQL", django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"))
    require_service("Redis", reachable(*REDIS))


@pytest.fixture
def rig_services(services: None, transactional_db: Any) -> None:
    """The fault suite's and the benchmarks' rig: committed data (worker processes see it), ``redis-server``."""
    require_redis_server()


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


# -- both brokers (rig/brokers.py) ------------------------------------------------------------------


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, services: None) -> Iterator[TestBroker]:
    """Each real-worker test once per broker: an emptied Redis database, then an emptied RabbitMQ queue.

    This process publishes to it as the example project's web does; ``broker.worker_env(sandbox)`` gives
    the workers the same broker. RabbitMQ missing is a skip locally and an error under CI, as Redis is.
    """
    chosen = TestBroker(request.param)
    require_service(chosen.title, reachable("127.0.0.1", chosen.own_port))
    chosen.empty()
    with publishing_to(chosen.url):
        yield chosen
    chosen.empty()


@pytest.fixture
def proxied_broker(broker: TestBroker) -> Iterator[TestBroker]:
    """``broker`` reached through a :class:`~rig.brokers.BrokerProxy` (``.proxy``) that a test can cut."""
    with BrokerProxy(broker.own_port) as proxy:
        proxied = TestBroker(broker.name, proxy=proxy)
        with publishing_to(proxied.url):
            yield proxied
