"""Push many calls at once: concurrently over the shared client where the backend allows."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .exceptions import PushManyError

if TYPE_CHECKING:
    from .task import TaskCall, TaskHandle

#: Concurrent pushes by default; one gRPC channel carries them all (HTTP/2 streams).
DEFAULT_WORKERS = 32
MAX_WORKERS = 100


def push_many(
    calls: Iterable[TaskCall[Any]], *, workers: int = DEFAULT_WORKERS
) -> list[TaskHandle]:
    """Push every call and return their handles in input order.

    Cloud Tasks has no batch call for HTTP tasks, so the calls are pushed concurrently
    (``workers`` at a time) when the backend allows it, else one after the other. If any
    call fails, the others are still pushed and :class:`PushManyError` is raised with
    ``.handles`` (None where a call failed) and ``.errors`` (by input index).
    """
    from .backends import get_backend

    pending = list(calls)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"push_many(workers=...) must be 1 to {MAX_WORKERS}, not {workers!r}.")
    outcomes: list[TaskHandle | Exception]
    if get_backend().supports_concurrent_push and workers > 1 and len(pending) > 1:
        with ThreadPoolExecutor(min(workers, len(pending)), "cloudtask-push") as pool:
            outcomes = list(pool.map(_push_one, pending))
    else:
        outcomes = [_push_one(call) for call in pending]
    errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, Exception)}
    handles = [None if isinstance(o, Exception) else o for o in outcomes]
    if errors:
        raise PushManyError(handles, errors)
    return handles  # type: ignore[return-value]  # no None left when nothing failed


def _push_one(call: TaskCall[Any]) -> TaskHandle | Exception:
    if not hasattr(call, "delay"):
        return TypeError(f"push_many() takes task calls such as add(a=1), not {call!r}.")
    try:
        return call.delay()
    except Exception as exc:  # reported per call; the other calls go on
        return exc
