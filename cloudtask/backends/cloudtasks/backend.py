"""Push every call as a Google Cloud Tasks task with the official client.

``CLOUDTASK["EMULATOR_HOST"]`` sends the same requests to a local emulator instead.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.core.checks import CheckMessage, Error

from ... import conf
from ...exceptions import CloudTaskError, QueueNotFound
from ...queues import QueueConfig
from ...registry import registry
from ..base import BaseBackend, TaskMessage
from . import client, errors, requests, rpc
from .manager import CloudTasksManager

logger = logging.getLogger("cloudtask")

_REQUIRED = {
    "PROJECT": ("cloudtask.E003", "Set it to your Google Cloud project id, e.g. 'my-project'."),
    "LOCATION": ("cloudtask.E004", "Set it to the queue's region, e.g. 'europe-west6'."),
    "URL": (
        "cloudtask.E005",
        "Set it to the task endpoint's absolute URL, e.g. 'https://app.example.com/_tasks/'.",
    ),
}


class CloudTasksBackend(BaseBackend):
    """Creates one Cloud Tasks task per push over the process's shared client."""

    supports_concurrent_push = True
    uses_cloud_scheduler = True
    #: How long one push keeps retrying UNAVAILABLE / DEADLINE_EXCEEDED, in seconds.
    push_deadline: ClassVar[float] = 30.0
    #: The time limit of one CreateTask call, in seconds.
    call_timeout: ClassVar[float] = 10.0
    #: The first pause after a transient error; it doubles up to ``max_backoff``.
    initial_backoff: ClassVar[float] = 0.1
    max_backoff: ClassVar[float] = 4.0
    #: The time limit of the GetQueue a delivery may make to learn its queue's retry policy.
    queue_read_timeout: ClassVar[float] = 5.0

    def manager(self) -> CloudTasksManager:
        """Return the manager of this project's Cloud Tasks queues (see ``cloudtask.control``)."""
        return CloudTasksManager(self)

    def check(self) -> list[CheckMessage]:
        """Report the settings Cloud Tasks needs: PROJECT, LOCATION and (for HTTP targets) URL."""
        return [
            Error(
                f"CLOUDTASK['{key}'] is required by the Cloud Tasks backend.",
                hint=hint,
                id=check_id,
            )
            for key, (check_id, hint) in _REQUIRED.items()
            if not conf.get(key) and not (key == "URL" and _only_app_engine_tasks())
        ]

    def push(self, message: TaskMessage) -> str:
        """Create the task, making its queue first if it is missing and that is allowed."""
        parent = requests.queue_path(message.queue)
        request = requests.create_task_request(message, parent)
        try:
            name = self._create_task(request, message, parent)
        except QueueNotFound:
            if not conf.get("AUTO_CREATE_QUEUES"):
                raise
            self._create_queue(message, parent)
            name = self._create_task(request, message, parent)
        return name.rsplit("/", 1)[-1]

    def call(
        self, method: Any, request: Any, *, deadline: float | None = None, **options: Any
    ) -> Any:
        """Make one API call under this backend's retry policy (see :func:`.rpc.call`).

        ``deadline`` (seconds, retries included) replaces ``push_deadline``; one attempt
        never waits longer than it.
        """
        total = self.push_deadline if deadline is None else deadline
        policy = rpc.RetryPolicy(
            total, min(self.call_timeout, total), self.initial_backoff, self.max_backoff
        )
        return rpc.call(method, request, policy=policy, **options)

    def read_queue_config(self, name: str) -> QueueConfig | None:
        """Ask Cloud Tasks for the queue's retry policy (GetQueue, one try, a short limit).

        A queue that does not exist is None. When the queue cannot be read (a service account
        without ``cloudtasks.queues.get``, or no answer) it is None too, logged once per queue
        and process: the last attempt is then told only from declared queues, as before.
        """
        from google.api_core.exceptions import GoogleAPICallError
        from google.cloud import tasks_v2

        from .manager import queue_config

        request = tasks_v2.GetQueueRequest(name=requests.queue_path(name))
        policy = rpc.RetryPolicy(
            self.queue_read_timeout, self.queue_read_timeout, self.initial_backoff, 0
        )
        try:
            queue = rpc.call(
                client.client().get_queue,
                request,
                policy=policy,
                what=f"rpc=GetQueue queue={name}",
                retry=False,
                action="answer GetQueue",
                again="the endpoint asks again later",
            )
        except GoogleAPICallError as exc:
            if errors.code(exc) == "NOT_FOUND":
                return None
            self._cannot_read_queue(name, errors.describe(exc))
            return None
        except CloudTaskError as exc:
            self._cannot_read_queue(name, str(exc))
            return None
        return queue_config(name, queue)

    def _cannot_read_queue(self, name: str, reason: str) -> None:
        warned: set[str] = self.__dict__.setdefault("_unreadable_queues", set())
        if name in warned:
            return
        warned.add(name)
        logger.warning(
            "queue=%s status=retry-config-unknown reason=%s: on_failure and is_last_attempt "
            "only see the queue's last attempt when it is declared in CLOUDTASK['QUEUES'] or "
            "the service account may read it (roles/cloudtasks.viewer)",
            name,
            reason,
        )

    def _create_task(self, request: Any, message: TaskMessage, parent: str) -> str:
        # ALREADY_EXISTS after a timed-out attempt means that attempt landed: the task is ours.
        method = client.client().create_task
        task = self._push_call(method, request, message, parent, exists_ok_after=1)
        return str(request.task.name if task is None else task.name)

    def _create_queue(self, message: TaskMessage, parent: str) -> None:
        from google.cloud import tasks_v2

        request = tasks_v2.CreateQueueRequest(
            parent=requests.location_path(), queue=requests.queue(message.queue)
        )
        # ALREADY_EXISTS: another process made it meanwhile, which is just as good.
        method = client.client().create_queue
        self._push_call(method, request, message, parent, exists_ok_after=0)
        logger.info("queue=%s status=created", parent)

    def _push_call(
        self, method: Any, request: Any, message: TaskMessage, parent: str, *, exists_ok_after: int
    ) -> Any:
        from google.api_core.exceptions import GoogleAPICallError

        try:
            return self.call(
                method,
                request,
                what=f"task={message.label} queue={message.queue}",
                exists_ok_after=exists_ok_after,
            )
        except GoogleAPICallError as exc:
            raise errors.translate(exc, message, parent) from exc


def _only_app_engine_tasks() -> bool:
    """Return whether every registered task targets App Engine, which needs no URL."""
    definitions = [registry.get(name) for name in registry]
    return bool(definitions) and all(task.app_engine is not None for task in definitions)
