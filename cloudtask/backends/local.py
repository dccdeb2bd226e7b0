"""The local development queue: tasks wait in the project's database for ``cloudtask_worker``.

A push stores exactly the HTTP request Cloud Tasks would make. ``manage.py cloudtask_worker``
claims due tasks with a lease and POSTs them to the endpoint with Cloud Tasks' headers,
retries and limits, so development runs the production code path. Without
``CLOUDTASK["URL"]`` tasks go to ``http://127.0.0.1:8000`` plus the endpoint's path, where
``runserver`` listens by default.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import conf
from ..exceptions import QueueDeletedRecently, TaskAlreadyExists
from ..targets import oidc_token
from ..task import TaskHandle
from .base import BaseBackend, TaskMessage, endpoint_path
from .immediate import generated_task_id
from .local_limits import lock_queue, save_bucket, within_limits

if TYPE_CHECKING:
    from ..models import LocalQueue, LocalTask
    from ..queues import QueueConfig
    from .management import QueueManager

#: Where ``runserver`` listens unless told otherwise.
DEFAULT_ORIGIN = "http://127.0.0.1:8000"
#: Cloud Tasks' dispatch deadline for HTTP targets when the task sets none.
DEFAULT_DEADLINE = timedelta(minutes=10)
#: Extra lease time past the deadline, for the worker to record the answer.
LEASE_GRACE = timedelta(seconds=5)

FINISHED = ("succeeded", "failed", "deleted")
#: Tasks still in their queue: waiting for an attempt, or being attempted.
WAITING = ("queued", "running")

#: How to lift the block on a deleted queue's name in development.
REUSE_HINT = (
    "The local queue keeps that rule; in development, set "
    "CLOUDTASK['LOCAL_QUEUE_REUSE_WINDOW'] = 0 to allow the name again at once."
)


class LocalBackend(BaseBackend):
    """Stores each push in the database; ``manage.py cloudtask_worker`` delivers it."""

    def default_url(self) -> str:
        """Return runserver's default address plus the endpoint's path."""
        return DEFAULT_ORIGIN + endpoint_path()

    def manager(self) -> QueueManager:
        """Return the manager of the local queues (see ``cloudtask.control``)."""
        from .local_manage import LocalManager

        return LocalManager()

    def push(self, message: TaskMessage) -> TaskHandle:
        from ..models import LocalQueue, LocalTask

        now = timezone.now()
        name = message.name or generated_task_id()
        queue, _ = LocalQueue.objects.get_or_create(name=message.queue)
        if queue.deleted_at is not None:
            reclaim(queue, now)
        try:
            # A savepoint, so a refused name leaves the caller's transaction usable.
            with transaction.atomic():
                if message.name is not None:
                    _release_name(message.queue, name, now)
                LocalTask.objects.create(
                    queue=message.queue,
                    name=name,
                    task=message.task.name,
                    method=message.method,
                    url=message.url,
                    headers=dict(message.headers),
                    body=message.body,
                    dispatch_deadline=message.timeout or DEFAULT_DEADLINE,
                    created_at=now,
                    schedule_time=message.eta or now,
                    # Decided now, as Cloud Tasks stores the token's settings with the task.
                    oidc_token=oidc_token(message.task, message.url),
                )
        except IntegrityError:
            raise TaskAlreadyExists(name, message.queue) from None
        return message.handle(name)


def dedup_window() -> timedelta:
    """Return how long a name stays taken after its task ran or was deleted."""
    return conf.check_dedup_window(
        conf.get("LOCAL_DEDUP_WINDOW"), "CLOUDTASK['LOCAL_DEDUP_WINDOW']"
    )


def queue_path(queue: str) -> str:
    """Return the full name of a local queue, shaped like a Cloud Tasks queue path."""
    return f"local/queues/{queue}"


def reuse_window() -> timedelta:
    """Return how long the name of a deleted queue stays blocked."""
    return conf.check_dedup_window(
        conf.get("LOCAL_QUEUE_REUSE_WINDOW"), "CLOUDTASK['LOCAL_QUEUE_REUSE_WINDOW']"
    )


def reclaim(queue: LocalQueue, now: datetime) -> None:
    """Bring a deleted queue back as new, or raise QueueDeletedRecently inside the window."""
    if queue.deleted_at is None:
        return
    if now - queue.deleted_at < reuse_window():
        raise QueueDeletedRecently(queue.name, queue_path(queue.name), hint=REUSE_HINT)
    # Like a queue Cloud Tasks creates anew: running, with the configured settings.
    queue.deleted_at, queue.paused, queue.config, queue.created_at = None, False, None, now
    queue.save(update_fields=["deleted_at", "paused", "config", "created_at"])


def _release_name(queue: str, name: str, now: datetime) -> None:
    from ..models import LocalTask

    LocalTask.objects.filter(
        queue=queue, name=name, status__in=FINISHED, finished_at__lte=now - dedup_window()
    ).delete()


@dataclass(frozen=True)
class Claimed:
    """A task claimed by one worker for one attempt."""

    id: int
    token: str
    queue: str
    name: str
    task: str
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
    #: The OIDC token Cloud Tasks would add (see ``cloudtask.targets.oidc_token``), or None.
    oidc_token: dict[str, str] | None = None
    #: Claimed after another worker's lease ran out: that worker's attempt counts.
    reclaimed: bool = False


@dataclass(frozen=True)
class Lease:
    """What one claim took from a queue."""

    claimed: list[Claimed]
    #: The queue's rate limit held back tasks that were due: tokens come back within 1/rate s.
    throttled: bool = False


def due(now: datetime) -> Q:
    """Match tasks that may be attempted now: queued and due, or left by a dead worker."""
    return Q(status="queued", schedule_time__lte=now) | Q(status="running", lease_expires__lt=now)


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
    from ..models import LocalQueue, LocalTask

    tasks = LocalTask.objects.filter(due(now))
    if queues is not None:
        tasks = tasks.filter(queue__in=list(queues))
    # order_by() drops the model's ordering, which would otherwise defeat the DISTINCT.
    pairs = set(tasks.order_by().values_list("queue", "forced").distinct())
    forced = {name for name, is_forced in pairs if is_forced}
    found = sorted({name for name, _ in pairs})
    rows = {
        name: (paused, deleted_at, config)
        for name, paused, deleted_at, config in LocalQueue.objects.filter(
            name__in=found
        ).values_list("name", "paused", "deleted_at", "config")
    }
    served = []
    for name in found:
        paused, deleted_at, config = rows.get(name, (False, None, None))
        if deleted_at is None and (not paused or name in forced):
            served.append(DueQueue(name, config, forced_only=paused))
    return served


def due_queues(now: datetime, queues: Iterable[str] | None = None) -> list[str]:
    """Return the names of the queues to serve now (see :func:`serve`)."""
    return [queue.name for queue in serve(now, queues)]


def claim(queue: str, limit: int, now: datetime, forced_only: bool = False) -> list[Claimed]:
    """Lease up to ``limit`` due tasks of ``queue`` (only forced ones if it is paused)."""
    return lease(queue, limit, now, forced_only=forced_only).claimed


def lease(
    queue: str,
    limit: int,
    now: datetime,
    *,
    config: QueueConfig | None = None,
    forced_only: bool = False,
) -> Lease:
    """Lease up to ``limit`` due tasks of ``queue``; with ``config``, within its limits.

    The limits are the queue's, shared by every worker (see :mod:`.local_limits`).
    """
    from ..models import LocalTask

    token = uuid.uuid4().hex
    candidates = LocalTask.objects.filter(due(now), queue=queue).order_by("schedule_time", "id")
    if forced_only:
        candidates = candidates.filter(forced=True)
    with transaction.atomic():
        lock_queue(queue)
        bucket, allowed, rate_bound = within_limits(queue, limit, now, config)
        if connection.features.has_select_for_update_skip_locked:
            # Rows locked by a worker recording its answers are skipped, not waited for.
            candidates = candidates.select_for_update(skip_locked=True)
        found = list(candidates.values_list("id", "status")[:allowed]) if allowed > 0 else []
        _lease([pk for pk, _ in found], token, now)
        rows = list(LocalTask.objects.filter(lease_token=token).order_by("schedule_time", "id"))
        if bucket is not None:
            bucket.take(len(rows))
            save_bucket(queue, bucket)
    reclaimed = {pk for pk, status in found if status == "running"}
    claimed = [_claimed(row, token, reclaimed=row.pk in reclaimed) for row in rows]
    # Held back by the rate, with more due: the next token comes within 1/rate seconds.
    return Lease(claimed, throttled=rate_bound and len(found) >= allowed)


def _lease(ids: list[int], token: str, now: datetime) -> None:
    from ..models import LocalTask

    if not ids:
        return
    # The WHERE is evaluated again under the row lock, so a task another worker claimed
    # in between is not matched: each attempt goes to exactly one worker.
    LocalTask.objects.filter(due(now), id__in=ids).update(
        status="running",
        lease_token=token,
        lease_expires=ExpressionWrapper(
            Value(now + LEASE_GRACE) + F("dispatch_deadline"), output_field=DateTimeField()
        ),
        dispatch_count=F("dispatch_count") + 1,
        first_attempt_at=Coalesce(F("first_attempt_at"), Value(now)),
        last_attempt_at=now,
        # run_task forces one attempt; a retry after it waits for the queue as usual.
        forced=False,
    )


def _claimed(row: LocalTask, token: str, *, reclaimed: bool = False) -> Claimed:
    return Claimed(
        id=row.pk,
        token=token,
        queue=row.queue,
        name=row.name,
        task=row.task,
        method=row.method,
        url=row.url,
        headers=dict(row.headers),
        body=bytes(row.body),
        deadline=row.dispatch_deadline,
        schedule_time=row.schedule_time,
        dispatch_count=row.dispatch_count,
        response_count=row.response_count,
        execution_count=row.execution_count,
        previous_response=row.last_response_status if row.dispatch_count > 1 else None,
        retry_reason=row.retry_reason,
        first_attempt_at=row.first_attempt_at or row.last_attempt_at or timezone.now(),
        oidc_token=row.oidc_token,
        reclaimed=reclaimed,
    )


def awaiting_retry(queues: Iterable[str] | None = None) -> int:
    """Return how many tasks failed an attempt and wait for the next one."""
    from ..models import LocalTask

    tasks = LocalTask.objects.filter(status="queued", dispatch_count__gt=0)
    if queues is not None:
        tasks = tasks.filter(queue__in=list(queues))
    return int(tasks.count())


def record(outcomes: list[tuple[Claimed, dict[str, Any]]]) -> set[int]:
    """Store the outcomes of attempts in one statement; return the ids stored.

    A task whose lease was lost (purged, deleted, or claimed again after the lease ran out)
    is left alone. Call inside a transaction, so nothing changes between the two statements.
    """
    from ..models import LocalTask

    if not outcomes:
        return set()
    leases = {claimed.id: claimed.token for claimed, _ in outcomes}
    held = {
        pk
        for pk, token in LocalTask.objects.select_for_update()
        .filter(pk__in=list(leases))
        .values_list("pk", "lease_token")
        if leases[pk] == token
    }
    _update_many([(claimed, fields) for claimed, fields in outcomes if claimed.id in held])
    return held


def _update_many(outcomes: list[tuple[Claimed, dict[str, Any]]]) -> None:
    from ..models import LocalTask

    if not outcomes:
        return
    # One executemany: the ORM would need a statement per row, or bulk_update's CASE
    # expressions, which cost more than the deliveries themselves.
    meta, quote = LocalTask._meta, connection.ops.quote_name
    names = [*outcomes[0][1], "lease_token", "lease_expires"]
    columns = [meta.get_field(name) for name in names]
    assignments = ", ".join(f"{quote(str(field.column))} = %s" for field in columns)  # type: ignore[union-attr]
    # Only column names from the model go into the SQL; every value is a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {quote('id')} = %s AND {quote('lease_token')} = %s"
    )
    params = [
        [
            field.get_db_prep_save(value, connection)  # type: ignore[union-attr]
            for field, value in zip(columns, [*fields.values(), "", None], strict=True)
        ]
        + [claimed.id, claimed.token]
        for claimed, fields in outcomes
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def prune(now: datetime) -> int:
    """Delete succeeded and deleted tasks whose names are free again; failed ones stay."""
    from ..models import LocalTask

    count, _ = LocalTask.objects.filter(
        status__in=("succeeded", "deleted"), finished_at__lte=now - dedup_window()
    ).delete()
    return int(count)


def pause(queue: str, paused: bool = True) -> None:
    """Stop (or with ``paused=False`` restart) deliveries from ``queue``."""
    from ..models import LocalQueue

    LocalQueue.objects.update_or_create(name=queue, defaults={"paused": paused})


def purge(queue: str) -> int:
    """Delete every waiting or running task of ``queue``; their names stay taken a while."""
    return delete_tasks(Q(queue=queue))


def delete_tasks(where: Q) -> int:
    """Delete the matching unfinished tasks, as Cloud Tasks' DeleteTask does."""
    from ..models import LocalTask

    updated = LocalTask.objects.filter(where, status__in=("queued", "running")).update(
        status="deleted", finished_at=timezone.now(), lease_token="", lease_expires=None
    )
    return int(updated)


def run_now(where: Q, force: bool = False) -> int:
    """Make the matching queued tasks due at once; ``force``: even if their queue is paused."""
    from ..models import LocalTask

    fields: dict[str, Any] = {"schedule_time": timezone.now()}
    if force:
        fields["forced"] = True
    updated = LocalTask.objects.filter(where, status="queued").update(**fields)
    return int(updated)


def retry(where: Q) -> int:
    """Queue the matching failed tasks again, with a fresh attempt budget."""
    from ..models import LocalTask

    updated = LocalTask.objects.filter(where, status="failed").update(
        status="queued",
        schedule_time=timezone.now(),
        finished_at=None,
        dispatch_count=0,
        response_count=0,
        execution_count=0,
        first_attempt_at=None,
        retry_reason="",
    )
    return int(updated)
