"""What queue and task management returns, and what each backend implements for it.

``cloudtask.control`` validates the caller's input and calls the backend's
:class:`QueueManager`; the Cloud Tasks backend answers from the Cloud Tasks API, the local
backend from the database. Both return these dataclasses, never raw protobufs or rows (the
raw object stays on ``.raw`` for whoever needs more).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ..exceptions import ManagementNotSupported
from ..queues import QueueConfig
from ..signing import SIGNATURE_HEADER

#: ``running``: tasks are dispatched; ``paused``: they wait; ``disabled``: Cloud Tasks
#: disabled the queue (App Engine queues only).
QueueState = Literal["running", "paused", "disabled"]
#: ``queued``: waiting for its first attempt; ``retrying``: an attempt failed and the next
#: one is scheduled; ``running``: an attempt is under way (the local queue knows this;
#: Cloud Tasks does not say).
TaskState = Literal["queued", "retrying", "running"]
#: ``basic`` leaves out the request body and headers; ``full`` includes them.
View = Literal["basic", "full"]
VIEWS: tuple[View, ...] = ("basic", "full")

#: What a management call suggests when the queue is missing.
QUEUE_HINT = "List the queues with manage.py cloudtask_queues list."

#: Header values never handed out: the signature (valid for this body, so replayable) and
#: any token. Their presence is kept, their value replaced by this.
REDACTED = "(redacted)"
SECRET_HEADERS = frozenset({SIGNATURE_HEADER.lower(), "authorization"})


def redact(headers: dict[str, str]) -> dict[str, str]:
    """Return ``headers`` with the values of signature and token headers hidden."""
    return {k: REDACTED if k.lower() in SECRET_HEADERS else v for k, v in headers.items()}


@dataclass(frozen=True)
class Attempt:
    """One dispatch of a task and, if it came, the answer.

    Cloud Tasks keeps only the dispatch time of the first attempt; ``status`` is the answer
    as a gRPC code name ("OK", "NOT_FOUND", "INTERNAL", ...) as Cloud Tasks reports it,
    ``http_status`` the HTTP status when it is known (the local queue records it).
    """

    schedule_time: datetime | None = None
    dispatch_time: datetime | None = None
    response_time: datetime | None = None
    status: str | None = None
    http_status: int | None = None
    message: str = ""


@dataclass(frozen=True)
class QueueStats:
    """What a queue did over a recent window: "is anything stuck?" at a glance."""

    name: str
    #: Tasks waiting for an attempt now (due or not), and being attempted now.
    waiting: int
    running: int
    #: Of the waiting tasks, those that failed an attempt and wait for a retry.
    retrying: int
    #: Tasks that finished in the window, as succeeded or failed for good.
    succeeded: int
    failed: int
    #: Tasks whose last attempt, made in the window, got no 2xx answer (or none at all).
    failing: int
    #: Finished tasks per minute over the window.
    per_minute: float
    #: Seconds since the oldest waiting task was due (None: nothing is due).
    oldest_due_s: float | None
    window_s: float


@dataclass(frozen=True)
class QueueInfo:
    """A queue as the backend holds it: its state and its rate limits and retry policy."""

    name: str
    path: str
    state: QueueState
    config: QueueConfig
    #: Tasks waiting in the queue, when the backend says (None when it does not).
    tasks: int | None = None
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TaskInfo:
    """A task still in its queue: when it is due and how its attempts went so far."""

    name: str
    queue: str
    path: str
    state: TaskState
    schedule_time: datetime | None
    create_time: datetime | None
    dispatch_count: int
    response_count: int
    first_attempt: Attempt | None
    last_attempt: Attempt | None
    #: The registry name of the task function, when the backend knows it.
    task: str | None = None
    view: View = "basic"
    method: str = "POST"
    url: str | None = None
    #: Full view only; signature and token values are redacted (see ``REDACTED``).
    headers: dict[str, str] | None = None
    body: bytes | None = None
    dispatch_deadline: float | None = None
    raw: Any = field(default=None, repr=False, compare=False)


class QueueManager:
    """The management calls a backend answers. Input reaches it validated.

    Errors: ``QueueNotFound``, ``TaskNotFound``, ``QueueDeletedRecently``,
    ``CloudTasksPermissionDenied`` (naming the permission), ``CloudTasksUnavailable``.
    """

    def path(self, queue: str) -> str:
        """Return the full name of ``queue`` as this backend shows it."""
        raise NotImplementedError

    def create_queue(self, name: str, config: QueueConfig) -> QueueInfo:
        """Create the queue; ``QueueAlreadyExists`` if it exists."""
        raise NotImplementedError

    def get_queue(self, name: str) -> QueueInfo:
        raise NotImplementedError

    def update_queue(self, name: str, config: QueueConfig, fields: frozenset[str]) -> QueueInfo:
        """Set the named ``fields`` of the queue's config to their values in ``config``."""
        raise NotImplementedError

    def pause_queue(self, name: str) -> QueueInfo:
        raise NotImplementedError

    def resume_queue(self, name: str) -> QueueInfo:
        raise NotImplementedError

    def purge_queue(self, name: str) -> QueueInfo:
        """Delete every task of the queue (their names stay taken for a while)."""
        raise NotImplementedError

    def delete_queue(self, name: str) -> None:
        """Delete the queue and its tasks; the name cannot be used again for a while."""
        raise NotImplementedError

    def list_queues(self) -> Iterator[QueueInfo]:
        raise NotImplementedError

    def list_tasks(self, queue: str, view: View, page_size: int) -> Iterator[TaskInfo]:
        """Yield the queue's tasks, fetching ``page_size`` at a time as iteration goes."""
        raise NotImplementedError

    def get_task(self, queue: str, name: str, view: View) -> TaskInfo:
        raise NotImplementedError

    def delete_task(self, queue: str, name: str) -> None:
        raise NotImplementedError

    def run_task(self, queue: str, name: str) -> TaskInfo:
        """Dispatch the task now, whatever its schedule time, even from a paused queue."""
        raise NotImplementedError

    def queue_stats(self, window: timedelta) -> list[QueueStats]:
        """Return each queue's recent activity over the last ``window``."""
        raise ManagementNotSupported(
            type(self).__name__,
            "Queue statistics come from the local queue's table; on Cloud Tasks, Cloud "
            "Monitoring has them (cloudtasks.googleapis.com/queue/depth, "
            "api/request_count, task_attempt_count).",
        )
