"""Run each push at once, in-process, through the endpoint's own verify -> execute path."""

from __future__ import annotations

import random

from .. import executor
from ..exceptions import PushError
from ..request import cloud_tasks_headers, to_meta
from ..task import TaskHandle
from .base import InProcessBackend, TaskMessage


def generated_task_id() -> str:
    """Return an id shaped like the ones Cloud Tasks assigns to unnamed tasks."""
    return str(random.randrange(10**18, 10**19))


class ImmediateBackend(InProcessBackend):
    """Runs the task synchronously when it is pushed; its exception reaches the caller.

    Scheduled calls run at once too, and names are not de-duplicated (nothing stays queued).
    """

    supports_schedule = False
    supports_named = False

    def push(self, message: TaskMessage) -> TaskHandle:
        name = message.name or generated_task_id()
        headers = {
            **message.headers,
            **cloud_tasks_headers(queue=message.queue, name=name, eta=message.eta),
        }
        outcome = executor.deliver(
            path=message.path, body=message.body, meta=to_meta(headers), raise_exceptions=True
        )
        if outcome.status != 200:
            raise PushError(
                f"{message.task.name} was refused by the endpoint path "
                f"({outcome.status}): {outcome.content.decode()}"
            )
        return message.handle(name)
