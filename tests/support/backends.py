from cloudtask.backends.base import InProcessBackend, TaskMessage


class RecordingBackend(InProcessBackend):
    """A custom backend, as a project might write one."""

    def __init__(self) -> None:
        self.messages: list[TaskMessage] = []

    def push(self, message: TaskMessage) -> str:
        self.messages.append(message)
        return "recorded"
