"""Database helpers: the row lock of the token refresher and the rate limiter, the claim's UPDATE and the
signup's INSERT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.db import connections, models, router, transaction
from django.db.models import signals, sql

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


def insert_unless(instance: models.Model, blocker: type[models.Model], field: str, values: list[Any]) -> bool:
    """Save the new ``instance`` unless a ``blocker`` row has ``field`` in ``values``; True if it was saved.

    One statement where the database can return the new id from an ``INSERT ... SELECT`` (PostgreSQL,
    SQLite 3.35+): ``INSERT INTO t (...) SELECT ... WHERE NOT EXISTS (SELECT 1 FROM blocker WHERE field IN
    (...)) RETURNING id``, so the check costs no round trip of its own. Elsewhere the check, then ``save()``.
    The instance's pk is set when it was saved; ``pre_save`` and ``post_save`` are sent as ``save()`` sends
    them. The SQL is written here, not compiled from a queryset: compiling one costs more than the INSERT.
    """
    model = type(instance)
    opts = model._meta
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite") or not (
        connection.features.can_return_columns_from_insert
    ):
        if blocker._default_manager.using(using).filter(**{f"{field}__in": values}).exists():
            return False
        instance.save(using=using, force_insert=True)
        return True
    fields = _insert_fields(model)
    check = _column_field(blocker, field)
    key = (connection.vendor, model, blocker, field, len(values))
    sql = _SQL.get(key) or _SQL.setdefault(key, _insert_unless_sql(connection.ops.quote_name, *key[1:]))
    signals.pre_save.send(sender=model, instance=instance, raw=False, using=using, update_fields=None)
    params = [field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields]
    params += [check.get_db_prep_value(value, connection) for value in values]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    setattr(instance, opts.pk.attname, row[0])
    instance._state.adding = False
    instance._state.db = using
    signals.post_save.send(
        sender=model, instance=instance, created=True, update_fields=None, raw=False, using=using
    )
    return True


def _insert_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The columns an INSERT of ``model`` writes: all but an auto-increment pk and generated ones."""
    return [
        field
        for field in model._meta.local_concrete_fields
        if not (field.primary_key and field.db_returning) and not getattr(field, "generated", False)
    ]


def _column_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a column.")
    return field


# The statement of each (vendor, model, blocker, field, number of values), written once per process.
_SQL: dict[tuple[str, type[models.Model], type[models.Model], str, int], str] = {}


def _insert_unless_sql(
    quote_name: Callable[[str], str],
    model: type[models.Model],
    blocker: type[models.Model],
    field: str,
    count: int,
) -> str:
    def quote(name: str | None) -> str:  # concrete fields always have a column
        return quote_name(str(name))

    columns = ", ".join(quote(column.column) for column in _insert_fields(model))
    placeholders = ", ".join(["%s"] * len(_insert_fields(model)))
    check = _column_field(blocker, field)
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) SELECT {placeholders} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {quote(blocker._meta.db_table)} "
        f"WHERE {quote(check.column)} IN ({', '.join(['%s'] * count)})) "
        f"RETURNING {quote(model._meta.pk.column)}"
    )
