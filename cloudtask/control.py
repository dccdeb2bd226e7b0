"""Queue and task management, the same on Cloud Tasks and on the local queue.

```python
import cloudtask

cloudtask.create_queue("emails", max_dispatches_per_second=5, max_attempts=10)
cloudtask.pause_queue("emails")
for info in cloudtask.list_tasks("emails", view="full"):
    print(info.name, info.state, info.schedule_time, info.dispatch_count)
cloudtask.run_task("emails", "welcome-42")
```

Every call goes to the configured backend (``CLOUDTASK["BACKEND"]``): the Cloud Tasks
backend makes Cloud Tasks API calls, the local backend reads and writes the project's
database. Queue options are the names of ``CLOUDTASK["QUEUES"]`` (Cloud Tasks' own) and are
checked against Cloud Tasks' ranges before anything is sent. ``sync_queues`` makes the
backend's queues match ``CLOUDTASK["QUEUES"]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from . import conf, queues
from .backends.loading import get_backend
from .backends.management import (
    VIEWS,
    Attempt,
    CallOptions,
    QueueInfo,
    QueueManager,
    QueueStats,
    TaskInfo,
    TaskList,
    TaskPage,
    View,
)
from .exceptions import InvalidQueueConfig, TaskNotFound
from .queues import QueueConfig
from .task_ids import check_task_id

__all__ = [
    "Attempt",
    "QueueChange",
    "QueueInfo",
    "QueueStats",
    "TaskInfo",
    "TaskList",
    "create_queue",
    "declared_queues",
    "delete_queue",
    "delete_task",
    "get_queue",
    "get_task",
    "list_queues",
    "list_tasks",
    "pause_queue",
    "purge_queue",
    "queue_stats",
    "resume_queue",
    "run_task",
    "sync_queues",
    "update_queue",
]

#: The longest window queue_stats() looks back over, in minutes.
WEEK = 7 * 24 * 60
#: The largest page Cloud Tasks' ListTasks returns.
MAX_PAGE_SIZE = 1000
#: The longest ``timeout=`` a management call takes, in seconds.
MAX_TIMEOUT = 600


def _call_options(timeout: Any, retry: Any, call: str) -> CallOptions:
    """Validate a call's ``timeout`` and ``retry`` and return them to wrap the call in."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise InvalidQueueConfig(
            f"{call}(): timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT}, "
            f"not {timeout!r}."
        )
    if retry is not None and not isinstance(retry, bool):
        raise InvalidQueueConfig(f"{call}(): retry must be True, False or None, not {retry!r}.")
    return CallOptions(None if timeout is None else float(timeout), retry)


def manager() -> QueueManager:
    """Return the configured backend's manager (``ManagementNotSupported`` if it has none)."""
    return get_backend().manager()


def _queue(name: Any, call: str) -> str:
    try:
        return conf.check_queue_name(name, f"{call}(): the queue name")
    except ValueError as exc:
        raise InvalidQueueConfig(str(exc)) from None


def _task(name: Any, call: str) -> str:
    try:
        return check_task_id(name)
    except (TypeError, ValueError) as exc:
        raise InvalidQueueConfig(f"{call}(): {exc}") from None


def _config(
    name: str, options: dict[str, Any], call: str, base: QueueConfig | None = None
) -> QueueConfig:
    try:
        return queues.build(name, options, where=f"{call}({name!r})", base=base)
    except (TypeError, ValueError) as exc:
        raise InvalidQueueConfig(str(exc)) from None


def _view(view: Any, call: str) -> View:
    if view not in VIEWS:
        raise InvalidQueueConfig(f"{call}(): view must be 'basic' or 'full', not {view!r}.")
    return view  # type: ignore[no-any-return]


def create_queue(
    name: str, *, timeout: float | None = None, retry: bool | None = None, **config: Any
) -> QueueInfo:
    """Create queue ``name`` with ``config`` (options not given get Cloud Tasks' defaults).

    Raises ``QueueAlreadyExists`` if it exists, ``QueueDeletedRecently`` if its name is
    still blocked after a deletion.
    """
    with _call_options(timeout, retry, "create_queue"):
        name = _queue(name, "create_queue")
        validated = _config(name, config, "create_queue")
        return manager().create_queue(name, validated)


