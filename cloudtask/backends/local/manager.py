"""Queue and task management for the local queue, on the project's database.

It answers like Cloud Tasks: a queue exists once created (or pushed to), a deleted queue's
name is blocked for ``CLOUDTASK["LOCAL_QUEUE_REUSE_WINDOW"]``, and only tasks that still wait
for an attempt (or are being attempted) can be listed; finished ones are not found.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import transaction
from django.db.models import Count, IntegerField, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from ... import queues
from ...exceptions import (
    ConfigurationError,
    InvalidQueueConfig,
    QueueAlreadyExists,
    QueueNotFound,
    TaskNotFound,
)
from ...models import LocalQueue, LocalTask
from ...queues import QueueConfig
from ..management import (
    QUEUE_HINT,
    Attempt,
    QueueInfo,
    QueueManager,
    QueueStats,
    TaskInfo,
    TaskPage,
    TaskState,
    View,
    redact,
)
from . import store

#: google.rpc.Code for an HTTP status, as Google's APIs map them (the "HTTP error space" of
#: google/rpc/code.proto): Cloud Tasks reports an attempt's answer as such a code.
HTTP_TO_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: The codes an attempt without an answer is recorded with (see delivery.dispatch).
NO_ANSWER_CODES = frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE"})


def status_code(http_status: int) -> str:
    """Return the google.rpc.Code name Cloud Tasks reports for an HTTP answer."""
    if http_status in HTTP_TO_CODE:
        return HTTP_TO_CODE[http_status]
    if 200 <= http_status < 300:
        return "OK"
    if 400 <= http_status < 500:
        return "FAILED_PRECONDITION"
    if 500 <= http_status < 600:
        return "INTERNAL"
    return "UNKNOWN"


def dump_config(config: QueueConfig) -> dict[str, Any]:
    """Return ``config`` as JSON values: durations in seconds."""
    values = {option: getattr(config, option) for option in queues.OPTIONS}
    return {k: v.total_seconds() if isinstance(v, timedelta) else v for k, v in values.items()}


def load_config(name: str, stored: dict[str, Any] | None) -> QueueConfig:
    """Return a queue's config: the stored one if set, else ``CLOUDTASK["QUEUES"]``'s."""
    if stored is None:
        return queues.get(name)
    try:
        return queues.build(name, stored, where=f"The stored config of local queue {name!r}")
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{exc} Set it again with cloudtask.update_queue({name!r}, ...)."
        ) from None


def _waiting() -> Q:
    return Q(status__in=store.WAITING)


def _queues() -> QuerySet[LocalQueue]:
    waiting = (
        LocalTask.objects.filter(_waiting(), queue=OuterRef("name"))
        .order_by()
        .values("queue")
        .annotate(n=Count("pk"))
        .values("n")
    )
    count = Coalesce(Subquery(waiting, output_field=IntegerField()), 0)
    rows: QuerySet[LocalQueue] = LocalQueue.objects.filter(deleted_at__isnull=True)
    # annotate() is typed loosely in the stubs; the rows stay LocalQueue instances.
    return cast("QuerySet[LocalQueue]", rows.annotate(waiting=count))


def _queue_info(row: LocalQueue) -> QueueInfo:
    return QueueInfo(
        name=row.name,
        path=store.queue_path(row.name),
        state="paused" if row.paused else "running",
        config=load_config(row.name, row.config),
        tasks=getattr(row, "waiting", None),
        raw=row,
    )


def _last_attempt(row: LocalTask) -> Attempt | None:
    if not row.dispatch_count:
        return None
    if row.status == "running":
        # Under way: like Cloud Tasks, no answer to report yet.
        return Attempt(
            schedule_time=row.last_attempt_scheduled_at, dispatch_time=row.last_attempt_at
        )
    http_status = row.last_response_status
    if http_status is not None:
        status = status_code(http_status)
    else:
        status = row.retry_reason if row.retry_reason in NO_ANSWER_CODES else "UNKNOWN"
    return Attempt(
        schedule_time=row.last_attempt_scheduled_at,
        dispatch_time=row.last_attempt_at,
        response_time=row.last_response_at,
        status=status,
        http_status=http_status,
        message=row.last_response,
    )


def _state(row: LocalTask) -> TaskState:
    if row.status == "running":
        return "running"
    return "retrying" if row.dispatch_count else "queued"


def task_info(row: LocalTask, view: View) -> TaskInfo:
    """Return a waiting or running task as management shows it."""
    full = view == "full"
    return TaskInfo(
        name=row.name,
        queue=row.queue,
        path=f"{store.queue_path(row.queue)}/tasks/{row.name}",
        state=_state(row),
        schedule_time=row.schedule_time,
        create_time=row.created_at,
        dispatch_count=row.dispatch_count,
        response_count=row.response_count,
        # Cloud Tasks keeps only the dispatch time of the first attempt.
        first_attempt=Attempt(dispatch_time=row.first_attempt_at) if row.first_attempt_at else None,
        last_attempt=_last_attempt(row),
        task=row.task or None,
        view=view,
        method=row.method,
        url=row.url,
        headers=redact(dict(row.headers)) if full else None,
        body=bytes(row.body) if full else None,
        dispatch_deadline=row.dispatch_deadline.total_seconds(),
        raw=row,
    )


def _tasks(queue: str, view: View) -> QuerySet[LocalTask]:
    tasks: QuerySet[LocalTask] = LocalTask.objects.filter(_waiting(), queue=queue)
    tasks = tasks.order_by("schedule_time", "name")
    # The basic view leaves the request out: no need to read it.
    return tasks if view == "full" else tasks.defer("headers", "body")


def _page_token(last: LocalTask) -> str:
    """Return the opaque token of the page after ``last``: its schedule time and name."""
    key = json.dumps([last.schedule_time.isoformat(), last.name]).encode()
    return base64.urlsafe_b64encode(key).decode()


def _after(page_token: str) -> Q:
    """Return the filter of the tasks after ``page_token`` (all of them for "")."""
    if not page_token:
        return Q()
    try:
        when, name = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        schedule_time = datetime.fromisoformat(when)
    except (ValueError, TypeError):
        raise InvalidQueueConfig(
            f"list_tasks(): page_token {page_token[:40]!r} is not a token list_tasks returned."
        ) from None
    return Q(schedule_time__gt=schedule_time) | Q(schedule_time=schedule_time, name__gt=name)


class LocalManager(QueueManager):
    """Manages the local queues and their tasks in the project's database."""

    def path(self, queue: str) -> str:
        return store.queue_path(queue)

    def _row(self, name: str) -> LocalQueue:
        try:
            return _queues().get(name=name)
        except LocalQueue.DoesNotExist:
            raise QueueNotFound(name, self.path(name), hint=QUEUE_HINT) from None

    def _task(self, queue: str, name: str, view: View) -> LocalTask:
        self._row(queue)
        try:
            return _tasks(queue, view).get(name=name)
        except LocalTask.DoesNotExist:
            path = f"{self.path(queue)}/tasks/{name}"
            raise TaskNotFound(queue, name, path) from None

    def create_queue(self, name: str, config: QueueConfig) -> QueueInfo:
        now = timezone.now()
        with transaction.atomic():
            row, created = LocalQueue.objects.select_for_update().get_or_create(
                name=name, defaults={"config": dump_config(config), "created_at": now}
            )
            if not created:
                if row.deleted_at is None:
                    raise QueueAlreadyExists(name, self.path(name))
                store.reclaim(row, now)
                row.config = dump_config(config)
                row.save(update_fields=["config"])
        return self.get_queue(name)

    def get_queue(self, name: str) -> QueueInfo:
        return _queue_info(self._row(name))

    def update_queue(self, name: str, config: QueueConfig, fields: frozenset[str]) -> QueueInfo:
        with transaction.atomic():
            row = self._row(name)
            current = dump_config(load_config(name, row.config))
            changed = dump_config(config)
            row.config = {**current, **{option: changed[option] for option in fields}}
            row.save(update_fields=["config"])
        return self.get_queue(name)

    def pause_queue(self, name: str) -> QueueInfo:
        self._row(name)
        store.pause(name)
        return self.get_queue(name)

    def resume_queue(self, name: str) -> QueueInfo:
        self._row(name)
        store.pause(name, paused=False)
        return self.get_queue(name)

    def purge_queue(self, name: str) -> QueueInfo:
        self._row(name)
        store.purge(name)
        return self.get_queue(name)

    def delete_queue(self, name: str) -> None:
        with transaction.atomic():
            row = self._row(name)
            store.purge(name)
            row.deleted_at = timezone.now()
            row.save(update_fields=["deleted_at"])

    def list_queues(self) -> Iterator[QueueInfo]:
        return (_queue_info(row) for row in _queues())

    def task_page(self, queue: str, view: View, page_size: int, page_token: str) -> TaskPage:
        after = _after(page_token)
        # Keyset paging: each page is one query starting after the last row seen, so tasks
        # pushed or finished meanwhile never shift a page. One more row tells if one follows.
        rows = list(_tasks(queue, view).filter(after)[: page_size + 1])
        if not rows:
            self._row(queue)  # a missing queue is reported as such, not as an empty page
        page = rows[:page_size]
        token = _page_token(page[-1]) if len(rows) > page_size else ""
        return [task_info(row, view) for row in page], token

    def get_task(self, queue: str, name: str, view: View) -> TaskInfo:
        return task_info(self._task(queue, name, view), view)

    def delete_task(self, queue: str, name: str) -> None:
        self._row(queue)
        if not store.delete_tasks(Q(queue=queue, name=name)):
            raise TaskNotFound(queue, name, f"{self.path(queue)}/tasks/{name}")

    def run_task(self, queue: str, name: str) -> TaskInfo:
        row = self._task(queue, name, "basic")
        if row.status == "queued":
            # The worker takes it at its next poll, even from a paused queue.
            store.run_now(Q(pk=row.pk), force=True)
            row = self._task(queue, name, "basic")
        return task_info(row, "basic")

    def queue_stats(self, window: timedelta) -> list[QueueStats]:
        now = timezone.now()
        since = now - window
        answered_ok = Q(last_response_status__gte=200, last_response_status__lt=300)
        counts = {
            row["queue"]: row
            for row in LocalTask.objects.order_by()
            .values("queue")
            .annotate(
                waiting=Count("id", filter=Q(status="queued")),
                running=Count("id", filter=Q(status="running")),
                retrying=Count("id", filter=Q(status="queued", dispatch_count__gt=0)),
                succeeded=Count("id", filter=Q(status="succeeded", finished_at__gte=since)),
                failed=Count("id", filter=Q(status="failed", finished_at__gte=since)),
                failing=Count("id", filter=Q(last_response_at__gte=since) & ~answered_ok),
                oldest_due=Min("schedule_time", filter=Q(status="queued", schedule_time__lte=now)),
            )
        }
        names = set(counts) | set(_queues().values_list("name", flat=True))
        minutes = window.total_seconds() / 60
        stats = []
        for name in sorted(names):
            row = counts.get(name, {})
            oldest = row.get("oldest_due")
            finished = row.get("succeeded", 0) + row.get("failed", 0)
            stats.append(
                QueueStats(
                    name=name,
                    waiting=row.get("waiting", 0),
                    running=row.get("running", 0),
                    retrying=row.get("retrying", 0),
                    succeeded=row.get("succeeded", 0),
                    failed=row.get("failed", 0),
                    failing=row.get("failing", 0),
                    per_minute=round(finished / minutes, 2) if minutes else 0.0,
                    oldest_due_s=None if oldest is None else (now - oldest).total_seconds(),
                    window_s=window.total_seconds(),
                )
            )
        return stats
