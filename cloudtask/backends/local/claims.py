"""Claiming due tasks of the local queue and recording how their attempts went.

A worker claims due tasks with a lease, so each attempt goes to exactly one worker, within
the queue's limits (:mod:`.limits`), and records every answer of a batch in one statement.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ...models import LocalQueue, LocalTask
from .limits import lock_queue, save_bucket, within_limits
from .sql import (
    RUNNING,
    due_params,
    execute,
    fetch,
    in_queues,
    limit_clause,
    placeholders,
    record_batch,
    returns_rows,
    sql,
    update_statement,
    when,
)

if TYPE_CHECKING:
    from ...queues import QueueConfig

#: Extra lease time past the deadline, for the worker to record the answer.
LEASE_GRACE = timedelta(seconds=5)
#: How often a claim that the database refused for a conflict is tried before giving up.
CLAIM_TRIES = 5
#: The status an attempt without an HTTP answer is reported as on the next attempt's
#: ``X-CloudTasks-TaskPreviousResponse``, by its retry reason: what a gateway answers then.
NO_ANSWER_STATUS = {"DEADLINE_EXCEEDED": 504, "UNAVAILABLE": 503}


@dataclass(frozen=True)
class Claimed:
    """A task claimed by one worker for one attempt."""

    id: int
    token: str
    queue: str
    #: The Cloud Tasks task id (``LocalTask.name``).
    task_id: str
    #: The registry name of the task (``LocalTask.task``).
    task_name: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline: timedelta
    schedule_time: datetime
    dispatch_count: int  # including this attempt
    response_count: int
    execution_count: int
    previous_response: int | None
    retry_reason: str
    first_attempt_at: datetime
    #: The OIDC token Cloud Tasks would add (see ``cloudtask.oidc.push_token``), or None.
    oidc_token: dict[str, str] | None = None
    #: Claimed after another worker's lease ran out: that worker's attempt counts.
    reclaimed: bool = False


@dataclass(frozen=True)
class Lease:
    """What one claim took from a queue."""

    claimed: list[Claimed]
    #: The queue's rate limit held back tasks that were due: tokens come back within 1/rate s.
    throttled: bool = False


@dataclass(frozen=True)
class DueQueue:
    """A queue with tasks to attempt now, and what the worker needs to serve it."""

    name: str
    #: ``LocalQueue.config``: None while the queue follows ``CLOUDTASK["QUEUES"]``.
    config: dict[str, Any] | None
    #: The queue is paused: only the tasks ``run_task`` forced may go out.
    forced_only: bool


def serve(now: datetime, queues: Iterable[str] | None = None) -> list[DueQueue]:
    """Return the queues to serve now: a task is due, not paused (or forced), not deleted."""
    names = None if queues is None else list(queues)
    if names == []:
        return []
    statement = sql("serve", queues=in_queues(names))
    config_field = LocalQueue._meta.get_field("config")
    forced, rows = set(), {}
    for name, is_forced, paused, deleted, config in fetch(
        statement, [*due_params(now), *(names or [])]
    ):
        if is_forced:
            forced.add(name)
        config = config_field.from_db_value(config, None, connection)  # type: ignore[union-attr]
        rows[name] = (bool(paused), bool(deleted), config)
    served = []
    for name in sorted(rows):
        paused, deleted, config = rows[name]
        if not deleted and (not paused or name in forced):
            served.append(DueQueue(name, config, forced_only=paused))
    return served


def due_queues(now: datetime, queues: Iterable[str] | None = None) -> list[str]:
    """Return the names of the queues to serve now (see :func:`serve`)."""
    return [queue.name for queue in serve(now, queues)]


def is_conflict(exc: BaseException) -> bool:
    """Return whether the database rolled a transaction back for a conflict: try it again.

    PostgreSQL's serialization failure and deadlock (REPEATABLE READ and SERIALIZABLE raise
    the first when two workers claim at once); MySQL and MariaDB's deadlock and lock wait
    timeout.
    """
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if state in ("40001", "40P01"):
        return True
    args: tuple[Any, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] in (1205, 1213)


def lease(
    queue: str,
    limit: int,
    now: datetime,
    *,
    config: QueueConfig | None = None,
    forced_only: bool = False,
    worker: str = "",
) -> Lease:
    """Lease up to ``limit`` due tasks of ``queue``; with ``config``, within its limits.

    The limits are the queue's, shared by every worker (see :mod:`.limits`). ``worker``
    names the heartbeat that keeps the lease (see :mod:`.heartbeats`). A claim the database
    refuses for a conflict with another worker's is tried again, up to ``CLAIM_TRIES`` times.
    """
    for tries in range(1, CLAIM_TRIES + 1):
        try:
            return _claim(queue, limit, now, config, forced_only, worker)
        except DatabaseError as exc:
            # Inside an outer transaction the conflict aborted it: only its owner can retry.
            if tries == CLAIM_TRIES or connection.in_atomic_block or not is_conflict(exc):
                raise
            time.sleep(random.uniform(0, 0.005 * tries))  # apart, not in step again
    raise AssertionError("unreachable")


def _claim(
    queue: str,
    limit: int,
    now: datetime,
    config: QueueConfig | None,
    forced_only: bool,
    worker: str,
) -> Lease:
    token = uuid.uuid4().hex
    with transaction.atomic():
        lock_queue(queue)
        bucket, allowed, rate_bound = within_limits(queue, limit, now, config)
        found: list[tuple[int, str]] = []
        if allowed > 0:
            # Rows locked by a worker recording its answers are skipped, not waited for.
            statement = sql("candidates", limit=limit_clause(allowed))
            found = fetch(statement, [queue, *due_params(now), forced_only, not forced_only])
        rows = _lease([pk for pk, _ in found], token, now, worker)
        if bucket is not None:
            bucket.take(len(rows))
            save_bucket(queue, bucket)
    reclaimed = {pk for pk, status in found if status == RUNNING}
    claimed = [_claimed(row, token, reclaimed=row.pk in reclaimed) for row in rows]
    # Held back by the rate, with more due: the next token comes within 1/rate seconds.
    return Lease(claimed, throttled=rate_bound and len(found) >= allowed)


def _lease(ids: list[int], token: str, now: datetime, worker: str) -> list[LocalTask]:
    """Lease the tasks ``ids`` that are still due; return them, oldest first."""
    if not ids:
        return []
    moment = when(now)
    # The last False: run_task forces one attempt; a retry after it waits for the queue.
    params = [RUNNING, token, worker, when(now + LEASE_GRACE), moment, moment, False]
    params += [*due_params(now), *ids]
    lease = sql("lease", ids=placeholders(len(ids)))
    if returns_rows():
        rows = list(LocalTask.objects.raw(f"{lease} RETURNING *", params))
        return sorted(rows, key=lambda row: (row.schedule_time, row.pk))
    execute(lease, params)
    return list(LocalTask.objects.raw(sql("leased"), [token]))


def _claimed(row: LocalTask, token: str, *, reclaimed: bool = False) -> Claimed:
    previous = row.last_response_status if row.dispatch_count > 1 else None
    reason = row.retry_reason
    if reclaimed:
        # The last attempt's worker died or stalled with it: to the task, that attempt
        # timed out, as a crashed dispatch does on Cloud Tasks.
        previous, reason = None, "DEADLINE_EXCEEDED"
    if previous is None and row.dispatch_count > 1:
        previous = NO_ANSWER_STATUS.get(reason)
    return Claimed(
        id=row.pk,
        token=token,
        queue=row.queue,
        task_id=row.name,
        task_name=row.task,
        method=row.method,
        url=row.url,
        headers=dict(row.headers),
        body=bytes(row.body),
        deadline=row.dispatch_deadline,
        schedule_time=row.schedule_time,
        dispatch_count=row.dispatch_count,
        response_count=row.response_count,
        execution_count=row.execution_count,
        previous_response=previous,
        retry_reason=reason,
        first_attempt_at=row.first_attempt_at or row.last_attempt_at or timezone.now(),
        oidc_token=row.oidc_token,
        reclaimed=reclaimed,
    )


def awaiting_retry(queues: Iterable[str] | None = None) -> int:
    """Return how many tasks failed an attempt and wait for the next one."""
    tasks = LocalTask.objects.filter(status="queued", dispatch_count__gt=0)
    if queues is not None:
        tasks = tasks.filter(queue__in=list(queues))
    return int(tasks.count())


def record(outcomes: list[tuple[Claimed, dict[str, Any]]]) -> set[int]:
    """Store the outcomes of attempts; return the ids stored.

    A task whose lease was lost (purged, deleted, or claimed again after the lease ran out)
    is left alone. Where the database returns rows from an UPDATE (PostgreSQL, SQLite 3.35
    and later), the whole batch is one statement; elsewhere, a transaction reads which
    leases still hold, then updates those rows in one ``executemany``.
    """
    if not outcomes:
        return set()
    # Every outcome sets the same fields (see delivery.outcome_fields); the lease ends too.
    names = (*outcomes[0][1], "lease_token", "lease_expires", "lease_worker")
    # The values are of their columns' Python types already; datetimes take the database's
    # form (SQLite stores them as text).
    rows = {
        claimed.id: [
            when(value) if isinstance(value, datetime) else value
            for value in (*values.values(), "", None, "")
        ]
        for claimed, values in outcomes
    }
    leases = {claimed.id: claimed.token for claimed, _ in outcomes}
    if returns_rows():
        batch = [(pk, leases[pk], row) for pk, row in rows.items()]
        return {pk for (pk,) in fetch(*record_batch(names, batch))}
    ids = placeholders(len(leases))
    with transaction.atomic():
        if not connection.features.has_select_for_update:
            execute(sql("touch", ids=ids), list(leases))
        found = fetch(sql("holders", ids=ids), list(leases))
        held = {pk for pk, token in found if leases[pk] == token}
        if held:
            with connection.cursor() as cursor:
                statement = update_statement(names)
                cursor.executemany(statement, [[*rows[pk], pk, leases[pk]] for pk in held])
    return held