def get_queue(name: str, *, timeout: float | None = None, retry: bool | None = None) -> QueueInfo:
    """Return queue ``name`` (``QueueNotFound`` if there is none)."""
    with _call_options(timeout, retry, "get_queue"):
        name = _queue(name, "get_queue")
        return manager().get_queue(name)


def update_queue(
    name: str, *, timeout: float | None = None, retry: bool | None = None, **config: Any
) -> QueueInfo:
    """Change the given options of queue ``name``; the others keep their current values."""
    with _call_options(timeout, retry, "update_queue"):
        name = _queue(name, "update_queue")
        if not config:
            raise InvalidQueueConfig(
                f"update_queue({name!r}): name at least one option to change; known options: "
                f"{', '.join(queues.OPTIONS)}."
            )
        # Validate the options on their own first, so a typo is not reported as a range error.
        _config(name, config, "update_queue")
        backend = manager()
        current = backend.get_queue(name)
        merged = _config(name, config, "update_queue", base=current.config)
        return backend.update_queue(name, merged, frozenset(config))


def pause_queue(name: str, *, timeout: float | None = None, retry: bool | None = None) -> QueueInfo:
    """Stop dispatching from queue ``name``; pushes are still accepted."""
    with _call_options(timeout, retry, "pause_queue"):
        name = _queue(name, "pause_queue")
        return manager().pause_queue(name)


def resume_queue(
    name: str, *, timeout: float | None = None, retry: bool | None = None
) -> QueueInfo:
    """Dispatch from queue ``name`` again."""
    with _call_options(timeout, retry, "resume_queue"):
        name = _queue(name, "resume_queue")
        return manager().resume_queue(name)


def purge_queue(name: str, *, timeout: float | None = None, retry: bool | None = None) -> QueueInfo:
    """Delete every task in queue ``name``. Their names stay taken for a while."""
    with _call_options(timeout, retry, "purge_queue"):
        name = _queue(name, "purge_queue")
        return manager().purge_queue(name)


def delete_queue(name: str, *, timeout: float | None = None, retry: bool | None = None) -> None:
    """Delete queue ``name`` and its tasks; Cloud Tasks blocks the name for up to 7 days."""
    with _call_options(timeout, retry, "delete_queue"):
        name = _queue(name, "delete_queue")
        manager().delete_queue(name)


def list_queues(*, timeout: float | None = None, retry: bool | None = None) -> list[QueueInfo]:
    """Return every queue of the backend (for Cloud Tasks: of the project and location)."""
    with _call_options(timeout, retry, "list_queues"):
        return sorted(manager().list_queues(), key=lambda info: info.name)


def queue_stats(minutes: float = 5) -> list[QueueStats]:
    """Return each queue's activity over the last ``minutes`` (the local queue only).

    Throughput, tasks finished and failing, and how long the oldest due task has waited:
    "is anything stuck?" in development. ``ManagementNotSupported`` on other backends.
    """
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= WEEK:
        raise ValueError(
            f"queue_stats(minutes=...) must be a number of minutes from 0 to {WEEK} (a week), "
            f"not {minutes!r}."
        )
    return manager().queue_stats(timedelta(minutes=minutes))


def list_tasks(
    queue: str,
    view: View = "basic",
    page_size: int = 100,
    *,
    page_token: str = "",
    timeout: float | None = None,
    retry: bool | None = None,
) -> TaskList:
    """Return the tasks waiting in ``queue``, fetched ``page_size`` at a time, lazily.

    ``view="full"`` includes each task's headers (signature and token redacted) and body.
    The result iterates over every task; its ``next_page()`` and ``next_page_token`` let a
    later call go on with ``page_token=`` (see :class:`TaskList`).
    """
    queue = _queue(queue, "list_tasks")
    view = _view(view, "list_tasks")
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidQueueConfig(f"list_tasks(): page_size must be an integer, not {page_size!r}.")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidQueueConfig(
            f"list_tasks(): page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}."
        )
    if not isinstance(page_token, str):
        raise InvalidQueueConfig(
            f"list_tasks(): page_token must be a string from next_page_token, not {page_token!r}."
        )
    backend = manager()
    options = _call_options(timeout, retry, "list_tasks")

    def fetch(token: str) -> TaskPage:
        with options:
            return backend.task_page(queue, view, page_size, token)

    return TaskList(fetch, page_token)


