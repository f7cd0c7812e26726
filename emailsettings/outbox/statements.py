"""Writing an outcome in one SQL statement.

An outcome is three writes that stand or fall together: the row's conditional ``UPDATE``
(still this attempt's?), its timeline event, and what follows from it (the invoice's "last
emailed"). In a transaction they cost five round trips (BEGIN, the three, COMMIT); on
PostgreSQL one statement with data-modifying ``WITH`` clauses does the same, atomically (a
statement is its own transaction), the event and the rest written only when the update
changed the row. Other databases (SQLite, the embedded default) get the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.db import connections, models, transaction
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery


def update_then(
    row: QuerySet[Any],
    changes: dict[str, Any],
    *,
    insert: models.Model,
    follow: Sequence[tuple[QuerySet[Any], dict[str, Any]]] = (),
) -> bool:
    """``row.update(**changes)``; when it changed the row, ``insert`` is inserted and each
    ``(queryset, changes)`` of ``follow`` updated, all or none. ``row`` selects one row at
    most (a primary-key filter). Whether the update changed it."""
    connection = connections[row.db]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=row.db):
            if not row.update(**changes):
                return False
            insert.save(force_insert=True, using=row.db)
            for queryset, values in follow:
                queryset.update(**values)
            return True
    update_sql, params = _update(row, changes)
    insert_sql, insert_params = _insert(insert, row.db)
    clauses = [f"changed AS ({update_sql} RETURNING 1)", f"added AS ({insert_sql} FROM changed)"]
    params += insert_params
    for number, (queryset, values) in enumerate(follow):
        sql, follow_params = _update(queryset, values)
        # Every UPDATE compiled from a filtered queryset ends with its WHERE clause. (SQL
        # compiled by Django, every value a parameter: nothing of the data in the text.)
        clauses.append(f"follow{number} AS ({sql} AND EXISTS (SELECT 1 FROM changed))")  # noqa: S608
        params += follow_params
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(clauses)} SELECT count(*) FROM changed", params)  # noqa: S608
        (changed,) = cursor.fetchone()
    return bool(changed)


def _update(queryset: QuerySet[Any], changes: dict[str, Any]) -> tuple[str, list[Any]]:
    """The SQL of ``queryset.update(**changes)``, as Django runs it."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(changes)
    query.annotations = {}
    sql, params = query.get_compiler(queryset.db).as_sql()
    if " WHERE " not in sql:
        raise ValueError("an update in one statement needs a filtered queryset")
    return sql, list(params)


def _insert(instance: models.Model, using: str) -> tuple[str, list[Any]]:
    """``INSERT INTO table (columns) SELECT values`` for ``instance`` (its defaults applied,
    its automatic primary key left to the database); a ``FROM`` completes it."""
    connection = connections[using]
    meta = instance._meta
    fields = [field for field in meta.concrete_fields if field is not meta.auto_field]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields
    ]
    placeholders = ", ".join("%s" for _field in fields)
    table = connection.ops.quote_name(meta.db_table)
    return f"INSERT INTO {table} ({columns}) SELECT {placeholders}", values
