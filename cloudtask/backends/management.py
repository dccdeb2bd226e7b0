"""What queue and task management returns, and what each backend implements for it.

``cloudtask.control`` validates the caller's input and calls the backend's
:class:`QueueManager`; the Cloud Tasks backend answers from the Cloud Tasks API, the local
backend from the database. Both return these dataclasses, never raw protobufs or rows (the
raw object stays on ``.raw`` for whoever needs more).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
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


@dataclass
class CallOptions:
    """A management call's own ``timeout`` and ``retry`` (None: the backend's defaults).

    ``timeout``: seconds the whole call may take, retries included. ``retry``: whether
    transient errors are retried (by default calls that only read are, others are sent once).
    Used as a context manager around the call; backends that make no API calls ignore it.
    """

    timeout: float | None = None
    retry: bool | None = None
    _tokens: list[Token[CallOptions | None]] = field(default_factory=list, repr=False)

    def __enter__(self) -> CallOptions:
        self._tokens.append(call_options.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        call_options.reset(self._tokens.pop())


#: The options of the management call under way in this context (None: the defaults).
call_options: ContextVar[CallOptions | None] = ContextVar("cloudtask_call_options", default=None)


#: One page of a queue's tasks, and the token of the page after it ("" after the last).
TaskPage = tuple[list[TaskInfo], str]


class TaskList(Iterator[TaskInfo]):
    """A queue's tasks, fetched a page at a time as iteration goes (``list_tasks``).

    Iterate it for every task. To resume later (a request per page, say), take a page with
    :meth:`next_page` and keep :attr:`next_page_token`; ``list_tasks(..., page_token=token)``
    goes on from there. The first page is fetched when the list is made, so a missing queue
    is reported by the call itself.
    """

    def __init__(self, fetch: Callable[[str], TaskPage], page_token: str = "") -> None:
        self._fetch = fetch
        self._buffer: deque[TaskInfo] = deque()
        #: The token of the page after the pages fetched so far; "" when there is none.
        self.next_page_token = ""
        self._load(page_token)

    def _load(self, token: str) -> None:
        tasks, self.next_page_token = self._fetch(token)
        self._buffer.extend(tasks)

    def __next__(self) -> TaskInfo:
        while not self._buffer:
            if not self.next_page_token:
                raise StopIteration
            self._load(self.next_page_token)
        return self._buffer.popleft()

    def next_page(self) -> list[TaskInfo]:
        """Return the tasks of the current page not yet taken, fetching the next page if none.

        An empty list means there are no more tasks.
        """
        if not self._buffer and self.next_page_token:
            self._load(self.next_page_token)
        page = list(self._buffer)
        self._buffer.clear()
        return page


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

    def task_page(self, queue: str, view: View, page_size: int, page_token: str) -> TaskPage:
        """Return up to ``page_size`` tasks from ``page_token`` ("" for the first page) on.

        A token is one this method returned; an unknown one raises ``InvalidQueueConfig``.
        """
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
