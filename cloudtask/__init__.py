"""Run Django functions asynchronously on Google Cloud Tasks."""

from . import signals
from .batch import push_many
from .exceptions import (
    AuthenticationFailed,
    CloudTaskError,
    CloudTasksUnavailable,
    ConfigurationError,
    DuplicateTaskName,
    InvalidRequest,
    PayloadTooLarge,
    PushError,
    PushManyError,
    PushPermissionDenied,
    QueueDeletedRecently,
    QueueNotFound,
    Reject,
    Retry,
    TaskAlreadyExists,
    TaskDefinitionError,
    UnknownTask,
)
from .registry import Registry, registry
from .request import CloudTaskRequest
from .results import ResultNotFound, get_result
from .task import Task, TaskCall, TaskHandle, task

__all__ = [
    # Defining and pushing tasks
    "CloudTaskRequest",
    "Task",
    "TaskCall",
    "TaskHandle",
    "push_many",
    "task",
    # Signals and results
    "signals",
    "get_result",
    "ResultNotFound",
    # The registry
    "Registry",
    "registry",
    # Errors
    "AuthenticationFailed",
    "CloudTaskError",
    "CloudTasksUnavailable",
    "ConfigurationError",
    "DuplicateTaskName",
    "InvalidRequest",
    "PayloadTooLarge",
    "PushError",
    "PushManyError",
    "PushPermissionDenied",
    "QueueDeletedRecently",
    "QueueNotFound",
    "Reject",
    "Retry",
    "TaskAlreadyExists",
    "TaskDefinitionError",
    "UnknownTask",
]
