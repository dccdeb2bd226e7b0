"""Backends a project might write: a recorder, subclasses of ours, and one from before 0.2."""

from __future__ import annotations

from cloudtask import TaskHandle
from cloudtask.backends.base import BaseBackend, InProcessBackend, TaskMessage
from cloudtask.backends.cloudtasks import CloudTasksBackend
from cloudtask.backends.immediate import ImmediateBackend
from cloudtask.backends.local import LocalBackend


class RecordingBackend(InProcessBackend):
    """A custom backend, as a project might write one."""

    def __init__(self) -> None:
        self.messages: list[TaskMessage] = []

    def push(self, message: TaskMessage) -> str:
        self.messages.append(message)
        return "recorded"


class HandleReturningBackend(RecordingBackend):
    """A backend written when ``push()`` returned a ``TaskHandle``."""

    def push(self, message: TaskMessage) -> TaskHandle:  # type: ignore[override]
        super().push(message)
        return TaskHandle(name="from-a-handle", queue=message.queue, eta=message.eta)


class NamelessBackend(RecordingBackend):
    """A backend that forgets to return the task id."""

    def push(self, message: TaskMessage) -> None:  # type: ignore[override]
        super().push(message)


class TracedLocalBackend(LocalBackend):
    """A project's LocalBackend with something added: it must stay a development backend."""


class TracedCloudTasksBackend(CloudTasksBackend):
    """A project's CloudTasksBackend with something added: it needs the same settings."""


class TracedImmediateBackend(ImmediateBackend):
    """A project's ImmediateBackend with something added."""


class SandboxBackend(BaseBackend):
    """A project's own development backend, declared as one."""

    development = True

    def push(self, message: TaskMessage) -> str:
        return "sandboxed"
