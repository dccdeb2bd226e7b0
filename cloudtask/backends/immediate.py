"""Run each push at once, in-process, through the endpoint's own verify -> execute path."""

from __future__ import annotations

from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import urlsplit

from .. import executor
from ..exceptions import PushError
from ..options import BODY_METHODS
from ..request import cloud_tasks_headers, to_meta
from .base import InProcessBackend, TaskMessage, generated_task_id

#: How much of an HTTP task's answer an error quotes.
EXCERPT_CHARS = 200


class ImmediateBackend(InProcessBackend):
    """Runs the task synchronously when it is pushed; its exception reaches the caller.

    Scheduled calls run at once too, and names are not de-duplicated (nothing stays queued).
    No OIDC token is involved: the delivery never crosses HTTP. An HTTP task of
    ``push_http`` is sent at once, once, with Cloud Tasks' headers and no token; an answer
    other than 2xx, or none, raises ``PushError``.
    """

    def push(self, message: TaskMessage) -> str:
        task_id = message.task_id or generated_task_id()
        headers = {
            **message.headers,
            **cloud_tasks_headers(queue=message.queue, name=task_id, eta=message.eta),
        }
        if message.is_http_task:
            _send(message, headers)
            return task_id
        outcome = executor.deliver(
            path=message.path, body=message.body, meta=to_meta(headers), raise_exceptions=True
        )
        if outcome.status != 200:
            raise PushError(
                f"{message.task_name} was refused by the endpoint path "
                f"({outcome.status}): {outcome.content.decode()}"
            )
        return task_id


def _send(message: TaskMessage, headers: dict[str, str]) -> None:
    """Make an HTTP task's request now; raise PushError unless it is answered 2xx."""
    parts = urlsplit(message.url)
    kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
    timeout = message.timeout.total_seconds() if message.timeout else 600.0
    connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = message.body if message.method in BODY_METHODS else None
    try:
        connection.request(message.method, target, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
    except (OSError, HTTPException) as exc:
        raise PushError(f"{message.label} could not be sent: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise PushError(f"{message.label} was answered {response.status}: {answer}")
