"""One attempt of a local task: the HTTP request Cloud Tasks would make, and its outcome."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.client import (
    HTTPConnection,
    HTTPException,
    HTTPResponse,
    HTTPSConnection,
    RemoteDisconnected,
)
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...envelope import OUTCOME_HEADER
from ...oidc import authorization
from ...options import BODY_METHODS
from ...request import cloud_tasks_headers
from .claims import Claimed

if TYPE_CHECKING:
    from ...queues import QueueConfig

logger = logging.getLogger("cloudtask.worker")

#: How much of a response body is kept for inspection.
EXCERPT_CHARS = 500
#: The longest Retry-After honoured, so a bad header cannot park a queue for good.
MAX_RETRY_AFTER = timedelta(hours=1)

_local = threading.local()

#: Linux's TCP_QUICKACK. A server that writes an answer's headers and its body in two sends
#: (runserver does) holds the body back until the headers are acknowledged, and on a kept-alive
#: connection Linux delays that acknowledgement by about 40 ms: every delivery would wait for
#: it. Asking for an immediate acknowledgement before each answer avoids the wait. Where the
#: option does not exist (macOS, Windows), each delivery opens a connection of its own.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered, or why there was no answer."""

    status: int | None
    excerpt: str
    reason: str = ""
    retry_after: timedelta | None = None
    duration: float = 0.0
    #: False when the attempt was not made (the previous worker's lease ran out instead).
    dispatched: bool = True
    #: The endpoint's ``X-CloudTask-Outcome`` header: "failed" with a 2xx is a give-up.
    outcome: str = ""


def _pool() -> dict[tuple[str, str, int], HTTPConnection]:
    # One pool per thread: each thread keeps its connections open between deliveries.
    pool: dict[tuple[str, str, int], HTTPConnection] | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def close_session() -> None:
    """Close this thread's open connections."""
    for connection in _pool().values():
        connection.close()
    _pool().clear()


def _post(claimed: Claimed, headers: dict[str, str]) -> tuple[HTTPResponse, bytes]:
    """Send the request on this thread's connection to the target, reconnecting once."""
    parts = urlsplit(claimed.url)
    secure = parts.scheme == "https"
    key = (parts.scheme, parts.hostname or "", parts.port or (443 if secure else 80))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = claimed.deadline.total_seconds()
    pool = _pool()
    for attempt in (1, 2):
        connection = pool.get(key)
        if connection is None:
            kind = HTTPSConnection if secure else HTTPConnection
            connection = pool[key] = kind(key[1], key[2], timeout=timeout)
        reused = connection.sock is not None
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            # Cloud Tasks sends a body only with POST, PUT and PATCH.
            body = claimed.body if claimed.method in BODY_METHODS else None
            connection.request(claimed.method, target, body=body, headers=headers)
            _acknowledge_at_once(connection)
            response = connection.getresponse()
            data = response.read()
        except (RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            connection.close()
            del pool[key]
            # The server closed a kept-alive connection before reading: send it again.
            if reused and attempt == 1:
                continue
            raise
        except BaseException:
            connection.close()
            del pool[key]
            raise
        if response.will_close or _QUICKACK is None:
            connection.close()
            del pool[key]
        return response, data
    raise AssertionError("unreachable")


def _acknowledge_at_once(connection: HTTPConnection) -> None:
    if _QUICKACK is None or connection.sock is None:
        return
    # A kernel that refuses it leaves the answer to the delayed acknowledgement.
    with contextlib.suppress(OSError):
        connection.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def request_headers(claimed: Claimed) -> dict[str, str]:
    """Return the stored headers with the ones Cloud Tasks adds on this attempt."""
    retry = claimed.dispatch_count > 1
    headers = {
        **claimed.headers,
        **cloud_tasks_headers(
            queue=claimed.queue,
            name=claimed.task_id,
            eta=claimed.schedule_time,
            retry_count=claimed.dispatch_count - 1,
            execution_count=claimed.execution_count,
            previous_response=claimed.previous_response if retry else None,
            retry_reason=claimed.retry_reason if retry else None,
        ),
    }
    # The token Cloud Tasks would add, decided at push time as Cloud Tasks does, signed
    # with the development key (trusted only while LocalBackend is configured).
    headers.update(authorization(claimed.oidc_token))
    return headers


def dispatch(claimed: Claimed) -> Answer:
    """Make the HTTP request of one attempt, with the dispatch deadline as timeout."""
    started = time.perf_counter()
    try:
        response, data = _post(claimed, request_headers(claimed))
    except TimeoutError:
        return Answer(None, "", "DEADLINE_EXCEEDED", duration=time.perf_counter() - started)
    except (OSError, HTTPException) as exc:
        excerpt = f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS]
        return Answer(None, excerpt, "UNAVAILABLE", duration=time.perf_counter() - started)
    status = response.status
    return Answer(
        status=status,
        excerpt=data[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS],
        reason=_reason(status),
        retry_after=_retry_after(response.getheader("Retry-After", ""))
        if status in (429, 503)
        else None,
        duration=time.perf_counter() - started,
        outcome=response.getheader(OUTCOME_HEADER, ""),
    )


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _retry_after(header: str) -> timedelta | None:
    value = header.strip()
    if not value:
        return None
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delay = when - datetime.now(timezone.utc)
    return max(timedelta(0), min(delay, MAX_RETRY_AFTER))


