"""Database helpers: the row lock of the token refresher and the rate limiter, and the signup's INSERT."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import connections, models, router, transaction
from django.db.models import signals

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


def insert_unless(instance: models.Model, blocker: models.QuerySet[Any]) -> bool:
    """Save the new ``instance`` unless ``blocker`` finds a row; True if it was saved (its pk is then set).

    One statement where the database can return the new id from an ``INSERT ... SELECT`` (PostgreSQL,
    SQLite 3.35+): ``INSERT INTO t (...) SELECT ... WHERE NOT EXISTS (blocker) RETURNING id``, so the check
    costs no round trip of its own and nothing can come between the check and the INSERT in this
    statement. Elsewhere the check and then ``save()``. Sends ``pre_save`` and ``post_save`` as ``save()``.
    """
    model = type(instance)
    opts = model._meta
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite") or not (
        connection.features.can_return_columns_from_insert
    ):
        if blocker.using(using).exists():
            return False
        instance.save(using=using, force_insert=True)
        return True
    pk = opts.pk
    fields = [
        field
        for field in opts.local_concrete_fields
        if not (field.primary_key and field.db_returning) and not getattr(field, "generated", False)
    ]

    def quote(name: str | None) -> str:  # concrete fields always have a column
        return connection.ops.quote_name(str(name))

    signals.pre_save.send(sender=model, instance=instance, raw=False, using=using, update_fields=None)
    params = [field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields]
    blocker_sql, blocker_params = blocker.using(using).values("pk").query.get_compiler(using).as_sql()
    sql = (
        f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"SELECT {', '.join(['%s'] * len(fields))} WHERE NOT EXISTS ({blocker_sql}) "
        f"RETURNING {quote(pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *blocker_params])
        row = cursor.fetchone()
    if row is None:
        return False
    setattr(instance, pk.attname, row[0])
    instance._state.adding = False
    instance._state.db = using
    signals.post_save.send(
        sender=model, instance=instance, created=True, update_fields=None, raw=False, using=using
    )
    return True
