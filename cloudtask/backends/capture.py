"""Record pushes instead of sending them; the backend behind ``capture_tasks()``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.test import Client

from .. import conf
from ..envelope import decode
from ..exceptions import TaskAlreadyExists
from ..oidc import authorization
from ..registry import registry
from ..request import cloud_tasks_headers
from .base import InProcessBackend, TaskMessage, generated_task_id, signed_path

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

    from ..task import Task


@dataclass(frozen=True)
class CapturedHttpRequest:
    """Exactly what Cloud Tasks would send: method, absolute URL, headers and body bytes."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CapturedTask:
    """One recorded push: a task call, or an HTTP task of ``push_http`` (``task`` None)."""

    #: The task definition; None for an HTTP task, which calls no registered task.
    task: Task[Any, Any] | None
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    name: str
    eta: datetime | None
    url: str
    call_id: str
    http_request: CapturedHttpRequest
    done: bool = field(default=False, repr=False)
    #: When it was run (``time.monotonic()``): its name stays taken for the window after.
    ran_at: float | None = field(default=None, repr=False)
    #: The OIDC token Cloud Tasks would add (service_account_email, audience), or None.
    oidc_token: dict[str, str] | None = None

    @property
    def path(self) -> str:
        """The URL path the request is sent to."""
        return signed_path(self.url)

    @property
    def is_http_task(self) -> bool:
        """Whether this is an HTTP task of ``push_http`` rather than a task call."""
        return self.task is None

    def run(self, client: Client | None = None) -> TestResponse:
        """Send this task's request through Django, with the headers Cloud Tasks adds.

        A task call goes to the real task endpoint. An HTTP task is sent to this project's
        URLconf at its URL's path, whatever its host: use it for HTTP tasks to this
        project's own views (``run_all()`` decides which HTTP tasks that applies to).
        """
        client = client or Client(enforce_csrf_checks=True, raise_request_exception=False)
        headers = {
            **self.http_request.headers,
            **cloud_tasks_headers(queue=self.queue, name=self.name, eta=self.eta),
            # Cloud Tasks connects to the URL's host; ALLOWED_HOSTS must accept it, as there.
            "Host": urlsplit(self.url).netloc,
        }
        # Where Cloud Tasks would add a Google-signed token, a development token stands in,
        # for the same service account and audience; where it would add none, none is sent.
        headers.update(authorization(self.oidc_token))
        content_type = headers.pop("Content-Type", "")
        self.done, self.ran_at = True, time.monotonic()
        response: TestResponse = client.generic(
            self.http_request.method,
            # The query string too: Cloud Tasks sends the whole URL.
            self.path + (f"?{query}" if (query := urlsplit(self.url).query) else ""),
            self.http_request.body,
            content_type=content_type,
            secure=self.url.startswith("https:"),
            headers=headers,
        )
        return response


#: What ``run_all(transport=...)`` calls with each HTTP task to another host.
Transport = Callable[[CapturedHttpRequest], Any]


class CapturedTasks(list[CapturedTask]):
    """The tasks pushed inside a ``capture_tasks()`` block, in push order."""

    def run_all(
        self,
        *,
        client: Client | None = None,
        limit: int = 1000,
        transport: Transport | None = None,
    ) -> list[Any]:
        """Deliver every task not yet run, including tasks those tasks push; return answers.

        Task calls are POSTed through the real view. HTTP tasks (``push_http``) to this
        project's own origin (that of ``CLOUDTASK["URL"]``, or ``http://testserver``) are
        sent through Django the same way, to whichever view their path resolves to. HTTP
        tasks to any other host leave the process only through ``transport``: it is called
        with each one's ``http_request`` and its return value stands for the answer. Without
        it they are not delivered, and :meth:`undelivered` lists them.
        """
        client = client or Client(enforce_csrf_checks=True, raise_request_exception=False)
        responses: list[Any] = []
        origin = _origin(_own_url())
        while pending := [c for c in self if not c.done and _deliverable(c, origin, transport)]:
            for captured in pending:
                if len(responses) >= limit:
                    raise RuntimeError(
                        f"run_all() ran {limit} tasks and more keep coming: do tasks push "
                        "each other in a loop? Pass limit= to allow more."
                    )
                if captured.is_http_task and _origin(captured.url) != origin:
                    captured.done, captured.ran_at = True, time.monotonic()
                    responses.append(transport(captured.http_request))  # type: ignore[misc]
                else:
                    responses.append(captured.run(client))
        return responses

    def undelivered(self) -> list[CapturedTask]:
        """Return the tasks not delivered yet: those not run, and HTTP tasks to other hosts."""
        return [c for c in self if not c.done]


def _own_url() -> str:
    return str(conf.get("URL") or InProcessBackend().default_url())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _deliverable(
    captured: CapturedTask, origin: tuple[str, str], transport: Transport | None
) -> bool:
    return not captured.is_http_task or transport is not None or _origin(captured.url) == origin


class CaptureBackend(InProcessBackend):
    """Appends every push to a CapturedTasks list; a name is refused while it is taken.

    As on Cloud Tasks (and the local queue), a task's name stays taken while the task waits
    and for ``CLOUDTASK["LOCAL_DEDUP_WINDOW"]`` (1 hour by default, 0 to free it at once)
    after it ran, so a test sees the ``TaskAlreadyExists`` production would raise.
    """

    #: run_all() signs development OIDC tokens, which the endpoint accepts during the block.
    trusts_development_tokens = True

    def __init__(self, captured: CapturedTasks | None = None) -> None:
        self.captured = CapturedTasks() if captured is None else captured
        self._lock = threading.Lock()

    def push(self, message: TaskMessage) -> str:
        task, args, kwargs = None, [], {}
        if not message.is_http_task:
            data = decode(message.body)
            task, args, kwargs = registry.get(message.task_name), data.args, data.kwargs
        with self._lock:
            if message.task_id is not None and self._taken(message.task_id, message.queue):
                raise TaskAlreadyExists(message.task_id, message.queue)
            task_id = message.task_id or generated_task_id()
            self.captured.append(
                CapturedTask(
                    task=task,
                    args=args,
                    kwargs=kwargs,
                    queue=message.queue,
                    name=task_id,
                    eta=message.eta,
                    url=message.url,
                    call_id=message.call_id,
                    oidc_token=message.oidc_token,
                    http_request=CapturedHttpRequest(
                        method=message.method,
                        url=message.url,
                        headers=dict(message.headers),
                        body=message.body,
                    ),
                )
            )
        return task_id

    def _taken(self, task_id: str, queue: str) -> bool:
        window = conf.dedup_window().total_seconds()
        now = time.monotonic()
        return any(
            c.name == task_id and c.queue == queue and (c.ran_at is None or now - c.ran_at < window)
            for c in self.captured
        )
