"""The database schema the migrations build: indexes that serve the outbox's queries, none twice."""

from __future__ import annotations

from django.db import connection

from cc_sync.models import Signup


def test_signup_status_is_indexed_once_by_the_due_index(db):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Signup._meta.db_table)
    leading_status = sorted(
        name
        for name, info in constraints.items()
        if info["index"] and not info["primary_key"] and info["columns"][:1] == ["status"]
    )
    # The composite (status, next_attempt_at) index serves lookups by status alone as well.
    assert leading_status == ["cc_sync_signup_due"]
    assert constraints["cc_sync_signup_due"]["columns"] == ["status", "next_attempt_at"]
