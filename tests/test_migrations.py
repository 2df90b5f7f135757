"""Migration 0007: the single connection becomes the default one, with nothing to reconnect."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db
from django.db.migrations.executor import MigrationExecutor

from cc_sync.models import Connection, Signup

# Migrating back and forth takes several seconds: the slow tier (pytest -m slow, and the README command).
pytestmark = pytest.mark.slow

BEFORE = [("cc_sync", "0006_surge")]
AFTER = [("cc_sync", "0007_connections")]


@pytest.fixture
def migrator(transactional_db: Any) -> Any:
    """Migrate cc_sync back to 0006 and return a function migrating forward; the latest state is restored."""
    executor = MigrationExecutor(db)
    executor.migrate(BEFORE)

    def forward() -> Any:
        runner = MigrationExecutor(db)
        runner.loader.build_graph()
        runner.migrate(AFTER)
        return runner.loader.project_state(AFTER).apps

    yield forward
    final = MigrationExecutor(db)
    final.loader.build_graph()
    final.migrate(final.loader.graph.leaf_nodes())


def test_the_existing_connection_becomes_the_default_one_with_its_tokens_kept(migrator):
    old_apps = MigrationExecutor(db).loader.project_state(BEFORE).apps
    OldConnection = old_apps.get_model("cc_sync", "Connection")
    OldSignup = old_apps.get_model("cc_sync", "Signup")
    # The single row as every earlier version stored it: an explicit primary key of 1.
    OldConnection.objects.create(
        pk=1,
        status="connected",
        access_token="the-access-token",
        refresh_token="the-refresh-token",
        account_name="Acme Inc",
        list_ids=["07936f78-662a-11eb-af0a-fa163e56c9b0"],
    )
    OldSignup.objects.create(email="held@example.com", status="waiting_reconnect")

    migrator()

    default = Connection.load()
    assert default.pk == 1
    assert default.slug == Connection.DEFAULT_SLUG and default.is_default
    assert default.name == "Acme Inc"
    assert default.status == Connection.Status.CONNECTED
    assert (default.access_token, default.refresh_token) == ("the-access-token", "the-refresh-token")
    assert default.list_ids == ["07936f78-662a-11eb-af0a-fa163e56c9b0"]
    assert list(default.signups().values_list("email", flat=True)) == ["held@example.com"]
    # The sequence was moved past the explicit key: the next connection does not collide with it.
    second = Connection.objects.create(name="Shop", slug="shop")
    assert second.pk > 1
    assert not second.signups().exists()
    assert Signup.objects.get().connection_id is None


def test_a_database_without_a_connection_migrates_and_creates_the_default_on_first_use(migrator):
    migrator()

    assert not Connection.objects.exists()
    assert Connection.load().slug == Connection.DEFAULT_SLUG
    assert Connection.objects.create(name="Shop", slug="shop").slug == "shop"
