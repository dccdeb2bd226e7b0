"""What a task failure means: retry, or fail for good (and tell ``on_failure``)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .exceptions import Reject, Retry, TaskDefinitionError

if TYPE_CHECKING:
    from .request import CloudTaskRequest
    from .task import Task

#: The keyword arguments an ``on_failure`` task receives.
FAILURE_ARGUMENTS = ("task", "id", "args", "kwargs", "error")
TRACEBACK_LIMIT = 4000


@dataclass(frozen=True)
class Verdict:
    """How one failed attempt ends: ``retry`` (answer 500) or ``failed`` (answer 200)."""

    action: str
    reason: str


def judge(task: Task[Any, Any], request: CloudTaskRequest, exc: BaseException) -> Verdict:
    """Decide whether Cloud Tasks should retry the attempt that raised ``exc``."""
    if isinstance(exc, Reject):
        return Verdict("failed", "rejected")
    if task.retry_for is not None and not isinstance(exc, task.retry_for):
        return Verdict("failed", "not-retryable")
    if task.max_retries is not None and request.retries >= task.max_retries:
        return Verdict("failed", "max-retries")
    if request.is_last_attempt:
        return Verdict("failed", "max-attempts")
    return Verdict("retry", "error")


def judge_retry(task: Task[Any, Any], request: CloudTaskRequest) -> Verdict:
    """Decide whether a ``request.retry()`` may push another copy."""
    if task.max_retries is not None and request.retries >= task.max_retries:
        return Verdict("failed", "max-retries")
    return Verdict("retry", "requested")


def describe(exc: BaseException) -> dict[str, str]:
    """Return the error as ``on_failure`` receives it: class path, message, traceback excerpt."""
    if isinstance(exc, Retry) and exc.exc is not None:
        exc = exc.exc
    cls = type(exc)
    text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "traceback": text[-TRACEBACK_LIMIT:],
    }


def check_retry_options(task: Task[Any, Any]) -> None:
    """Validate max_retries, retry_for and on_failure at decoration time."""
    where = f"@task(...) of {task.name}"
    if task.max_retries is not None and (
        isinstance(task.max_retries, bool)
        or not isinstance(task.max_retries, int)
        or task.max_retries < 0
    ):
        raise TaskDefinitionError(f"{where}: max_retries must be a whole number >= 0 or None.")
    retry_for = task.retry_for
    if retry_for is not None:
        retry_for = retry_for if isinstance(retry_for, tuple) else (retry_for,)
        if not retry_for or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_for
        ):
            raise TaskDefinitionError(
                f"{where}: retry_for must be an exception class or a tuple of them."
            )
        object.__setattr__(task, "retry_for", retry_for)
    on_failure = task.on_failure
    if on_failure is not None and not isinstance(on_failure, str):
        from .task import Task

        if not isinstance(on_failure, Task):
            raise TaskDefinitionError(
                f"{where}: on_failure must be a task (decorated with @task) or its registry name."
            )
        check_failure_handler(on_failure)


def check_failure_handler(handler: Task[Any, Any]) -> None:
    """Refuse an ``on_failure`` task that cannot take the failure's keyword arguments."""
    try:
        handler.check_received([], dict.fromkeys(FAILURE_ARGUMENTS))
    except TypeError as exc:
        raise TaskDefinitionError(
            f"on_failure task {handler.name} must accept the keyword arguments "
            f"{', '.join(FAILURE_ARGUMENTS)} ({exc})."
        ) from None
