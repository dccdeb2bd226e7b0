"""Run each push at once, in-process, through the endpoint's own verify -> execute path."""

from __future__ import annotations

from .. import executor
from ..exceptions import PushError
from ..request import cloud_tasks_headers, to_meta
from .base import InProcessBackend, TaskMessage, generated_task_id


class ImmediateBackend(InProcessBackend):
    """Runs the task synchronously when it is pushed; its exception reaches the caller.

    Scheduled calls run at once too, and names are not de-duplicated (nothing stays queued).
    No OIDC token is involved: the delivery never crosses HTTP.
    """

    def push(self, message: TaskMessage) -> str:
        task_id = message.task_id or generated_task_id()
        headers = {
            **message.headers,
            **cloud_tasks_headers(queue=message.queue, name=task_id, eta=message.eta),
        }
        outcome = executor.deliver(
            path=message.path, body=message.body, meta=to_meta(headers), raise_exceptions=True
        )
        if outcome.status != 200:
            raise PushError(
                f"{message.task_name} was refused by the endpoint path "
                f"({outcome.status}): {outcome.content.decode()}"
            )
        return task_id
