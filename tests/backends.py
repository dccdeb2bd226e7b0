from cloudtask.backends.base import InProcessBackend, TaskMessage
from cloudtask.task import TaskHandle


class RecordingBackend(InProcessBackend):
    """A custom backend, as a project might write one."""

    def __init__(self) -> None:
        self.messages: list[TaskMessage] = []

    def push(self, message: TaskMessage) -> TaskHandle:
        self.messages.append(message)
        return message.handle("recorded")
