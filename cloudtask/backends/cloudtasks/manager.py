"""Queue and task management on Cloud Tasks: its Admin API calls over the shared client.

Each call is one Cloud Tasks RPC (``GetQueue``, ``ListTasks``, ...) made like a push: the
process's client, a time limit per call, and for the calls that only read, transient errors
retried with backoff until the backend's ``push_deadline``. Calls that change something are
made once, so an answer lost on the way never makes them happen twice. Answers come back
as the dataclasses of ``management``; the protobuf stays on ``.raw``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ...exceptions import (
    CloudTaskError,
    InvalidQueueConfig,
    ManagementError,
    QueueAlreadyExists,
    QueueDeletedRecently,
    QueueNotFound,
    TaskNotFound,
)
from ...queues import QueueConfig
from ..management import (
    QUEUE_HINT,
    Attempt,
    QueueInfo,
    QueueManager,
    TaskInfo,
    TaskPage,
    View,
    call_options,
    redact,
)
from . import client, errors, requests

if TYPE_CHECKING:
    from .backend import CloudTasksBackend

#: The IAM permission each RPC needs, named when Cloud Tasks refuses it without saying.
PERMISSIONS = {
    "CreateQueue": "cloudtasks.queues.create",
    "GetQueue": "cloudtasks.queues.get",
    "UpdateQueue": "cloudtasks.queues.update",
    "PauseQueue": "cloudtasks.queues.pause",
    "ResumeQueue": "cloudtasks.queues.resume",
    "PurgeQueue": "cloudtasks.queues.purge",
    "DeleteQueue": "cloudtasks.queues.delete",
    "ListQueues": "cloudtasks.queues.list",
    "ListTasks": "cloudtasks.tasks.list",
    "GetTask": "cloudtasks.tasks.get",
    "DeleteTask": "cloudtasks.tasks.delete",
    "RunTask": "cloudtasks.tasks.run",
}
#: The RPCs that only read: safe to repeat after a transient error.
READS = frozenset({"GetQueue", "ListQueues", "ListTasks", "GetTask"})
STATES = {"RUNNING": "running", "PAUSED": "paused", "DISABLED": "disabled"}
#: The task view Cloud Tasks is asked for (Task.View numbers).
VIEWS = {"basic": 1, "full": 2}


def _snake(rpc: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in rpc).lstrip("_")


def _code_name(code: int) -> str:
    import grpc

    # google.rpc.Code numbers are gRPC's status codes.
    names = {status.value[0]: status.name for status in grpc.StatusCode}
    return str(names.get(code, "UNKNOWN"))


def queue_config(name: str, queue: Any) -> QueueConfig:
    """Read a Cloud Tasks Queue's rate limits and retry policy.

    Fields Cloud Tasks leaves unset read as its defaults (it fills them in for queues it
    creates; an emulator may not).
    """
    default = QueueConfig(name)
    rate, retry = queue.rate_limits, queue.retry_config

    def duration(field: str) -> timedelta:
        value = getattr(retry, field) if field in retry else None
        return value if value is not None else getattr(default, field)  # type: ignore[no-any-return]

    return QueueConfig(
        name=name,
        max_dispatches_per_second=rate.max_dispatches_per_second
        or default.max_dispatches_per_second,
        max_concurrent_dispatches=rate.max_concurrent_dispatches
        or default.max_concurrent_dispatches,
        max_attempts=retry.max_attempts or default.max_attempts,
        max_retry_duration=duration("max_retry_duration"),
        min_backoff=duration("min_backoff"),
        max_backoff=duration("max_backoff"),
        max_doublings=retry.max_doublings if "retry_config" in queue else default.max_doublings,
    )


def queue_info(queue: Any) -> QueueInfo:
    """Return a Cloud Tasks Queue as management shows it (Cloud Tasks gives no task count)."""
    name = queue.name.rsplit("/", 1)[-1]
    return QueueInfo(
        name=name,
        path=queue.name,
        state=STATES.get(queue.state.name, "running"),  # type: ignore[arg-type]
        config=queue_config(name, queue),
        tasks=None,
        raw=queue,
    )


def _attempt(attempt: Any) -> Attempt:
    status = attempt.response_status if "response_status" in attempt else None
    return Attempt(
        schedule_time=attempt.schedule_time,
        dispatch_time=attempt.dispatch_time,
        response_time=attempt.response_time,
        status=_code_name(status.code) if status is not None else None,
        message=status.message if status is not None else "",
    )


def _registry_name(body: bytes) -> str | None:
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    name = envelope.get("task") if isinstance(envelope, dict) else None
    return name if isinstance(name, str) else None


def task_info(task: Any, view: View) -> TaskInfo:
    """Return a Cloud Tasks Task as management shows it.

    The registry name comes from the body, so only the full view knows it.
    """
    app_engine = "app_engine_http_request" in task
    target = task.app_engine_http_request if app_engine else task.http_request
    full = view == "full"
    body = bytes(target.body) if full else None
    queue_path, _, name = task.name.rpartition("/tasks/")
    return TaskInfo(
        name=name,
        queue=queue_path.rsplit("/", 1)[-1],
        path=task.name,
        state="retrying" if task.dispatch_count else "queued",
        schedule_time=task.schedule_time,
        create_time=task.create_time,
        dispatch_count=task.dispatch_count,
        response_count=task.response_count,
        # Cloud Tasks keeps only the dispatch time of the first attempt.
        first_attempt=(
            Attempt(dispatch_time=task.first_attempt.dispatch_time)
            if "first_attempt" in task
            else None
        ),
        last_attempt=_attempt(task.last_attempt) if "last_attempt" in task else None,
        task=_registry_name(body) if body else None,
        view=view,
        method=target.http_method.name,
        url=target.relative_uri if app_engine else target.url,
        headers=redact(dict(target.headers)) if full else None,
        body=body,
        dispatch_deadline=(
            task.dispatch_deadline.total_seconds() if "dispatch_deadline" in task else None
        ),
        raw=task,
    )


class CloudTasksManager(QueueManager):
    """Manages the queues of ``CLOUDTASK["PROJECT"]`` in ``CLOUDTASK["LOCATION"]``."""

    def __init__(self, backend: CloudTasksBackend) -> None:
        self.backend = backend

    def path(self, queue: str) -> str:
        return requests.queue_path(queue)

    def _task_path(self, queue: str, name: str) -> str:
        return f"{self.path(queue)}/tasks/{name}"

    def _call(self, rpc: str, request: Any, queue: str = "", task: str = "") -> Any:
        """Make one RPC; translate its errors for ``queue`` (and ``task``)."""
        from google.api_core.exceptions import GoogleAPICallError

        method = getattr(client.client(), _snake(rpc))
        options = call_options.get()
        retry = rpc in READS if options is None or options.retry is None else options.retry
        try:
            return self.backend.call(
                method,
                request,
                what=f"rpc={rpc} queue={queue or '-'}",
                retry=retry,
                action=f"answer {rpc}",
                again="try again later",
                deadline=None if options is None else options.timeout,
            )
        except GoogleAPICallError as exc:
            raise self._translate(exc, rpc, queue, task) from exc

    def _translate(self, exc: Exception, rpc: str, queue: str, task: str) -> Exception:
        status = errors.code(exc)
        path = self.path(queue) if queue else requests.location_path()
        if rpc == "CreateQueue" and status == "ALREADY_EXISTS":
            return QueueAlreadyExists(queue, path)
        if errors.is_deleted_recently(exc):
            if rpc == "CreateQueue":
                return QueueDeletedRecently(queue, path)
            return QueueNotFound(queue, path, errors.describe(exc), hint=QUEUE_HINT)
        if status == "NOT_FOUND":
            # Cloud Tasks answers NOT_FOUND alike for a missing task and a missing queue.
            if task and self._queue_exists(queue):
                return TaskNotFound(queue, task, self._task_path(queue, task))
            return QueueNotFound(queue, path, hint=QUEUE_HINT)
        if status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            resource = self._task_path(queue, task) if task else path
            return errors.call_denied(exc, resource, PERMISSIONS[rpc])
        if status == "INVALID_ARGUMENT":
            return InvalidQueueConfig(
                f"Cloud Tasks refused {rpc} for {path}: {errors.describe(exc)}"
            )
        return ManagementError(f"Cloud Tasks refused {rpc} for {path}: {errors.describe(exc)}")

    def _queue_exists(self, queue: str) -> bool:
        try:
            self.get_queue(queue)
        except QueueNotFound:
            return False
        except CloudTaskError:
            # Not allowed to read the queue (a taskRunner-only account) or no answer: the
            # task call's own NOT_FOUND is the best answer, not this lookup's error.
            return True
        return True

    def _queue_rpc(self, rpc: str, name: str) -> QueueInfo:
        from google.cloud import tasks_v2

        request = getattr(tasks_v2, f"{rpc}Request")(name=self.path(name))
        return queue_info(self._call(rpc, request, name))

    def create_queue(self, name: str, config: QueueConfig) -> QueueInfo:
        from google.cloud import tasks_v2

        request = tasks_v2.CreateQueueRequest(
            parent=requests.location_path(), queue=requests.queue_message(config)
        )
        return queue_info(self._call("CreateQueue", request, name))

    def get_queue(self, name: str) -> QueueInfo:
        return self._queue_rpc("GetQueue", name)

    def update_queue(self, name: str, config: QueueConfig, fields: frozenset[str]) -> QueueInfo:
        from google.cloud import tasks_v2
        from google.protobuf import field_mask_pb2

        # Only the masked fields change; Cloud Tasks keeps the others as they are.
        paths = [requests.QUEUE_FIELDS[option] for option in sorted(fields)]
        request = tasks_v2.UpdateQueueRequest(
            queue=requests.queue_message(config),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        return queue_info(self._call("UpdateQueue", request, name))

    def pause_queue(self, name: str) -> QueueInfo:
        return self._queue_rpc("PauseQueue", name)

    def resume_queue(self, name: str) -> QueueInfo:
        return self._queue_rpc("ResumeQueue", name)

    def purge_queue(self, name: str) -> QueueInfo:
        return self._queue_rpc("PurgeQueue", name)

    def delete_queue(self, name: str) -> None:
        from google.cloud import tasks_v2

        self._call("DeleteQueue", tasks_v2.DeleteQueueRequest(name=self.path(name)), name)

    def list_queues(self) -> Iterator[QueueInfo]:
        from google.cloud import tasks_v2

        request = tasks_v2.ListQueuesRequest(parent=requests.location_path())
        pager = self._call("ListQueues", request)
        return self._translated(pager, queue_info, "ListQueues", "")

    def task_page(self, queue: str, view: View, page_size: int, page_token: str) -> TaskPage:
        from google.cloud import tasks_v2

        request = tasks_v2.ListTasksRequest(
            parent=self.path(queue),
            response_view=VIEWS[view],
            page_size=page_size,
            page_token=page_token,
        )
        # One ListTasks call: the pager holds its first page only until it is iterated.
        pager = self._call("ListTasks", request, queue)
        return [task_info(task, view) for task in pager.tasks], pager.next_page_token

    def _translated(self, pager: Any, convert: Any, rpc: str, queue: str) -> Iterator[Any]:
        """Yield ``convert(item)`` over a pager, which fetches later pages as it goes."""
        from google.api_core.exceptions import GoogleAPICallError

        try:
            for item in pager:
                yield convert(item)
        except GoogleAPICallError as exc:
            raise self._translate(exc, rpc, queue, "") from exc

    def get_task(self, queue: str, name: str, view: View) -> TaskInfo:
        from google.cloud import tasks_v2

        request = tasks_v2.GetTaskRequest(
            name=self._task_path(queue, name), response_view=VIEWS[view]
        )
        return task_info(self._call("GetTask", request, queue, name), view)

    def delete_task(self, queue: str, name: str) -> None:
        from google.cloud import tasks_v2

        request = tasks_v2.DeleteTaskRequest(name=self._task_path(queue, name))
        self._call("DeleteTask", request, queue, name)

    def run_task(self, queue: str, name: str) -> TaskInfo:
        from google.cloud import tasks_v2

        request = tasks_v2.RunTaskRequest(name=self._task_path(queue, name))
        return task_info(self._call("RunTask", request, queue, name), "basic")
