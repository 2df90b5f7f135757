"""Database helpers shared by the token refresher and the rate limiter."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models, transaction

M = TypeVar("M", bound=models.Model)


def lock_row(model: type[M], pk: Any, **defaults: Any) -> M:
    """Inside ``transaction.atomic()``: lock the row ``pk`` (creating it if needed) and return it fresh.

    Two processes can never both read the old value, so the caller's read-check-write is serialised on
    every backend: with ``SELECT ... FOR UPDATE`` where the database has it (PostgreSQL, MySQL, Oracle), and
    on SQLite, which ignores ``select_for_update()``, with a no-op UPDATE first, which takes the database
    write lock before the row is read.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("lock_row() must be called inside transaction.atomic().")
    manager = model._default_manager
    if connection.features.has_select_for_update:
        row = manager.select_for_update().filter(pk=pk).first()
        if row is not None:
            return row
    elif manager.filter(pk=pk).update(**{model._meta.pk.attname: pk}):
        return manager.get(pk=pk)
    manager.get_or_create(pk=pk, defaults=defaults)
    return manager.select_for_update().get(pk=pk)
