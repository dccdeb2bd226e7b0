"""Push every call as a Google Cloud Tasks HTTP task with the official client.

``CLOUDTASK["EMULATOR_HOST"]`` sends the same requests to a local emulator instead.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, ClassVar

from .. import conf
from ..exceptions import CloudTasksUnavailable, QueueNotFound
from ..task import TaskHandle
from . import gcp_client, gcp_errors, gcp_request
from .base import BaseBackend, TaskMessage
from .management import QueueManager

logger = logging.getLogger("cloudtask")


class CloudTasksBackend(BaseBackend):
    """Creates one Cloud Tasks task per push over the process's shared client."""

    supports_concurrent_push = True
    #: How long one push keeps retrying UNAVAILABLE / DEADLINE_EXCEEDED, in seconds.
    push_deadline: ClassVar[float] = 30.0
    #: The time limit of one CreateTask call, in seconds.
    call_timeout: ClassVar[float] = 10.0
    #: The first pause after a transient error; it doubles up to ``max_backoff``.
    initial_backoff: ClassVar[float] = 0.1
    max_backoff: ClassVar[float] = 4.0

    def manager(self) -> QueueManager:
        """Return the manager of this project's Cloud Tasks queues (see ``cloudtask.control``)."""
        from .gcp_manage import CloudTasksManager

        return CloudTasksManager(self)

    def push(self, message: TaskMessage) -> TaskHandle:
        """Create the task, making its queue first if it is missing and that is allowed."""
        parent = gcp_request.queue_path(message.queue)
        request = gcp_request.create_task_request(message, parent)
        try:
            name = self._create_task(request, message, parent)
        except QueueNotFound:
            if not conf.get("AUTO_CREATE_QUEUES"):
                raise
            self._create_queue(message, parent)
            name = self._create_task(request, message, parent)
        return message.handle(name.rsplit("/", 1)[-1])

    def _create_task(self, request: Any, message: TaskMessage, parent: str) -> str:
        client = gcp_client.client()
        # ALREADY_EXISTS after a timed-out attempt means that attempt landed: the task is ours.
        task = self._push_call(client.create_task, request, message, parent, exists_ok_after=1)
        return str(request.task.name if task is None else task.name)

    def _create_queue(self, message: TaskMessage, parent: str) -> None:
        from google.cloud import tasks_v2

        request = tasks_v2.CreateQueueRequest(
            parent=gcp_request.location_path(), queue=gcp_request.queue(message.queue)
        )
        client = gcp_client.client()
        # ALREADY_EXISTS: another process made it meanwhile, which is just as good.
        self._push_call(client.create_queue, request, message, parent, exists_ok_after=0)
        logger.info("queue=%s status=created", parent)

    def _push_call(
        self, method: Any, request: Any, message: TaskMessage, parent: str, *, exists_ok_after: int
    ) -> Any:
        from google.api_core.exceptions import GoogleAPICallError

        try:
            return self.call(
                method,
                request,
                what=f"task={message.task.name} queue={message.queue}",
                exists_ok_after=exists_ok_after,
            )
        except GoogleAPICallError as exc:
            raise gcp_errors.translate(exc, message, parent) from exc

    def call(
        self,
        method: Any,
        request: Any,
        *,
        what: str,
        exists_ok_after: int | None = None,
        retry: bool = True,
        action: str = "accept the task",
        again: str = "push again later",
    ) -> Any:
        """Call the API, retrying transient errors with backoff until ``push_deadline``.

        Returns None for ALREADY_EXISTS on an attempt after the first ``exists_ok_after``.
        Other errors are raised as they come; a transient one that outlasts the deadline (or
        any transient one when ``retry`` is false) as ``CloudTasksUnavailable``. ``what``
        names the call in log lines; ``action`` and ``again`` word that error.
        """
        from google.api_core.exceptions import GoogleAPICallError

        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            remaining = self.push_deadline - (time.monotonic() - started)
            try:
                return method(
                    request=request, retry=None, timeout=max(min(self.call_timeout, remaining), 0.1)
                )
            except GoogleAPICallError as exc:
                status = gcp_errors.code(exc)
                landed = exists_ok_after is not None and attempts > exists_ok_after
                if landed and status == "ALREADY_EXISTS":
                    return None
                if not gcp_errors.is_transient(exc):
                    raise
                pause = self._backoff(attempts)
                elapsed = time.monotonic() - started
                if not retry or elapsed + pause >= self.push_deadline:
                    raise CloudTasksUnavailable(
                        attempts, elapsed, gcp_errors.describe(exc), action, again
                    ) from exc
                logger.warning("%s status=retry attempt=%d reason=%s", what, attempts, status)
                time.sleep(pause)

    def _backoff(self, attempts: int) -> float:
        # Full jitter, so pushers that failed together do not retry together.
        ceiling = min(self.initial_backoff * 2 ** (attempts - 1), self.max_backoff)
        return random.uniform(ceiling / 2, ceiling)
