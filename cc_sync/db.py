"""Database helpers shared by the token refresher, the rate limiter and the claim of a signup."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from django.db import connections, models, router, transaction
from django.db.models import sql

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


def update_returning(queryset: models.QuerySet[M], **values: Any) -> list[M] | None:
    """``queryset.update(**values)`` in one statement that also returns the updated rows, as they are now.

    ``UPDATE ... RETURNING`` on PostgreSQL and on SQLite 3.35 or newer: a claim or a reservation costs one
    statement instead of an UPDATE and a SELECT (or a locked read and a write). Returns ``None`` where the
    database cannot return columns from an UPDATE (MySQL, MariaDB); the caller then does it the long way.
    The values go through Django's own UPDATE compiler and the columns through the fields' converters, so
    expressions (``F("attempts") + 1``), JSON and dates behave as with ``update()`` and ``get()``.
    """
    model = queryset.model
    using = getattr(queryset, "_db", None) or router.db_for_write(model)
    connection = connections[using]
    if (
        connection.vendor not in ("postgresql", "sqlite")
        or not connection.features.can_return_columns_from_insert
    ):
        return None
    query = cast(sql.UpdateQuery, queryset.query.chain(sql.UpdateQuery))
    query.add_update_values(values)
    compiler = query.get_compiler(using)
    statement, params = compiler.as_sql()
    fields = model._meta.concrete_fields
    returning = ", ".join(connection.ops.quote_name(field.column or field.attname) for field in fields)
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {returning}", params)
        rows: list[Any] = cursor.fetchall()
    converters = compiler.get_converters([field.get_col(model._meta.db_table) for field in fields])
    if converters:
        rows = list(compiler.apply_converters(rows, converters))
    names = [field.attname for field in fields]
    return [model.from_db(using, names, row) for row in rows]
