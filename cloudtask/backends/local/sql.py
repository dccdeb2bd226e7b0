"""The statements a worker runs at every turn, written out once.

A busy worker finds the queues with due tasks, claims a few tasks and records a few answers
many times a second. The ORM would compile each of those queries again every time, which
costs more than running them (see ``benchmarks/local.py``); here they are built once per
database vendor. Only table and column names from the models go into the SQL, and every
value is a parameter (the one exception, a ``LIMIT``, is an ``int`` the worker computed).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from django.db import connection
from django.db.models import Model

from ...models import LocalQueue, LocalTask

#: The values of LocalTask.Status the statements compare with.
QUEUED, RUNNING = "queued", "running"


def _columns(model: type[Model]) -> SimpleNamespace:
    """Each concrete field's quoted column, by field name, and the quoted table as ``table``."""
    quote = connection.ops.quote_name
    names = {field.name: quote(str(field.column)) for field in model._meta.concrete_fields}
    return SimpleNamespace(table=quote(model._meta.db_table), **names)


@lru_cache(maxsize=4)
def statements(vendor: str) -> dict[str, str]:
    """Return the worker's statements for the current connection's vendor, by name."""
    ops, features = connection.ops, connection.features
    t, q = _columns(LocalTask), _columns(LocalQueue)
    # A task to attempt now: queued and due, or running with a lease that ran out.
    due = (
        f"(({t.status} = %s AND {t.schedule_time} <= %s) "
        f"OR ({t.status} = %s AND {t.lease_expires} < %s))"
    )
    # The lease lasts the task's dispatch deadline past a moment the worker computes, written
    # as the ORM writes datetime + duration on this database.
    deadline = (
        t.dispatch_deadline
        if features.has_native_duration_field
        else ops.format_for_duration_arithmetic(t.dispatch_deadline)
    )
    lease_expires = ops.combine_duration_expression("+", ["%s", deadline])
    for_update = (
        " " + ops.for_update_sql(skip_locked=True)
        if features.has_select_for_update_skip_locked
        else ""
    )
    return {
        # The queues with a due task (and whether one was forced by run_task), with their rows.
        "serve": (
            f"SELECT d.{t.queue}, d.{t.forced}, s.{q.paused}, "  # noqa: S608
            f"CASE WHEN s.{q.deleted_at} IS NULL THEN 0 ELSE 1 END, s.{q.config} "
            f"FROM (SELECT DISTINCT {t.queue}, {t.forced} FROM {t.table} WHERE {due}{{queues}}) d "
            f"LEFT JOIN {q.table} s ON s.{q.name} = d.{t.queue}"
        ),
        "in_queues": f" AND {t.queue} IN ({{names}})",
        # A write first: it takes SQLite's write lock before anything is read (two workers
        # that read first would deadlock upgrading to writers); other databases lock the row.
        "lock": f"UPDATE {q.table} SET {q.tokens_at} = {q.tokens_at} WHERE {q.name} = %s",  # noqa: S608
        # The queue's token bucket, whether a Retry-After holds it, and its running tasks.
        "limits": (
            f"SELECT {q.tokens}, {q.tokens_at}, "  # noqa: S608
            f"CASE WHEN {q.held_until} > %s THEN 1 ELSE 0 END, "
            f"(SELECT COUNT(*) FROM {t.table} WHERE {t.queue} = %s AND {t.status} = %s "
            f"AND {t.lease_expires} >= %s) FROM {q.table} WHERE {q.name} = %s"
        ),
        "bucket": (
            f"UPDATE {q.table} SET {q.tokens} = %s, {q.tokens_at} = %s "  # noqa: S608
            f"WHERE {q.name} = %s"
        ),
        # The next due tasks of a queue, oldest first (only those run_task forced, when the
        # queue is paused); rows another worker holds are skipped.
        "candidates": (
            f"SELECT {t.id}, {t.status} FROM {t.table} "  # noqa: S608
            f"WHERE {t.queue} = %s AND {due} AND ({t.forced} = %s OR %s) "
            f"ORDER BY {t.schedule_time}, {t.id} {{limit}}{for_update}"
        ),
        # The WHERE is evaluated again under the row lock, so a task another worker claimed
        # in between is not matched: each attempt goes to exactly one worker.
        "lease": (
            f"UPDATE {t.table} SET {t.status} = %s, {t.lease_token} = %s, "  # noqa: S608
            f"{t.lease_worker} = %s, {t.lease_expires} = {lease_expires}, "
            f"{t.dispatch_count} = {t.dispatch_count} + 1, "
            f"{t.first_attempt_at} = COALESCE({t.first_attempt_at}, %s), "
            f"{t.last_attempt_at} = %s, {t.last_attempt_scheduled_at} = {t.schedule_time}, "
            f"{t.last_response_at} = NULL, {t.forced} = %s "
            f"WHERE {due} AND {t.id} IN ({{ids}})"
        ),
        "leased": (
            f"SELECT * FROM {t.table} WHERE {t.lease_token} = %s "  # noqa: S608
            f"ORDER BY {t.schedule_time}, {t.id}"
        ),
        # SQLite locks nothing on a read: recording begins with a write, or two workers
        # whose reads both need to become writes fail at once with "database is locked".
        "touch": (
            f"UPDATE {t.table} SET {t.lease_token} = {t.lease_token} "  # noqa: S608
            f"WHERE {t.id} IN ({{ids}})"
        ),
        "holders": (
            f"SELECT {t.id}, {t.lease_token} FROM {t.table} "  # noqa: S608
            f"WHERE {t.id} IN ({{ids}})"
            + (" " + ops.for_update_sql() if features.has_select_for_update else "")
        ),
    }


