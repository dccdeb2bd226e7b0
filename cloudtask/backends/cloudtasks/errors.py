"""Cloud Tasks API errors, translated into cloudtask's exception tree."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...exceptions import (
    CloudTasksPermissionDenied,
    PayloadTooLarge,
    PushError,
    PushPermissionDenied,
    QueueDeletedRecently,
    QueueNotFound,
    TaskAlreadyExists,
)
from . import client
from .requests import TASK_SIZE_LIMIT

if TYPE_CHECKING:
    from ..base import TaskMessage

_PERMISSION_RE = re.compile(r"permission\W+([a-z]+\.[A-Za-z]+\.[A-Za-z]+)", re.IGNORECASE)
_RESOURCE_RE = re.compile(r"resource\W+((?:projects|//)[^\"'\s)]+)", re.IGNORECASE)
#: What Cloud Tasks needs to create a task (roles/cloudtasks.enqueuer grants it).
CREATE_PERMISSION = "cloudtasks.tasks.create"


def code(exc: BaseException) -> str:
    """Return the gRPC status name of a google.api_core error ("UNAVAILABLE"), or ""."""
    status = getattr(exc, "grpc_status_code", None)
    return str(getattr(status, "name", "")) if status is not None else ""


def describe(exc: BaseException) -> str:
    """Return ``CODE: message`` for logs and error messages."""
    return f"{code(exc) or type(exc).__name__}: {getattr(exc, 'message', None) or exc}"


def is_transient(exc: BaseException) -> bool:
    """Return whether trying again later may succeed."""
    return code(exc) in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def is_queue_missing(exc: BaseException) -> bool:
    """Return whether the queue does not exist (NOT_FOUND, or Cloud Tasks' precondition)."""
    if code(exc) == "NOT_FOUND":
        return True
    # CreateTask on a missing queue answers FAILED_PRECONDITION "Queue does not exist."
    return code(exc) == "FAILED_PRECONDITION" and "does not exist" in _text(exc)


def is_deleted_recently(exc: BaseException) -> bool:
    """Return whether the queue name is blocked because a queue of that name was deleted."""
    text = _text(exc)
    return code(exc) == "FAILED_PRECONDITION" and ("recently" in text or "too recent" in text)


def translate(exc: BaseException, message: TaskMessage, parent: str) -> Exception:
    """Return the cloudtask exception for an API error raised while pushing ``message``."""
    status = code(exc)
    if status == "ALREADY_EXISTS" and message.task_id is not None:
        return TaskAlreadyExists(message.task_id, message.queue)
    if is_deleted_recently(exc):
        return QueueDeletedRecently(message.queue, parent)
    if is_queue_missing(exc):
        return QueueNotFound(message.queue, parent, describe(exc))
    if status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return permission_denied(exc, parent)
    if status == "INVALID_ARGUMENT" and "too large" in _text(exc):
        return PayloadTooLarge(_size(message), TASK_SIZE_LIMIT, what="encoded task")
    return PushError(f"Cloud Tasks refused {message.label} for queue {parent}: {describe(exc)}")


def permission_denied(exc: BaseException, resource: str) -> PushPermissionDenied:
    """Return the push error naming the account and the permission it lacks."""
    return PushPermissionDenied(*_permission(exc, resource, CREATE_PERMISSION))


def call_denied(exc: BaseException, resource: str, permission: str) -> CloudTasksPermissionDenied:
    """Return the management error naming the account and the permission it lacks."""
    return CloudTasksPermissionDenied(*_permission(exc, resource, permission))


def _permission(exc: BaseException, resource: str, permission: str) -> tuple[str, str, str, str]:
    # Cloud Tasks names the permission and the resource in its message; fall back to ours.
    text = str(getattr(exc, "message", "") or exc)
    found = _PERMISSION_RE.search(text)
    where = _RESOURCE_RE.search(text)
    return (
        client.account(),
        found.group(1) if found else permission,
        where.group(1) if where else resource,
        describe(exc),
    )


def _text(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc).lower()


def _size(message: TaskMessage) -> int:
    return (
        len(message.body)
        + len(message.url)
        + sum(len(k) + len(v) for k, v in message.headers.items())
    )
