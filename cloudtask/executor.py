"""verify -> decode -> execute: the one path every delivery takes.

The view, ImmediateBackend, ``capture_tasks().run_all()`` and the local worker all end here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import envelope, signing
from .exceptions import ArgumentsDoNotBind, ConfigurationError, InvalidRequest
from .registry import registry
from .request import CloudTaskRequest

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger("cloudtask")


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery: the HTTP status and JSON body to answer with."""

    status: int
    content: bytes
    result: Any = None
    exception: BaseException | None = None


def _answer(status: int, body: dict[str, Any]) -> Outcome:
    return Outcome(status=status, content=envelope.dumps(body).encode())


def refuse(error: InvalidRequest, *, task: str = "-", call_id: str = "-") -> Outcome:
    """Log and answer a refused request; the detail never contains secrets."""
    logger.warning(
        "task=%s id=%s status=refused code=%s reason=%s", task, call_id, error.code, error.detail
    )
    return _answer(error.status, {"status": "error", "error": error.code, "detail": error.detail})


def deliver(
    *,
    path: str,
    body: bytes,
    meta: Mapping[str, str],
    http_request: HttpRequest | None = None,
    raise_exceptions: bool = False,
) -> Outcome:
    """Authenticate, decode and run one task request."""
    started = time.perf_counter()
    try:
        signing.verify(path, body, meta.get(signing.SIGNATURE_META_KEY))
    except InvalidRequest as exc:
        return refuse(exc)
    except ConfigurationError as exc:
        logger.error("task=- id=- status=misconfigured reason=%s", exc)
        return _answer(503, {"status": "error", "error": "misconfigured"})
    try:
        data = envelope.decode(body)
        task = registry.get(data.task)
        try:
            task.check_received(data.args, data.kwargs)
        except TypeError as exc:
            raise ArgumentsDoNotBind(f"arguments do not fit {data.task}(): {exc}") from None
    except InvalidRequest as exc:
        return refuse(exc)
    request = CloudTaskRequest.from_meta(meta, http_request, data.id)
    try:
        result = task.run(request, data.args, data.kwargs)
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        if raise_exceptions:
            logger.info("task=%s id=%s status=failed duration_ms=%.1f", task.name, data.id, elapsed)
            raise
        logger.exception(
            "task=%s id=%s status=failed duration_ms=%.1f", task.name, data.id, elapsed
        )
        outcome = _answer(500, {"status": "failed", "error": type(exc).__name__})
        return Outcome(outcome.status, outcome.content, exception=exc)
    elapsed = (time.perf_counter() - started) * 1000
    logger.info("task=%s id=%s status=success duration_ms=%.1f", task.name, data.id, elapsed)
    return Outcome(200, _success_body(task.name, data.id, result), result=result)


def _success_body(name: str, call_id: str, result: Any) -> bytes:
    try:
        return envelope.dumps({"status": "success", "id": call_id, "result": result}).encode()
    except (TypeError, ValueError):
        # The task ran; an unserialisable return value must not make Cloud Tasks retry it.
        logger.warning("task=%s id=%s result_not_json=true", name, call_id)
        return envelope.dumps({"status": "success", "id": call_id, "result": None}).encode()