def returns_rows() -> bool:
    """Return whether this database's UPDATE takes ``RETURNING`` (PostgreSQL, SQLite 3.35+)."""
    vendor = connection.vendor
    return vendor == "postgresql" or (
        vendor == "sqlite" and connection.features.can_return_columns_from_insert
    )


def update_statement(names: tuple[str, ...]) -> str:
    """Return the UPDATE of the fields ``names`` of one task whose lease is still the same.

    Its parameters: the values of ``names``, then the task's id and lease token.
    """
    return _update_statement(connection.vendor, names)


@lru_cache(maxsize=8)
def _update_statement(vendor: str, names: tuple[str, ...]) -> str:
    t = _columns(LocalTask)
    assignments = ", ".join(f"{getattr(t, name)} = %s" for name in names)
    return (
        f"UPDATE {t.table} SET {assignments} "  # noqa: S608
        f"WHERE {t.id} = %s AND {t.lease_token} = %s"
    )


def record_batch(
    names: tuple[str, ...], rows: list[tuple[int, str, list[Any]]]
) -> tuple[str, list[Any]]:
    """Return the UPDATE storing ``rows`` (id, lease token, values of ``names``), and its
    parameters; it returns the ids of the rows stored, those whose lease is still the same.
    """
    if connection.vendor == "postgresql":
        # One array per column: the same statement for any number of rows (PostgreSQL
        # parses it once), and typed, so that a column of NULLs is no problem.
        columns = [
            list(column)
            for column in zip(*((pk, token, *values) for pk, token, values in rows), strict=True)
        ]
        return _record_statement(connection.vendor, names, 0), columns
    params = [value for pk, token, values in rows for value in (pk, token, *values)]
    return _record_statement(connection.vendor, names, len(rows)), params


# Cached by vendor too: quoting and the statement's form are the database's.
@lru_cache(maxsize=64)
def _record_statement(vendor: str, names: tuple[str, ...], count: int) -> str:
    ops = connection.ops
    t = _columns(LocalTask)
    given = ["k", "lease", *(f"v_{name}" for name in names)]
    if vendor == "postgresql":
        types = ["bigint", "text"] + [
            str(LocalTask._meta.get_field(name).db_type(connection)) for name in names
        ]
        arrays = ", ".join(f"CAST(%s AS {kind}[])" for kind in types)
        source = f"unnest({arrays}) AS v ({', '.join(map(ops.quote_name, given))})"
        prefix = ""
    else:
        values = ", ".join([f"({placeholders(len(given))})"] * count)
        prefix = f"WITH v ({', '.join(map(ops.quote_name, given))}) AS (VALUES {values}) "
        source = "v"
    assignments = ", ".join(
        f"{getattr(t, name)} = v.{ops.quote_name(f'v_{name}')}" for name in names
    )
    return (
        f"{prefix}UPDATE {t.table} SET {assignments} FROM {source} "  # noqa: S608
        f"WHERE {t.table}.{t.id} = v.k AND {t.table}.{t.lease_token} = v.lease "
        f"RETURNING {t.table}.{t.id}"
    )


def sql(name: str, **parts: str) -> str:
    """Return statement ``name``, with its ``{parts}`` (placeholders or a LIMIT) filled in."""
    statement = statements(connection.vendor)[name]
    return statement.format(**parts) if parts else statement


def placeholders(count: int) -> str:
    """Return ``count`` comma-separated parameter placeholders."""
    return ", ".join(["%s"] * count)


def in_queues(names: list[str] | None) -> str:
    """Return the condition of ``serve`` keeping tasks of the queues ``names`` (all: None)."""
    if names is None:
        return ""
    return sql("in_queues", names=placeholders(len(names)))


def limit_clause(count: int) -> str:
    """Return the clause taking the first ``count`` rows, on this database."""
    return connection.ops.limit_offset_sql(0, int(count))


def when(moment: datetime) -> Any:
    """Return ``moment`` as a statement parameter (SQLite stores datetimes as text)."""
    return connection.ops.adapt_datetimefield_value(moment)


def due_params(now: datetime) -> list[Any]:
    """Return the parameters of the ``due`` condition at ``now``."""
    stamp = when(now)
    return [QUEUED, stamp, RUNNING, stamp]


def execute(statement: str, params: list[Any]) -> int:
    """Run a statement that writes; return how many rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def fetch(statement: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run a statement that reads; return its rows as they come from the database."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())
