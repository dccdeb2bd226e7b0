"""Run Django functions asynchronously on Google Cloud Tasks."""

from . import signals
from .exceptions import (
    AuthenticationFailed,
    CloudTaskError,
    ConfigurationError,
    DuplicateTaskName,
    InvalidRequest,
    PayloadTooLarge,
    PushError,
    Reject,
    Retry,
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
    # Signals
    "signals",
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
    "Reject",
    "Retry",
    "TaskAlreadyExists",
    "TaskDefinitionError",
    "UnknownTask",
]
