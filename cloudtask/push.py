"""The one push path: every push builds its message here and becomes a ``TaskHandle``.

``delay``, ``push``, ``schedule``, ``delay_on_commit``, :func:`push_many`, ``request.retry()``
copies and ``on_failure`` pushes all end in :func:`push`: it builds the signed message
(:mod:`cloudtask.message`), hands it to the backend, turns the task id the backend returns
into a :class:`TaskHandle` and sends ``task_pushed`` once.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction

from . import options, signals, tracing
from .backends.loading import get_backend
from .control import delete_task, get_task, run_task
from .exceptions import PushError, PushManyError
from .message import build_http_message, build_message
from .results import get_result

if TYPE_CHECKING:
    from .backends.base import BaseBackend, TaskMessage
    from .backends.management import TaskInfo, View
    from .http_tasks import HttpCall
    from .models import TaskResult
    from .task import TaskCall

#: Concurrent pushes by default; one gRPC channel carries them all (HTTP/2 streams).
DEFAULT_WORKERS = 32
MAX_WORKERS = 100


@dataclass(frozen=True)
class TaskHandle:
    """What a push returns: where the task went and under which name."""

    #: The Cloud Tasks task id.
    name: str
    queue: str
    eta: datetime | None
    #: The registry name of the task ("" for an HTTP task of ``push_http``).
    task: str = ""
    #: The call's id, for its stored result ("" for an HTTP task, which has none).
    call_id: str = ""

    def result(self) -> TaskResult:
        """Return the stored result of this call (needs ``CLOUDTASK["RESULTS"] = True``)."""
        return get_result(self.call_id)

    def get(self, view: View = "basic") -> TaskInfo:
        """Return the task as its queue holds it now (``TaskNotFound`` once it finished)."""
        return get_task(self.queue, self.name, view)

    def delete(self, not_found_ok: bool = False) -> bool:
        """Delete the task from its queue (see ``cloudtask.delete_task``)."""
        return delete_task(self.queue, self.name, not_found_ok=not_found_ok)

    def run(self) -> TaskInfo:
        """Dispatch the task now, whatever its schedule (see ``cloudtask.run_task``)."""
        return run_task(self.queue, self.name)


def push(
    call: TaskCall[Any],
    *,
    eta: datetime | None = None,
    task_id: str | None = None,
    call_id: str | None = None,
    retries: int = 0,
    expires: datetime | timedelta | None = None,
    workflow: list[str] | None = None,
) -> TaskHandle:
    """Push ``call`` to its queue through the current backend and return its handle.

    ``task_id`` is the Cloud Tasks id to ask for (None: the backend chooses); ``call_id`` and
    ``retries`` are given by ``request.retry()`` copies, which keep their call's id.
    ``expires`` (a moment, or a duration from now) defaults to the task's ``expires``.
    ``workflow`` ([workflow id, step key]) makes the push a step of ``cloudtask.workflows``.
    """
    call.consume()
    backend = get_backend()
    expires_at = options.expiry_time(call.task.expires if expires is None else expires, eta)
    with tracing.push_span(call.task.name) as span:
        message = build_message(
            call,
            backend,
            eta=eta,
            task_id=task_id,
            call_id=call_id,
            retries=retries,
            trace_headers=span.headers(),
            expires=expires_at,
            workflow=workflow,
        )
        started = time.perf_counter()
        pushed = _send(backend, message, span)
    handle = TaskHandle(
        name=pushed, queue=message.queue, eta=eta, task=message.task_name, call_id=message.call_id
    )
    signals.send(
        signals.task_pushed,
        call.task,
        call_id=message.call_id,
        handle=handle,
        call=call,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    return handle


def push_http(call: HttpCall) -> TaskHandle:
    """Push an HTTP task (``cloudtask.push_http``) through the current backend.

    The same path as a task's push, without what only a task has: no envelope, signature,
    call id or task signals.
    """
    backend = get_backend()
    eta = call.eta()
    with tracing.push_span(call.label) as span:
        message = build_http_message(call, backend, eta=eta, trace_headers=span.headers())
        pushed = _send(backend, message, span)
    return TaskHandle(name=pushed, queue=message.queue, eta=eta)


def _send(backend: BaseBackend, message: TaskMessage, span: tracing.PushSpan) -> str:
    pushed = _task_id(backend, backend.push(message))
    span.pushed(message.queue, pushed, message.call_id)
    return pushed


def _task_id(backend: BaseBackend, returned: object) -> str:
    if isinstance(returned, str) and returned:
        return returned
    # Backends written before push() returned the id gave a TaskHandle; take its name.
    name = getattr(returned, "name", None)
    if isinstance(name, str) and name:
        return name
    raise PushError(
        f"{type(backend).__name__}.push() must return the Cloud Tasks task id (a non-empty "
        f"str), not {returned!r}."
    )


def push_on_commit(
    call: TaskCall[Any],
    task_id: str | None,
    using: str | None = None,
    expires: datetime | timedelta | None = None,
) -> None:
    """Push ``call`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(partial(push, call, task_id=task_id, expires=expires), using=using)


def push_many(
    calls: Iterable[TaskCall[Any] | HttpCall], *, workers: int = DEFAULT_WORKERS
) -> list[TaskHandle]:
    """Push every call (task calls, and ``HttpCall`` HTTP tasks) and return their handles.

    The handles come in input order. Cloud Tasks has no batch call for HTTP tasks, so the calls are pushed concurrently
    (``workers`` at a time) when the backend allows it, else one after the other. If any
    call fails, the others are still pushed and :class:`PushManyError` is raised with
    ``.handles`` (None where a call failed) and ``.errors`` (by input index).
    """
    pending = list(calls)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"push_many(workers=...) must be 1 to {MAX_WORKERS}, not {workers!r}.")
    outcomes: list[TaskHandle | Exception]
    if get_backend().supports_concurrent_push and workers > 1 and len(pending) > 1:
        # Each thread pushes in a copy of the caller's context: its trace, its overrides.
        context = contextvars.copy_context()
        with ThreadPoolExecutor(min(workers, len(pending)), "cloudtask-push") as pool:
            outcomes = list(pool.map(lambda call: context.copy().run(_push_one, call), pending))
    else:
        outcomes = [_push_one(call) for call in pending]
    errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, Exception)}
    handles = [None if isinstance(o, Exception) else o for o in outcomes]
    if errors:
        raise PushManyError(handles, errors)
    return handles  # type: ignore[return-value]  # no None left when nothing failed


def _push_one(call: TaskCall[Any] | HttpCall) -> TaskHandle | Exception:
    if not hasattr(call, "delay"):
        return TypeError(
            "push_many() takes task calls such as add(a=1) and HTTP tasks such as "
            f"cloudtask.HttpCall('https://...'), not {call!r}."
        )
    try:
        return call.delay()
    except Exception as exc:  # reported per call; the other calls go on
        return exc
