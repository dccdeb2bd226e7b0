"""What a task failure means at run time: retry, or fail for good (and tell ``on_failure``).

The options these decisions read are checked at decoration, in :mod:`cloudtask.options`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .exceptions import Reject, Retry

if TYPE_CHECKING:
    from .request import CloudTaskRequest
    from .task import Task

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
