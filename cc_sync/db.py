"""Database helpers shared by the token refresher and the rate limiter."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models, transaction

M = TypeVar("M", bound=models.Model)


def lock_row(model: type[M], pk: Any, **defaults: Any) -> M:
    """Inside ``transaction.atomic()``: lock the row ``pk`` (creating it if needed) and return it fresh.

    The no-op UPDATE comes first so that the write lock is taken before the row is read. On PostgreSQL
    that is the row lock ``select_for_update()`` also takes; on SQLite, which ignores
    ``select_for_update()``, it is the database write lock. Either way two processes can never both
    read the old value, so the caller's read-check-write is serialised on every backend.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_row() must be called inside transaction.atomic().")
    if not model.objects.filter(pk=pk).update(**{model._meta.pk.attname: pk}):
        model.objects.get_or_create(pk=pk, defaults=defaults)
    return model.objects.select_for_update().get(pk=pk)
