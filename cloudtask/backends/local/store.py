"""The local queue's tasks in the database: adding them, their names, and changing them.

A push adds a task; a name stays taken for ``LOCAL_DEDUP_WINDOW`` after its task finished,
and a deleted queue's name for ``LOCAL_QUEUE_REUSE_WINDOW``, as on Cloud Tasks. Claiming due
tasks and recording attempts is in :mod:`.claims`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from ... import conf
from ...exceptions import ConfigurationError, QueueDeletedRecently, TaskAlreadyExists
from ...models import LocalQueue, LocalTask

if TYPE_CHECKING:
    from ..base import TaskMessage

#: Cloud Tasks' dispatch deadline for HTTP targets when the task sets none.
DEFAULT_DEADLINE = timedelta(minutes=10)
FINISHED = ("succeeded", "failed", "deleted")
#: Tasks still in their queue: waiting for an attempt, or being attempted.
WAITING = ("queued", "running")

#: How to lift the block on a deleted queue's name in development.
REUSE_HINT = (
    "The local queue keeps that rule; in development, set "
    "CLOUDTASK['LOCAL_QUEUE_REUSE_WINDOW'] = 0 to allow the name again at once."
)


def require_tables() -> None:
    """Raise ConfigurationError when the local queue's tables are not in the database yet."""
    try:
        tables = connection.introspection.table_names()
    except DatabaseError:
        return  # the database cannot tell (an aborted transaction): the caller's error stands
    missing = [m._meta.db_table for m in (LocalQueue, LocalTask) if m._meta.db_table not in tables]
    if missing:
        raise ConfigurationError(
            f"The local queue's tables ({', '.join(missing)}) are not in the database yet: "
            "run python manage.py migrate."
        )


def add(message: TaskMessage, task_id: str) -> str:
    """Store ``message`` as task ``task_id`` of its queue; return the id."""
    now = timezone.now()
    queue, _ = LocalQueue.objects.get_or_create(name=message.queue)
    if queue.deleted_at is not None:
        reclaim(queue, now)
    try:
        # A savepoint, so a refused name leaves the caller's transaction usable.
        with transaction.atomic():
            if message.task_id is not None:
                _release_name(message.queue, task_id, now)
            LocalTask.objects.create(
                queue=message.queue,
                name=task_id,
                task=message.task_name,
                method=message.method,
                url=message.url,
                headers=dict(message.headers),
                body=message.body,
                dispatch_deadline=message.timeout or DEFAULT_DEADLINE,
                created_at=now,
                schedule_time=message.eta or now,
                # Decided at push time, as Cloud Tasks stores the token's settings.
                oidc_token=message.oidc_token,
            )
    except IntegrityError:
        raise TaskAlreadyExists(task_id, message.queue) from None
    return task_id


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


def _release_name(queue: str, task_id: str, now: datetime) -> None:
    LocalTask.objects.filter(
        queue=queue, name=task_id, status__in=FINISHED, finished_at__lte=now - conf.dedup_window()
    ).delete()


def prune(now: datetime) -> int:
    """Delete succeeded and deleted tasks whose names are free again; failed ones stay."""
    count, _ = LocalTask.objects.filter(
        status__in=("succeeded", "deleted"), finished_at__lte=now - conf.dedup_window()
    ).delete()
    return int(count)


def pause(queue: str, paused: bool = True) -> None:
    """Stop (or with ``paused=False`` restart) deliveries from ``queue``."""
    LocalQueue.objects.update_or_create(name=queue, defaults={"paused": paused})


def purge(queue: str) -> int:
    """Delete every waiting or running task of ``queue``; their names stay taken a while."""
    return delete_tasks(Q(queue=queue))


def delete_tasks(where: Q) -> int:
    """Delete the matching unfinished tasks, as Cloud Tasks' DeleteTask does."""
    updated = LocalTask.objects.filter(where, status__in=("queued", "running")).update(
        status="deleted", finished_at=timezone.now(), lease_token="", lease_expires=None
    )
    return int(updated)


def run_now(where: Q, force: bool = False) -> int:
    """Make the matching queued tasks due at once; ``force``: even if their queue is paused."""
    fields: dict[str, Any] = {"schedule_time": timezone.now()}
    if force:
        fields["forced"] = True
    updated = LocalTask.objects.filter(where, status="queued").update(**fields)
    return int(updated)


def retry(where: Q) -> int:
    """Queue the matching failed tasks again, with a fresh attempt budget."""
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
