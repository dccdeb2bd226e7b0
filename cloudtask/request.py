"""The request a task function receives, built from the X-CloudTasks-* headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NoReturn

from . import conf
from .exceptions import Retry

if TYPE_CHECKING:
    from django.http import HttpRequest

# Header names as Cloud Tasks sends them, and as Django exposes them in request.META.
QUEUE_NAME = "X-CloudTasks-QueueName"
TASK_NAME = "X-CloudTasks-TaskName"
RETRY_COUNT = "X-CloudTasks-TaskRetryCount"
EXECUTION_COUNT = "X-CloudTasks-TaskExecutionCount"
ETA = "X-CloudTasks-TaskETA"
PREVIOUS_RESPONSE = "X-CloudTasks-TaskPreviousResponse"
RETRY_REASON = "X-CloudTasks-TaskRetryReason"
USER_AGENT = "Google-Cloud-Tasks"

_MAX_COUNT = 10**9
_ETA_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_MAX_HEADER = 500


def meta_key(header: str) -> str:
    """Return the request.META key Django uses for an HTTP header name."""
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"


def to_meta(headers: Mapping[str, str]) -> dict[str, str]:
    """Turn HTTP headers into a request.META-like mapping."""
    return {meta_key(name): value for name, value in headers.items()}


def _count(value: str | None, default: int | None) -> int | None:
    # ASCII digits only: int() alone would also take "-1", " 7" or full-width digits.
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 10:
        return default
    number = int(value)
    return number if number <= _MAX_COUNT else default


def _eta(value: str | None) -> datetime | None:
    if value is None or not _ETA_RE.fullmatch(value):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _text(value: str | None) -> str:
    return value[:_MAX_HEADER] if value else ""


@dataclass(frozen=True, slots=True)
class CloudTaskRequest:
    """What a task knows about the delivery it is running in.

    Missing or malformed header values give the defaults below; they never raise.
    """

    task_name: str = ""
    queue_name: str = ""
    retry_count: int = 0
    execution_count: int = 0
    eta: datetime | None = None
    previous_response: int | None = None
    retry_reason: str | None = None
    http_request: HttpRequest | None = None
    call_id: str = ""
    #: Retries of this call so far: Cloud Tasks' own plus earlier ``request.retry()`` copies.
    retries: int = 0
    #: True when a failure now will not be retried: ``max_retries`` reached, or the queue's
    #: ``max_attempts`` (from ``CLOUDTASK["QUEUES"]``, else read from the queue) reached by a
    #: queue without a ``max_retry_duration`` (Cloud Tasks needs both); also True when run
    #: directly, in-process.
    is_last_attempt: bool = False
    #: The service account whose OIDC token authenticated the request (None without OIDC).
    oidc_email: str | None = None

    @classmethod
    def from_meta(
        cls,
        meta: Mapping[str, str],
        http_request: HttpRequest | None = None,
        call_id: str = "",
        *,
        earlier_retries: int = 0,
        max_retries: int | None = None,
        max_attempts: int | None = None,
        oidc_email: str | None = None,
    ) -> CloudTaskRequest:
        """Build the request from a request.META-like mapping and the retry limits."""
        get = meta.get
        retry_count = _count(get("HTTP_X_CLOUDTASKS_TASKRETRYCOUNT"), 0) or 0
        retries = earlier_retries + retry_count
        last = (max_retries is not None and retries >= max_retries) or (
            max_attempts is not None and max_attempts > 0 and retry_count + 1 >= max_attempts
        )
        return cls(
            task_name=_text(get("HTTP_X_CLOUDTASKS_TASKNAME")),
            queue_name=_text(get("HTTP_X_CLOUDTASKS_QUEUENAME")),
            retry_count=retry_count,
            execution_count=_count(get("HTTP_X_CLOUDTASKS_TASKEXECUTIONCOUNT"), 0) or 0,
            eta=_eta(get("HTTP_X_CLOUDTASKS_TASKETA")),
            previous_response=_count(get("HTTP_X_CLOUDTASKS_TASKPREVIOUSRESPONSE"), None),
            retry_reason=_text(get("HTTP_X_CLOUDTASKS_TASKRETRYREASON")) or None,
            http_request=http_request,
            call_id=call_id,
            retries=retries,
            is_last_attempt=last,
            oidc_email=oidc_email,
        )

    def retry(
        self, *, countdown: float | timedelta = 0, exc: BaseException | None = None
    ) -> NoReturn:
        """End this attempt and run a copy of the call after ``countdown``.

        Raises :class:`cloudtask.Retry`; the endpoint pushes the copy and answers 200. The
        copy counts towards the task's ``max_retries``; past it, the call fails for good.
        """
        delay = conf.to_timedelta(countdown, "retry(countdown=...)")
        if not timedelta(0) <= delay <= timedelta(days=30):
            raise ValueError("retry(countdown=...) must be between 0 and 30 days.")
        raise Retry(delay, exc)


def cloud_tasks_headers(
    *,
    queue: str,
    name: str,
    eta: datetime | None,
    retry_count: int = 0,
    execution_count: int = 0,
    previous_response: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, str]:
    """Return the headers Cloud Tasks adds when it delivers a task (DESIGN.md section 8)."""
    headers = {
        QUEUE_NAME: queue,
        TASK_NAME: name,
        RETRY_COUNT: str(retry_count),
        EXECUTION_COUNT: str(execution_count),
        ETA: f"{(eta or datetime.now(timezone.utc)).timestamp():.6f}",
        "User-Agent": USER_AGENT,
    }
    if previous_response is not None:
        headers[PREVIOUS_RESPONSE] = str(previous_response)
    if retry_reason:
        headers[RETRY_REASON] = retry_reason
    return headers