def outcome_fields(
    claimed: Claimed, answer: Answer, config: QueueConfig, now: datetime
) -> tuple[str, dict[str, Any]]:
    """Return the outcome ("succeeded", "retry", "failed") and the fields to store."""
    answered = answer.status is not None
    # Cloud Tasks' execution count leaves out 5xx answers.
    executed = answer.status is not None and answer.status < 500
    # Every outcome sets the same fields, so a batch of them is one UPDATE.
    fields: dict[str, Any] = {
        "last_response_status": answer.status,
        "last_response": answer.excerpt,
        "response_count": claimed.response_count + int(answered),
        "execution_count": claimed.execution_count + int(executed),
        "retry_reason": answer.reason[:200],
        "finished_at": now,
        # An attempt that was made ends now, answered or not; Cloud Tasks' response_time.
        "last_response_at": now if answer.dispatched else None,
        "schedule_time": claimed.schedule_time,
        "dispatch_count": claimed.dispatch_count - (not answer.dispatched),
    }
    if answer.status is not None and 200 <= answer.status < 300:
        if answer.outcome == "failed":
            # The endpoint answered 2xx so nothing retries, but the call failed for good
            # (Reject, max_retries, retry_for): keep it as failed for inspection.
            return "failed", {**fields, "status": "failed", "retry_reason": "gave up"}
        return "succeeded", {**fields, "status": "succeeded", "retry_reason": ""}
    if config.exhausted(fields["dispatch_count"], now - claimed.first_attempt_at):
        return "failed", {**fields, "status": "failed"}
    delay = config.backoff(fields["dispatch_count"])
    if answer.retry_after is not None:
        delay = max(delay, answer.retry_after)
    return "retry", {
        **fields,
        "status": "queued",
        "finished_at": None,
        "schedule_time": now + delay,
    }


def dispatch_line(claimed: Claimed, answer: Answer, outcome: str, fields: dict[str, Any]) -> str:
    """Return the one log line of a recorded attempt."""
    status = answer.status if answer.status is not None else answer.reason
    line = (
        f"task={claimed.task_name or '-'} name={claimed.task_id} queue={claimed.queue} "
        f"attempt={claimed.dispatch_count} status={status} "
        f"duration_ms={answer.duration * 1000:.1f} outcome={outcome}"
    )
    if not claimed.task_name:
        line += f" http_task={claimed.method}"  # push_http: no registry name
    if answer.status is None and answer.excerpt:
        # No answer: where the worker tried, and why it got none.
        line += f" url={claimed.url} error={answer.excerpt!r}"
    if outcome == "retry":
        line += f" next_eta={fields['schedule_time'].isoformat(timespec='milliseconds')}"
    return line


def unreachable_line(claimed: Claimed, answer: Answer) -> str:
    """Return the line said once when nothing answers at a task's URL."""
    return (
        f"nothing answers at {claimed.url} ({answer.excerpt}): is the development server "
        "running? Start it with manage.py runserver, or run manage.py cloudtask_dev, which "
        "starts it with a worker. The tasks wait and are retried with their queue's backoff."
    )
