"""Signals sent around every task call; a receiver that raises is logged, never fatal.

Every signal's sender is the task definition (``cloudtask.Task``) and carries ``call_id``.

- ``task_pushed(task, call_id, handle, call, duration_ms)``: after a backend accepted a
  push, whichever kind (``request.retry()`` copies and ``on_failure`` pushes included);
  ``call`` is the TaskCall (``call.arguments`` gives its args and kwargs).
- ``task_started(task, call_id, request, delay_ms)``: before the function runs; ``delay_ms``
  is how long after its ETA (``X-CloudTasks-TaskETA``) the attempt started, None without one.
- ``task_succeeded(task, call_id, request, result, duration_ms)``
- ``task_retrying(task, call_id, request, error, countdown, duration_ms)``: this attempt ends
  and the call will run again (Cloud Tasks retries it, or ``request.retry()`` pushed a copy;
  ``countdown`` is None when Cloud Tasks' own backoff decides).
- ``task_failed(task, call_id, request, error, reason, duration_ms)``: for good; ``reason`` is
  ``rejected``, ``not-retryable``, ``max-retries`` or ``max-attempts``.
- ``task_expired(task, call_id, request, expires)``: a delivery came after the call's
  ``expires`` (an aware datetime) and was acknowledged without running the function.

``workflow_finished(workflow_id, status, result, error)`` is sent once when a workflow of
``cloudtask.workflows`` ends (``status`` "succeeded", "failed" or "revoked"), after the
transaction that ended it committed; its sender is ``cloudtask.models.Workflow``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("cloudtask")

task_pushed = Signal()
task_started = Signal()
task_succeeded = Signal()
task_retrying = Signal()
task_failed = Signal()
task_expired = Signal()
workflow_finished = Signal()


def active(signal: Signal) -> bool:
    """Return whether ``signal`` has receivers at all (cheap: call before building arguments)."""
    return bool(signal.receivers)


def send(signal: Signal, task: Any, **kwargs: Any) -> None:
    """Send ``signal``; log, rather than raise, what a receiver raises."""
    # Most projects connect nothing: skip Django's per-sender receiver lookup then.
    if not signal.receivers or not signal.has_listeners(task):
        return
    for receiver, response in signal.send_robust(task, task=task, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "task=%s id=%s signal_receiver_failed=%s",
                task.name,
                kwargs.get("call_id", "-"),
                getattr(receiver, "__qualname__", receiver),
                exc_info=response,
            )


def send_workflow_finished(sender: type, workflow_id: str, **kwargs: Any) -> None:
    """Send ``workflow_finished``; log, rather than raise, what a receiver raises."""
    if not workflow_finished.receivers:
        return
    for receiver, response in workflow_finished.send_robust(
        sender, workflow_id=workflow_id, **kwargs
    ):
        if isinstance(response, Exception):
            logger.error(
                "workflow=%s signal_receiver_failed=%s",
                workflow_id,
                getattr(receiver, "__qualname__", receiver),
                exc_info=response,
            )