def get_task(
    queue: str,
    name: str,
    view: View = "basic",
    *,
    timeout: float | None = None,
    retry: bool | None = None,
) -> TaskInfo:
    """Return task ``name`` of ``queue`` (``TaskNotFound`` once it has finished)."""
    with _call_options(timeout, retry, "get_task"):
        queue, name = _queue(queue, "get_task"), _task(name, "get_task")
        return manager().get_task(queue, name, _view(view, "get_task"))


def delete_task(
    queue: str,
    name: str,
    not_found_ok: bool = False,
    *,
    timeout: float | None = None,
    retry: bool | None = None,
) -> bool:
    """Delete task ``name`` of ``queue``; return False if it was not there and that is OK."""
    with _call_options(timeout, retry, "delete_task"):
        queue, name = _queue(queue, "delete_task"), _task(name, "delete_task")
        try:
            manager().delete_task(queue, name)
        except TaskNotFound:
            if not not_found_ok:
                raise
            return False
        return True


def run_task(
    queue: str, name: str, *, timeout: float | None = None, retry: bool | None = None
) -> TaskInfo:
    """Dispatch task ``name`` of ``queue`` now, even if it is scheduled later or paused."""
    with _call_options(timeout, retry, "run_task"):
        queue, name = _queue(queue, "run_task"), _task(name, "run_task")
        return manager().run_task(queue, name)


# Declarative queues ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueueChange:
    """What ``sync_queues`` did (or, in a dry run, would do) to one queue."""

    name: str
    action: Literal["create", "update", "delete", "unchanged"]
    #: For ``update``: option -> (current value, declared value).
    changes: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)


def declared_queues() -> dict[str, QueueConfig]:
    """Return the queues the project declares, with their configuration.

    That is every queue in ``CLOUDTASK["QUEUES"]``, plus the default queue
    (``CLOUDTASK["QUEUE"]``) and the queues registered tasks push to; a queue not in
    ``CLOUDTASK["QUEUES"]`` is declared with Cloud Tasks' defaults.
    """
    from .registry import registry

    names: set[str | None] = {conf.get("QUEUE"), *queues.configured()}
    names.update(registry.get(task).queue for task in registry)
    return {name: queues.get(name) for name in sorted(n for n in names if n)}


def _same(current: Any, declared: Any) -> bool:
    if isinstance(declared, timedelta):
        # Cloud Tasks keeps durations to the microsecond here; compare at that precision.
        return bool(abs(current - declared) < timedelta(microseconds=1))
    if isinstance(declared, float):
        return bool(abs(current - declared) <= 1e-9 * max(1.0, abs(declared)))
    return bool(current == declared)


def drift(current: QueueConfig, declared: QueueConfig) -> dict[str, tuple[Any, Any]]:
    """Return the options whose current value differs from the declared one."""
    return {
        option: (getattr(current, option), getattr(declared, option))
        for option in queues.OPTIONS
        if not _same(getattr(current, option), getattr(declared, option))
    }


def sync_queues(*, dry_run: bool = False, prune: bool = False) -> list[QueueChange]:
    """Make the backend's queues match ``declared_queues()``; return what changed.

    Missing queues are created and drifted ones updated (only the options that differ).
    Queues the project does not declare are left alone unless ``prune`` is true, which
    deletes them. ``dry_run`` changes nothing and returns what would change.
    """
    backend = manager()
    declared = declared_queues()
    existing = {info.name: info for info in backend.list_queues()}
    plan: list[QueueChange] = []
    for name, config in declared.items():
        if name not in existing:
            plan.append(QueueChange(name, "create"))
            continue
        changes = drift(existing[name].config, config)
        plan.append(QueueChange(name, "update" if changes else "unchanged", changes))
    if prune:
        plan += [QueueChange(name, "delete") for name in sorted(set(existing) - set(declared))]
    if dry_run:
        return plan
    for change in plan:
        if change.action == "create":
            backend.create_queue(change.name, declared[change.name])
        elif change.action == "update":
            backend.update_queue(change.name, declared[change.name], frozenset(change.changes))
        elif change.action == "delete":
            backend.delete_queue(change.name)
    return plan
