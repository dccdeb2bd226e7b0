"""cloudtask as a backend of Django's task framework (``django.tasks``; ``django_tasks`` on 5.2).

::

    TASKS = {
        "default": {
            "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
            "QUEUES": ["default", "emails"],  # Cloud Tasks queue ids
            "OPTIONS": {},
        }
    }

A ``@django.tasks.task`` function is registered in cloudtask's registry under its dotted path
when it is decorated, and ``enqueue()`` is an ordinary push through cloudtask's one push path:
the configured ``CLOUDTASK["BACKEND"]`` carries it (Cloud Tasks, the local queue, capture or
ImmediateBackend), signed like any task, and the endpoint runs it from the registry. The result
id is cloudtask's call id; results are kept in cloudtask's ``TaskResult`` table.

This module is not imported by ``import cloudtask``: Django 6 (``django.tasks``) or the
``django-tasks`` backport (``pip install "django-cloudtask[django-tasks]"``) is needed only here.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from traceback import format_exception
from typing import Any

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.dispatch import receiver
from django.utils import timezone

from . import conf, envelope, failures, options
from .exceptions import ConfigurationError, Reject
from .message import new_call_id
from .push import push
from .registry import registry
from .request import CloudTaskRequest
from .task import Task as CloudTask


def _framework() -> tuple[str, Callable[[str, str], Any]]:
    """Return Django's task framework package and a loader of its names.

    ``django.tasks`` on Django 6, else the ``django_tasks`` backport. Names are loaded as
    ``Any``: the two packages type the same API apart.
    """
    for package in ("django.tasks", "django_tasks"):
        try:
            importlib.import_module(package)
        except ImportError:
            continue
        return package, partial(_name_in, package)
    raise ImproperlyConfigured(
        "cloudtask.django_tasks needs Django's task framework: Django 6.0 or later, or on "
        'Django 5.2 the backport: pip install "django-cloudtask[django-tasks]".'
    )


def _name_in(package: str, module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"{package}{module}"), name)


FRAMEWORK, _load = _framework()
BaseTaskBackend: Any = _load(".backends.base", "BaseTaskBackend")
DjangoTask: Any = _load(".base", "Task")
DEFAULT_TASK_PRIORITY: int = _load(".base", "DEFAULT_TASK_PRIORITY")
TaskContext: Any = _load(".base", "TaskContext")
TaskError: Any = _load(".base", "TaskError")
TaskResult: Any = _load(".base", "TaskResult")
TaskResultStatus: Any = _load(".base", "TaskResultStatus")
task: Any = _load(".base", "task")
InvalidTask: Any = (
    _load(".exceptions", "InvalidTask")
    if FRAMEWORK == "django.tasks"
    else _load(".exceptions", "InvalidTaskError")
)
TaskResultDoesNotExist: Any = _load(".exceptions", "TaskResultDoesNotExist")
task_enqueued: Any = _load(".signals", "task_enqueued")
task_finished: Any = _load(".signals", "task_finished")
task_started: Any = _load(".signals", "task_started")
#: Django's JSON normalisation of arguments and return values.
normalize_json: Callable[[Any], Any] = (
    importlib.import_module(
        "django.utils.json" if FRAMEWORK == "django.tasks" else "django_tasks.utils"
    )
).normalize_json

__all__ = [
    "CloudTaskBackend",
    "CloudTaskDjangoTask",
    "TaskContext",
    "TaskResult",
    "TaskResultStatus",
    "task",
]

#: Every key of a CloudTaskBackend's OPTIONS, with its default.
OPTION_DEFAULTS: dict[str, Any] = {
    # Django queue name -> Cloud Tasks queue id, for names that are not valid queue ids.
    "QUEUE_MAP": {},
    # Keep each call's result for get_result() (cloudtask's TaskResult table).
    "RESULTS": True,
    # Push when the surrounding transaction commits (nothing on rollback).
    "ENQUEUE_ON_COMMIT": False,
}
#: Cloud Tasks' own status words of a stored result, as Django's.
STATUSES = {
    "pending": TaskResultStatus.READY,
    "retrying": TaskResultStatus.READY,
    "started": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    # Django has no word for it: a call that expired never ran, and never will.
    "expired": TaskResultStatus.FAILED,
}
#: This process, as ``TaskResult.worker_ids`` names the workers that ran an attempt.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"[:64]
#: How many validated task objects a backend remembers.
VALIDATED_KEPT = 1024
#: The cloudtask options a ``@task(...)`` of Django 6.1 passes through ``task_class``.
EXTRA_OPTIONS = ("timeout", "named", "url", "headers", "max_retries")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CloudTaskDjangoTask(DjangoTask):  # type: ignore[misc]
    """Django's ``Task`` with cloudtask's push options (``@task(timeout=30)`` on Django 6.1).

    On Django 6.0 and the backport, ``@task`` passes no extra options: the defaults apply.
    """

    timeout: float | timedelta | None = None
    named: bool = False
    url: str | None = None
    headers: Mapping[str, str] | None = None
    max_retries: int | None = None


class Adapter(CloudTask[Any, Any]):
    """The registered cloudtask task that runs a Django task; it stores its own results."""

    stores_own_results = True


class CloudTaskBackend(BaseTaskBackend):  # type: ignore[misc]
    """Runs Django tasks through cloudtask: signed pushes to Cloud Tasks, the local queue, ..."""

    task_class = CloudTaskDjangoTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False  # Cloud Tasks has no priorities

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Building the backend does no I/O: options are read here, reported by check().
        given = self.options if isinstance(self.options, Mapping) else {}
        self.settings = {**OPTION_DEFAULTS, **given}
        # Without kept results there is nothing to get: get_result() says so, as Django's
        # backends without results do.
        self.supports_get_result = self.settings["RESULTS"] is True

    # Checks --------------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        """Report bad OPTIONS and queue names (``cloudtask.E040``-``E044``)."""
        messages: list[CheckMessage] = list(super().check(**kwargs))
        where = f"TASKS[{self.alias!r}]"
        try:
            conf.require_installed()
        except ImproperlyConfigured as exc:
            messages.append(Error(f"{where}: {exc}", id="cloudtask.E044"))
        if not isinstance(self.options, Mapping):
            return [*messages, Error(f"{where}['OPTIONS'] must be a dict.", id="cloudtask.E040")]
        for key in self.options:
            if key not in OPTION_DEFAULTS:
                messages.append(
                    Error(
                        f"{where}['OPTIONS'] has an unknown key {key!r}.",
                        hint=f"Known keys: {', '.join(OPTION_DEFAULTS)}.",
                        id="cloudtask.E040",
                    )
                )
        queue_map = self.settings["QUEUE_MAP"]
        if not isinstance(queue_map, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in queue_map.items()
        ):
            messages.append(
                Error(
                    f"{where}['OPTIONS']['QUEUE_MAP'] must map Django queue names to Cloud "
                    "Tasks queue ids (strings).",
                    id="cloudtask.E041",
                )
            )
            return messages
        for key in ("RESULTS", "ENQUEUE_ON_COMMIT"):
            if not isinstance(self.settings[key], bool):
                messages.append(
                    Error(
                        f"{where}['OPTIONS'][{key!r}] must be True or False, not "
                        f"{self.settings[key]!r}.",
                        id="cloudtask.E042",
                    )
                )
        for name in sorted(self.queues):
            try:
                self.cloud_queue(name)
            except InvalidTask as exc:
                messages.append(Error(f"{where}['QUEUES']: {exc}", id="cloudtask.E043"))
        return messages

    def cloud_queue(self, queue_name: str) -> str:
        """Return the Cloud Tasks queue id of a Django queue name (InvalidTask if invalid)."""
        queue_map = self.settings["QUEUE_MAP"]
        queue = (
            queue_map.get(queue_name, queue_name) if isinstance(queue_map, Mapping) else queue_name
        )
        try:
            return conf.check_queue_name(queue, f"queue {queue_name!r}")
        except ValueError as exc:
            raise InvalidTask(
                f"{exc} Rename the queue, or map it to a queue id with "
                "OPTIONS['QUEUE_MAP'] = {name: 'queue-id'}."
            ) from None

    # Defining ------------------------------------------------------------------------------

    def validate_task(self, task: Any) -> None:
        """Django's checks, then cloudtask's: a valid queue id, options, a registered runner.

        ``run_after`` may be a ``timedelta``, counted from each enqueue. A task object this
        backend validated already (tasks are immutable) is not checked again.
        """
        self._pusher(task)

    def _pusher(self, task: Any) -> Adapter:
        """Validate ``task`` once, and return the registered runner its calls are pushed as."""
        validated: dict[int, tuple[Any, Adapter]] = self.__dict__.setdefault("_validated", {})
        known = validated.get(id(task))
        # The object itself (ids are reused), and still registered: a test's
        # registry.isolated() block may have taken its runner out since.
        if known is not None and known[0] is task and known[1].name in registry:
            return known[1]
        self._refuse_what_cloud_tasks_lacks(task)
        if isinstance(task.run_after, timedelta):
            _check_delay(task.run_after)
            super().validate_task(dataclasses.replace(task, run_after=None))
        else:
            super().validate_task(task)
        pusher = self.variant(task)
        if len(validated) >= VALIDATED_KEPT:
            validated.clear()  # using() makes new task objects: keep the memory bounded
        validated[id(task)] = (task, pusher)
        return pusher

    def _refuse_what_cloud_tasks_lacks(self, task: Any) -> None:
        """Django's refusals of a priority and of an unlisted queue, each saying how to fix it."""
        if task.priority != DEFAULT_TASK_PRIORITY:
            raise InvalidTask(
                "Backend does not support setting priority of tasks. Cloud Tasks has no "
                "priorities: leave priority at 0, and give urgent tasks a queue of their own."
            )
        if self.queues and task.queue_name not in self.queues:
            listed = ", ".join(repr(name) for name in sorted(self.queues))
            raise InvalidTask(
                f"Queue '{task.queue_name}' is not valid for backend. TASKS[{self.alias!r}]"
                f"['QUEUES'] lists {listed}: add the queue there, or use one of those."
            )

    def adapter(self, task: Any) -> Adapter:
        """Return the registered cloudtask task that runs ``task``, registering it once."""
        name = task.module_path
        if name in registry:
            found = registry.get(name)
            if isinstance(found, Adapter):
                return found
        runner = _runner(self, task)
        extras = {option: getattr(task, option, None) for option in EXTRA_OPTIONS}
        try:
            adapter = Adapter(
                func=runner,
                name=name,
                queue=self.cloud_queue(task.queue_name),
                url=extras["url"],
                named=bool(extras["named"]),
                timeout=extras["timeout"],
                headers=extras["headers"] or {},
                max_retries=extras["max_retries"],
            )
        except (TypeError, ValueError) as exc:
            raise InvalidTask(str(exc)) from None
        registry.register(adapter)
        _tasks[name] = task
        return adapter

    def variant(self, task: Any) -> Adapter:
        """Return the registered runner of ``task`` set for its queue (copies are kept)."""
        adapter = self.adapter(task)
        queue = self.cloud_queue(task.queue_name)
        if adapter.queue == queue:
            return adapter
        variants: dict[tuple[str, str], Any] = self.__dict__.setdefault("_variants", {})
        key = (adapter.name, queue)
        if key not in variants:
            variants[key] = adapter.using(queue=queue)
        return variants[key]  # type: ignore[no-any-return]

    # Enqueueing ----------------------------------------------------------------------------

    def enqueue(self, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> TaskResult:
        """Push one call of ``task``; return its result (READY, or final on ImmediateBackend)."""
        conf.require_installed()  # before the models: say "add cloudtask to INSTALLED_APPS"
        pusher = self._pusher(task)
        eta = _schedule_time(task.run_after)
        try:
            # Django's JSON normalisation (in TaskResult), then cloudtask's binding, JSON and
            # size checks (making the call), before anything is pushed.
            result = _new_result(
                task, new_call_id(), self.alias, list(args), dict(kwargs), timezone.now()
            )
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{task.module_path}(): arguments are not JSON ({exc}).") from None
        call = pusher(*result.args, **result.kwargs)
        if self.settings["RESULTS"] is True:
            try:
                _store(result, queue=call.task.queue or "", pending=True)
            except BaseException as exc:
                call.consume()  # not pushed, and the error says why: no second warning
                if isinstance(exc, DatabaseError):
                    _require_results_table()  # before migrate: say so, not "no such table"
                raise

        def send() -> None:
            # An in-process transport (ImmediateBackend) runs the call during the push, on
            # this very result, and says it was enqueued just before it starts.
            pending = _Pending(result)
            _running[result.id] = pending
            try:
                handle = push(call, eta=eta, call_id=result.id)
            except Exception:
                if result.errors and result.is_finished:
                    return  # it ran in-process and failed: the result says how, as Django's
                raise
            finally:
                _running.pop(result.id, None)
            if self.settings["RESULTS"] is True:
                _stored(result.id).update(task_name=handle.name)
            pending.announce(type(self))

        if self.settings["ENQUEUE_ON_COMMIT"] is True:
            call.consume()
            transaction.on_commit(send)
        else:
            send()
        return result

    # Results -------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        """Return the stored result of call ``result_id`` (TaskResultDoesNotExist if none)."""
        from .models import TaskResult as Row

        if not self.supports_get_result:
            return super().get_result(result_id)
        if not isinstance(result_id, str) or not envelope.is_call_id(result_id):
            raise TaskResultDoesNotExist(result_id)
        try:
            row = Row.objects.get(call_id=result_id, backend=self.alias)
        except Row.DoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None
        return _from_row(row)


# Running -------------------------------------------------------------------------------------


class _Pending:
    """A result being pushed by enqueue(), until ``task_enqueued`` is sent for it (once)."""

    __slots__ = ("announced", "result")

    def __init__(self, result: Any) -> None:
        self.result = result
        self.announced = False

    def announce(self, sender: type) -> None:
        if not self.announced:
            self.announced = True
            task_enqueued.send(sender, task_result=self.result)


#: Results of calls being pushed by enqueue(), by id: an in-process transport
#: (ImmediateBackend) runs the call during the push, on this very object, as Django's does.
_running: dict[str, _Pending] = {}


#: The backend configured under each alias, as ``task.get_backend()`` gives it, for deliveries.
_configured: dict[str, Any] = {}


@receiver(setting_changed)
def _forget_backends(*, setting: str, **kwargs: Any) -> None:
    if setting == "TASKS":  # Django builds its backends again too
        _configured.clear()


def _runner(backend: CloudTaskBackend, task: Any) -> Callable[..., Any]:
    """Build the function the registry runs for ``task``: its signature, minus ``context``."""

    def run(request: CloudTaskRequest, /, *args: Any, **kwargs: Any) -> Any:
        # The backend configured now under the task's alias (settings may have changed since
        # the task was decorated); the one that registered it if that is another kind.
        current = _configured.get(task.backend)
        if current is None:
            current = _configured[task.backend] = task.get_backend()
        runner = current if isinstance(current, CloudTaskBackend) else backend
        return _run(runner, task, request, list(args), kwargs)

    signature = inspect.signature(task.func)
    parameters = list(signature.parameters.values())[1 if task.takes_context else 0 :]
    first = inspect.Parameter("_request", inspect.Parameter.POSITIONAL_ONLY)
    run.__signature__ = signature.replace(parameters=[first, *parameters])  # type: ignore[attr-defined]
    run.__module__, run.__qualname__ = task.func.__module__, task.func.__qualname__
    run.__name__ = task.func.__name__
    return run


def _run(
    backend: CloudTaskBackend,
    task: Any,
    request: CloudTaskRequest,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    keep = backend.settings["RESULTS"] is True
    pending = _running.get(request.call_id)
    if pending is not None:
        pending.announce(type(backend))
        result = pending.result
    else:
        result = _result_for(backend, task, request, args, kwargs)
    now = timezone.now()
    # One worker id per delivery: Django's attempt count is Cloud Tasks' delivery count.
    earlier = result.worker_ids[: request.retry_count]
    worker_ids = [*earlier, *[""] * (request.retry_count - len(earlier)), WORKER_ID]
    put = object.__setattr__  # the result is frozen, as Django builds it
    put(result, "status", TaskResultStatus.RUNNING)
    put(result, "started_at", result.started_at or now)
    put(result, "last_attempted_at", now)
    put(result, "worker_ids", worker_ids)
    if keep:
        _store(result)
    task_started.send(type(backend), task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # Final unless Cloud Tasks will retry: cloudtask's verdict on the attempt, which the
        # endpoint reaches too; a SystemExit, or an in-process run, which nothing retries.
        final = (
            not isinstance(exc, Exception)
            or request.http_request is None
            or failures.judge(registry.get(task.module_path), request, exc).action == "failed"
        )
        _failed(backend, result, exc, final)
        if isinstance(exc, Exception):
            raise  # the endpoint answers: a retry, or the end of the call
        raise Reject(f"{type(exc).__name__}: {exc}") from exc
    try:
        value = normalize_json(value)
    except (TypeError, ValueError) as exc:
        # A return value that is not JSON fails on every attempt: it is final.
        _failed(backend, result, exc, final=True)
        raise Reject(f"{task.module_path} returned a value that is not JSON: {exc}") from exc
    put(result, "status", TaskResultStatus.SUCCESSFUL)
    put(result, "finished_at", timezone.now())
    put(result, "_return_value", value)
    if keep:
        _store(result)
    task_finished.send(type(backend), task_result=result)
    return value


def _failed(backend: CloudTaskBackend, result: Any, exc: BaseException, final: bool) -> None:
    """Record a failed attempt and send ``task_finished`` (call inside the handler)."""
    error = TaskError(
        exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
        traceback="".join(format_exception(exc)),
    )
    _set(
        result,
        status=TaskResultStatus.FAILED if final else TaskResultStatus.READY,
        finished_at=timezone.now() if final else None,
        errors=[*result.errors, error],
    )
    if backend.settings["RESULTS"] is True:
        _store(result)
    # Sent while the exception is handled, so Django's log receiver logs the traceback.
    task_finished.send(type(backend), task_result=result)


def _result_for(
    backend: CloudTaskBackend,
    task: Any,
    request: CloudTaskRequest,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    """Return the stored result of the call being delivered, or a new one if none is kept."""
    if backend.settings["RESULTS"] is True:
        try:
            return backend.get_result(request.call_id)
        except TaskResultDoesNotExist:
            pass  # pushed before results were kept, or by another sender
    return _new_result(task, request.call_id, backend.alias, args, kwargs, None)


def _new_result(
    task: Any,
    result_id: str,
    alias: str,
    args: list[Any],
    kwargs: dict[str, Any],
    enqueued_at: datetime | None,
) -> Any:
    """Return a READY result not yet attempted (Django normalises the arguments)."""
    return TaskResult(
        task=task,
        id=result_id,
        status=TaskResultStatus.READY,
        enqueued_at=enqueued_at,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[],
    )


def _set(result: Any, **fields: Any) -> None:
    for name, value in fields.items():
        object.__setattr__(result, name, value)


# Storage -------------------------------------------------------------------------------------

_STATUS_WORDS = {
    TaskResultStatus.READY: "pending",
    TaskResultStatus.RUNNING: "started",
    TaskResultStatus.SUCCESSFUL: "succeeded",
    TaskResultStatus.FAILED: "failed",
}


def _stored(result_id: str) -> Any:
    from .models import TaskResult as Row

    return Row.objects.filter(call_id=result_id)


def _store(result: Any, *, queue: str | None = None, pending: bool = False) -> None:
    """Write ``result`` to its row (creating it), in cloudtask's status words."""
    from .models import TaskResult as Row

    status = _STATUS_WORDS[result.status]
    if status == "pending" and result.errors:
        status = "retrying"
    fields: dict[str, Any] = {
        "task": result.task.module_path,
        "backend": result.backend,
        "status": status,
        "attempts": len(result.worker_ids),
        "args": result.args,
        "kwargs": result.kwargs,
        "options": _task_options(result.task),
        "result": result._return_value,
        "errors": [
            {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
            for e in result.errors
        ],
        "worker_ids": list(result.worker_ids),
        "pushed_at": result.enqueued_at,
        "started_at": result.started_at,
        "last_attempted_at": result.last_attempted_at,
        "finished_at": result.finished_at,
    }
    if result.errors:
        last = result.errors[-1]
        fields["error_type"] = last.exception_class_path
        fields["traceback"] = last.traceback[-failures.TRACEBACK_LIMIT :]
        fields["error_message"] = last.traceback.rstrip().rsplit("\n", 1)[-1][:1000]
    if queue is not None:
        fields["queue"] = queue
    if pending:
        Row.objects.create(call_id=result.id, **fields)
        return
    if not Row.objects.filter(call_id=result.id).update(**fields):
        Row.objects.create(call_id=result.id, **fields)


def _require_results_table() -> None:
    """Raise ConfigurationError when the results table is not in the database yet."""
    from .models import TaskResult as Row

    try:
        tables = connection.introspection.table_names()
    except DatabaseError:
        return  # the database cannot tell (an aborted transaction): the caller's error stands
    if Row._meta.db_table not in tables:
        raise ConfigurationError(
            f"The results table ({Row._meta.db_table}) is not in the database yet: run "
            "python manage.py migrate."
        )


def _task_options(task: Any) -> dict[str, Any]:
    run_after = task.run_after
    if isinstance(run_after, timedelta):
        after: Any = {"delay": run_after.total_seconds()}
    else:
        after = run_after.isoformat() if run_after is not None else None
    return {"queue_name": task.queue_name, "priority": task.priority, "run_after": after}


def _from_row(row: Any) -> Any:
    """Rebuild the TaskResult ``enqueue`` returned from its stored row."""
    try:
        adapter = registry.get(row.task)
    except Exception:
        raise TaskResultDoesNotExist(row.call_id) from None
    task = _tasks.get(adapter.name)
    if task is None:
        raise TaskResultDoesNotExist(row.call_id)
    stored = row.options or {}
    changes: dict[str, Any] = {}
    if stored.get("queue_name", task.queue_name) != task.queue_name:
        changes["queue_name"] = stored["queue_name"]
    run_after = stored.get("run_after")
    if isinstance(run_after, dict):
        changes["run_after"] = timedelta(seconds=run_after["delay"])
    elif isinstance(run_after, str):
        changes["run_after"] = datetime.fromisoformat(run_after)
    if changes:
        task = dataclasses.replace(task, **changes)
    result = TaskResult(
        task=task,
        id=row.call_id,
        status=STATUSES[row.status],
        enqueued_at=row.pushed_at,
        started_at=row.started_at,
        last_attempted_at=row.last_attempted_at,
        finished_at=row.finished_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend,
        errors=[TaskError(**error) for error in row.errors or []],
        worker_ids=list(row.worker_ids or []),
    )
    if row.status == "succeeded":
        object.__setattr__(result, "_return_value", row.result)
    return result


#: The Django task behind each registered adapter, by registry name.
_tasks: dict[str, Any] = {}


# Scheduling ----------------------------------------------------------------------------------


def _check_delay(delay: timedelta) -> None:
    if delay < timedelta(0):
        raise InvalidTask(f"run_after must not be a negative timedelta, not {delay}.")
    if delay > options.MAX_SCHEDULE:
        raise InvalidTask(
            f"run_after={delay} is more than 30 days ahead, which Cloud Tasks does not accept."
        )


def _schedule_time(run_after: datetime | timedelta | None) -> datetime | None:
    """Return when to run: a timedelta counts from now; a time in the past means now."""
    if run_after is None:
        return None
    now = timezone.now()
    at = now + run_after if isinstance(run_after, timedelta) else run_after
    if at <= now:
        return None
    try:
        return options.schedule_time(at=at, countdown=None)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None
