"""@task, the immutable task definition, the call object and the handle a push returns."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from . import conf, envelope, naming, signals
from .binding import ArgumentChecker
from .failures import check_retry_options
from .naming import make_task_id
from .registry import registry
from .request import CloudTaskRequest
from .signing import SIGNATURE_HEADER
from .targets import check_target

if TYPE_CHECKING:
    from .backends.management import TaskInfo, View
    from .models import TaskResult

P = ParamSpec("P")
R = TypeVar("R")

#: Cloud Tasks refuses a schedule_time further ahead than this.
MAX_SCHEDULE = timedelta(days=30)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by cloudtask, or replaced or dropped by Cloud Tasks (its HttpRequest.headers docs):
# a custom value would silently not arrive. Authorization carries the OIDC/OAuth token.
_RESERVED_HEADERS = frozenset(
    {SIGNATURE_HEADER.lower(), "content-type", "content-length", "host", "user-agent"}
)
_RESERVED_PREFIXES = ("x-cloudtasks-", "x-google-", "x-appengine-")
#: Options the endpoint takes from the registered task, whatever the pushed copy said.
_RUN_TIME_OPTIONS = ("func", "name", "max_retries", "retry_for", "on_failure")
#: Options that decide where and how a call is delivered; a ``request.retry()`` copy keeps them.
ROUTE_OPTIONS = ("queue", "timeout", "method", "auth", "oauth_scope", "app_engine", "relative_uri")


@dataclass(frozen=True)
class TaskHandle:
    """What a push returns: where the task went and under which name."""

    name: str
    queue: str
    eta: datetime | None
    task: str = ""
    call_id: str = ""

    def result(self) -> TaskResult:
        """Return the stored result of this call (needs ``CLOUDTASK["RESULTS"] = True``)."""
        from .results import get_result

        return get_result(self.call_id)

    def get(self, view: View = "basic") -> TaskInfo:
        """Return the task as its queue holds it now (``TaskNotFound`` once it finished)."""
        from .control import get_task

        return get_task(self.queue, self.name, view)

    def delete(self, not_found_ok: bool = False) -> bool:
        """Delete the task from its queue (see ``cloudtask.delete_task``)."""
        from .control import delete_task

        return delete_task(self.queue, self.name, not_found_ok=not_found_ok)

    def run(self) -> TaskInfo:
        """Dispatch the task now, whatever its schedule (see ``cloudtask.run_task``)."""
        from .control import run_task

        return run_task(self.queue, self.name)


@dataclass(frozen=True, eq=False)
class Task(Generic[P, R]):
    """A registered task: the function and its options. Immutable; use :meth:`using`."""

    func: Callable[Concatenate[CloudTaskRequest, P], R]
    name: str
    queue: str | None = None
    url: str | None = None
    named: bool | Literal["args"] = False
    timeout: timedelta | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    max_retries: int | None = None
    retry_for: tuple[type[BaseException], ...] | None = None
    on_failure: Task[Any, Any] | str | None = None
    method: str = "POST"
    auth: Literal["oidc", "oauth"] | None = "oidc"
    oauth_scope: str | None = None
    app_engine: Mapping[str, str] | None = None
    relative_uri: str | None = None

    def __post_init__(self) -> None:
        _check_options(self)
        signature = inspect.signature(self.func)
        params = list(signature.parameters.values())
        # The first parameter receives the CloudTaskRequest; callers pass the rest.
        object.__setattr__(
            self, "_check_arguments", ArgumentChecker(signature.replace(parameters=params[1:]))
        )
        # Decided once: inspect's check costs more than the rest of a small task's run.
        object.__setattr__(self, "_is_coroutine", inspect.iscoroutinefunction(self.func))

    @property
    def path(self) -> str:
        """The dotted path of the function, for messages."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskCall[R]:
        """Bind the arguments and return a call ready to push or run."""
        try:
            self._check_arguments(args, kwargs)  # type: ignore[attr-defined]
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        arguments_json = envelope.check_arguments(self.name, args, kwargs)
        return TaskCall(self, arguments_json)

    def using(self, **options: Any) -> Task[P, R]:
        """Return a copy of this task with some options changed (it is not re-registered).

        Options the endpoint reads from the registered task (``max_retries``, ``retry_for``,
        ``on_failure``, ``name``, ``func``) are refused: a copy's values would be ignored.
        """
        refused = [option for option in _RUN_TIME_OPTIONS if option in options]
        if refused:
            raise TypeError(
                f"{self.name}.using() cannot change {', '.join(refused)}: the endpoint runs the "
                "registered task, so the copy's value would be ignored. Set it in @task(...), "
                "or register another task."
            )
        if "timeout" in options and options["timeout"] is not None:
            options["timeout"] = conf.check_timeout(options["timeout"], "timeout")
        return dataclasses.replace(self, **options)

    def check_received(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError if received arguments no longer bind to the function."""
        self._check_arguments(args, kwargs)  # type: ignore[attr-defined]

    def run(self, request: CloudTaskRequest, args: list[Any], kwargs: dict[str, Any]) -> R:
        """Call the function; coroutine functions are run to completion."""
        if self._is_coroutine:  # type: ignore[attr-defined]
            return async_to_sync(self.func)(request, *args, **kwargs)  # type: ignore[arg-type]
        return self.func(request, *args, **kwargs)

    def task_id(self) -> str:
        """Return the deterministic Cloud Tasks id used by ``named=True``."""
        return make_task_id(self.name)


class TaskCall(Generic[R]):
    """One call of a task with bound, JSON-checked arguments."""

    __slots__ = ("_arguments_json", "_headers", "_url", "task")

    def __init__(self, task: Task[Any, R], arguments_json: str) -> None:
        self.task = task
        self._arguments_json = arguments_json
        self._url = task.url
        self._headers: Mapping[str, str] = task.headers

    def __repr__(self) -> str:
        args, kwargs = self.arguments
        shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"<TaskCall {self.task.name}({', '.join(shown)})>"

    @property
    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The positional and keyword arguments, as the function will receive them."""
        args, kwargs = json.loads(self._arguments_json)
        return args, kwargs

    @property
    def url(self) -> str | None:
        """The absolute URL this call is delivered to (None: the task's or the setting's)."""
        return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        self._url = None if value is None else conf.check_url(value, "TaskCall.url")

    @property
    def headers(self) -> Mapping[str, str]:
        """The custom HTTP headers sent with this call (the task's unless set)."""
        return self._headers

    @headers.setter
    def headers(self, value: Mapping[str, str]) -> None:
        self._headers = check_headers(value, "TaskCall.headers")

    def delay(self, *, name: str | None = None, unique: bool = False) -> TaskHandle:
        """Push the call to its queue now; ``unique`` appends a random suffix to the name."""
        return self._push(eta=None, name=name, unique=unique)

    @overload
    def push(
        self, *, name: str | None = ..., unique: bool = ..., on_commit: Literal[False] = ...
    ) -> TaskHandle: ...

    @overload
    def push(
        self, *, name: str | None = ..., unique: bool = ..., on_commit: Literal[True]
    ) -> None: ...

    def push(
        self, *, name: str | None = None, unique: bool = False, on_commit: bool = False
    ) -> TaskHandle | None:
        """Push the call now (alias of :meth:`delay`), or when the transaction commits."""
        if on_commit:
            self.delay_on_commit(name=name, unique=unique)
            return None
        return self._push(eta=None, name=name, unique=unique)

    def delay_on_commit(
        self, *, name: str | None = None, unique: bool = False, using: str | None = None
    ) -> None:
        """Push the call once the current transaction commits; nothing is pushed on rollback.

        Outside a transaction it is pushed at once. The name is checked now, not at commit.
        """
        task_id = naming.task_id_for(self, name, unique)
        transaction.on_commit(partial(self._push_named, None, task_id), using=using)

    def schedule(
        self,
        *,
        at: datetime | None = None,
        countdown: float | timedelta | None = None,
        name: str | None = None,
        unique: bool = False,
    ) -> TaskHandle:
        """Push the call to run at ``at`` or ``countdown`` (seconds or timedelta) from now."""
        eta = schedule_time(at=at, countdown=countdown)
        return self._push(eta=eta, name=name, unique=unique)

    def execute(self) -> R:
        """Run the function now, in this process, as a task would run."""
        args, kwargs = self.arguments
        return self.task.run(CloudTaskRequest(is_last_attempt=True), args, kwargs)

    def __call__(self) -> R:
        """Run the function now, in this process (same as :meth:`execute`)."""
        return self.execute()

    def _push(self, *, eta: datetime | None, name: str | None, unique: bool) -> TaskHandle:
        return self._push_named(eta, naming.task_id_for(self, name, unique))

    def _push_named(self, eta: datetime | None, name: str | None) -> TaskHandle:
        from .backends import get_backend

        backend = get_backend()
        message = backend.build_message(self, eta=eta, name=name)
        started = time.perf_counter()
        handle = backend.push(message)
        signals.send(
            signals.task_pushed,
            self.task,
            call_id=message.call_id,
            handle=handle,
            call=self,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        return handle

    def envelope_body(self, call_id: str, extra: Mapping[str, Any] | None = None) -> bytes:
        """Return the JSON body carrying this call."""
        route = self.route()
        if route:
            extra = {**(extra or {}), "route": route}
        return envelope.encode(self.task.name, call_id, self._arguments_json, extra)

    def route(self) -> dict[str, Any]:
        """Return the delivery options in which this call differs from its registered task.

        The signed body carries them so that a ``request.retry()`` copy goes where this call
        went. Header values can be secrets, so only their names travel: the copy takes the
        values from the delivery it retries.
        """
        task = self.task
        registered = registry.get(task.name) if task.name in registry else task
        if registered is task and self._url == task.url and self._headers is task.headers:
            return {}  # the usual case: the body stays as it always was
        route: dict[str, Any] = {}
        for option in ROUTE_OPTIONS:
            value = getattr(task, option)
            if value != getattr(registered, option):
                route[option] = _json_option(value)
        if self._url != registered.url:
            route["url"] = self._url
        if dict(self._headers) != dict(registered.headers):
            route["headers"] = sorted(self._headers)
        return route


def _json_option(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return dict(value) if isinstance(value, Mapping) else value


def new_call_id() -> str:
    """Return a fresh id for one call (it stays the same across retries)."""
    return uuid.uuid4().hex


def schedule_time(*, at: datetime | None, countdown: float | timedelta | None) -> datetime:
    """Validate ``at`` / ``countdown`` and return the aware UTC time to run at."""
    now = timezone.now() if django_settings.USE_TZ else datetime.now(dt_timezone.utc)
    if (at is None) == (countdown is None):
        raise TypeError("schedule() takes exactly one of at= (a datetime) or countdown=.")
    if countdown is not None:
        delta = conf.to_timedelta(countdown, "countdown")
        if delta < timedelta(0):
            raise ValueError(f"countdown must not be negative, got {delta.total_seconds():g}s.")
        eta = now + delta
    else:
        eta = _aware(at)
    eta = eta.astimezone(dt_timezone.utc)
    if eta - now > MAX_SCHEDULE:
        raise ValueError(
            f"Cannot schedule a task for {eta.isoformat()}: Cloud Tasks accepts at most "
            "30 days ahead. Store the date and push the task later (e.g. from a daily task)."
        )
    return eta


def _aware(at: Any) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"at= must be a datetime.datetime, not {type(at).__name__}.")
    if timezone.is_aware(at):
        return at
    if django_settings.USE_TZ:
        raise ValueError(
            f"at={at.isoformat()} is a naive datetime while USE_TZ is True; pass an aware "
            "one, e.g. timezone.now() + timedelta(hours=1)."
        )
    return timezone.make_aware(at, timezone.get_default_timezone())


def _check_options(task: Task[Any, Any]) -> None:
    if task.queue is not None:
        conf.check_queue_name(task.queue, f"@task(queue=...) of {task.name}")
    if task.url is not None:
        conf.check_url(task.url, f"@task(url=...) of {task.name}")
    if not (isinstance(task.named, bool) or task.named == "args"):
        raise TypeError(
            f"@task(named=...) of {task.name} must be True or False, or 'args' for an id "
            "derived from the arguments."
        )
    if task.timeout is not None:
        object.__setattr__(
            task, "timeout", conf.check_timeout(task.timeout, f"@task(timeout=...) of {task.name}")
        )
    object.__setattr__(
        task, "headers", check_headers(task.headers, f"@task(headers=...) of {task.name}")
    )
    check_retry_options(task)
    check_target(task)


def check_headers(headers: Any, what: str) -> dict[str, str]:
    """Validate custom HTTP headers; the signature and transport headers cannot be set."""
    if not isinstance(headers, Mapping):
        raise TypeError(f"{what} must be a dict of header names to values.")
    for key, value in headers.items():
        if not isinstance(key, str) or not _HEADER_NAME_RE.match(key):
            raise ValueError(f"{what}: {key!r} is not a valid HTTP header name.")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValueError(f"{what}: the value of {key!r} must be a one-line string.")
        lowered = key.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
            raise ValueError(
                f"{what}: {key!r} is set by cloudtask or Cloud Tasks and cannot be overridden."
            )
        if lowered == "authorization":
            raise ValueError(
                f"{what}: 'Authorization' carries the token Cloud Tasks adds; choose it with "
                "@task(auth='oidc' | 'oauth' | None) instead of setting the header."
            )
    return dict(headers)


def _check_function(func: Any) -> None:
    if not callable(func):
        raise _definition_error(f"@task decorates functions, not {type(func).__name__} objects.")
    if not inspect.isfunction(func):
        raise _definition_error(
            f"@task decorates plain module-level functions; {func!r} is not one."
        )
    if func.__name__ == "<lambda>":
        raise _definition_error(
            "@task cannot register a lambda: a worker finds tasks by name, and a lambda has "
            "none. Define it with def at module level."
        )
    if "<locals>" in func.__qualname__:
        raise _definition_error(
            f"@task cannot register {func.__qualname__}: it is defined inside another function, "
            "so other processes cannot find it. Move it to module level (e.g. a tasks.py)."
        )
    params = list(inspect.signature(func).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise _definition_error(
            f"{func.__qualname__} needs a first positional parameter: it receives the "
            f"CloudTaskRequest. Write def {func.__name__}(request, ...)."
        )


def _definition_error(message: str) -> Exception:
    from .exceptions import TaskDefinitionError

    return TaskDefinitionError(message)


@overload
def task(func: Callable[Concatenate[CloudTaskRequest, P], R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    queue: str | None = None,
    url: str | None = None,
    named: bool | Literal["args"] = False,
    name: str | None = None,
    timeout: float | timedelta | None = None,
    headers: Mapping[str, str] | None = None,
    max_retries: int | None = None,
    retry_for: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    on_failure: Task[Any, Any] | str | None = None,
    method: str = "POST",
    auth: Literal["oidc", "oauth"] | None = "oidc",
    oauth_scope: str | None = None,
    app_engine: Mapping[str, str] | None = None,
    relative_uri: str | None = None,
) -> Callable[[Callable[Concatenate[CloudTaskRequest, P], R]], Task[P, R]]: ...


def task(
    func: Callable[Concatenate[CloudTaskRequest, P], R] | None = None,
    /,
    *,
    queue: str | None = None,
    url: str | None = None,
    named: bool | Literal["args"] = False,
    name: str | None = None,
    timeout: float | timedelta | None = None,
    headers: Mapping[str, str] | None = None,
    max_retries: int | None = None,
    retry_for: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    on_failure: Task[Any, Any] | str | None = None,
    method: str = "POST",
    auth: Literal["oidc", "oauth"] | None = "oidc",
    oauth_scope: str | None = None,
    app_engine: Mapping[str, str] | None = None,
    relative_uri: str | None = None,
) -> Task[P, R] | Callable[[Callable[Concatenate[CloudTaskRequest, P], R]], Task[P, R]]:
    """Register a function as a task; use bare (``@task``) or with options."""

    def decorate(f: Callable[Concatenate[CloudTaskRequest, P], R]) -> Task[P, R]:
        _check_function(f)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise _definition_error(f"@task(name=...) must be a non-empty string, not {name!r}.")
        definition: Task[P, R] = Task(
            func=f,
            name=name or f"{f.__module__}.{f.__qualname__}",
            queue=queue,
            url=url,
            named=named,
            timeout=timeout,  # type: ignore[arg-type]  # normalised to timedelta in __post_init__
            headers=headers or {},
            max_retries=max_retries,
            retry_for=retry_for,  # type: ignore[arg-type]  # normalised to a tuple
            on_failure=on_failure,
            method=method,
            auth=auth,
            oauth_scope=oauth_scope,
            app_engine=app_engine,
            relative_uri=relative_uri,
        )
        registry.register(definition)
        return definition

    if func is not None:
        return decorate(func)
    return decorate
