"""Run Django functions asynchronously on Google Cloud Tasks."""

from .exceptions import (
    AuthenticationFailed,
    CloudTaskError,
    ConfigurationError,
    DuplicateTaskName,
    InvalidRequest,
    PayloadTooLarge,
    PushError,
    TaskAlreadyExists,
    TaskDefinitionError,
    UnknownTask,
)
from .registry import Registry, registry
from .request import CloudTaskRequest
from .task import Task, TaskCall, TaskHandle, task

__all__ = [
    # Defining and pushing tasks
    "CloudTaskRequest",
    "Task",
    "TaskCall",
    "TaskHandle",
    "task",
    # The registry
    "Registry",
    "registry",
    # Errors
    "AuthenticationFailed",
    "CloudTaskError",
    "ConfigurationError",
    "DuplicateTaskName",
    "InvalidRequest",
    "PayloadTooLarge",
    "PushError",
    "TaskAlreadyExists",
    "TaskDefinitionError",
    "UnknownTask",
]
