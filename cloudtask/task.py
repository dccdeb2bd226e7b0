"""@task, the immutable task definition, and the call object that pushes or runs it."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from asgiref.sync import async_to_sync

from . import conf, envelope, options, task_ids
from .binding import ArgumentChecker
from .options import Expires
from .push import TaskHandle, push, push_on_commit
from .registry import registry
from .request import CloudTaskRequest
from .workflows.canvas import Signature

P = ParamSpec("P")
R = TypeVar("R")


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
    #: The OIDC token's audience (None: ``CLOUDTASK["OIDC"]["AUDIENCE"]``, else the URL).
    audience: str | None = None
    #: How long after its push a call may still run; a later delivery is acknowledged unrun.
    expires: timedelta | None = None
    #: The function's signature without its first parameter, which receives the request:
    #: what callers pass.
    call_signature: inspect.Signature = field(init=False, repr=False, compare=False)
    _check_arguments: ArgumentChecker = field(init=False, repr=False, compare=False)
    _is_coroutine: bool = field(init=False, repr=False, compare=False)
    #: The request parameter's name where ``**kwargs`` would accept it as an argument.
    _request_keyword: str | None = field(init=False, repr=False, compare=False)
    #: Whether the task writes its own stored results (Django tasks do), so the recorder of
    #: ``CLOUDTASK["RESULTS"]`` leaves its calls alone.
    stores_own_results: ClassVar[bool] = False

    def __post_init__(self) -> None:
        options.check_task(self)
        signature = inspect.signature(self.func)
        call_signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        object.__setattr__(self, "call_signature", call_signature)
        object.__setattr__(self, "_check_arguments", ArgumentChecker(call_signature))
        first, *rest = signature.parameters.values()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest)
        object.__setattr__(self, "_request_keyword", first.name if takes_any else None)
        # Decided once: inspect's check costs more than the rest of a small task's run.
        object.__setattr__(self, "_is_coroutine", inspect.iscoroutinefunction(self.func))

    @property
    def path(self) -> str:
        """The dotted path of the function, for messages."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskCall[R]:
        """Bind the arguments and return a call ready to push or run."""
        try:
            self.check_received(args, kwargs)  # type: ignore[arg-type]
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}{options.request_hint(self, args)}") from None
        arguments_json = envelope.check_arguments(self.name, args, kwargs)
        return TaskCall(self, arguments_json, _caller())

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Push a call with these arguments now: ``add.delay(a=1)`` is ``add(a=1).delay()``.

        Celery's spelling. Push options (``name=``, ``unique=``, a schedule) go on the call:
        ``add(a=1).delay(name="...")``, ``add(a=1).schedule(countdown=60)``.
        """
        return self(*args, **kwargs).delay()

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A workflow step calling this task; it receives its parent's result first."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """A workflow step calling this task with exactly these arguments (no parent result)."""
        return Signature(self, args, kwargs, immutable=True)

    def using(self, **changes: Any) -> Task[P, R]:
        """Return a copy of this task with some options changed (it is not re-registered).

        Options the endpoint reads from the registered task (``max_retries``, ``retry_for``,
        ``on_failure``, ``name``, ``func``) are refused: a copy's values would be ignored.
        """
        return dataclasses.replace(self, **options.check_using(self.name, changes))

    def check_received(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError if received arguments no longer bind to the function."""
        self._check_arguments(args, kwargs)
        if self._request_keyword is not None and self._request_keyword in kwargs:
            # **kwargs would take it, and the call would then fail on every delivery.
            raise TypeError(
                f"{self._request_keyword!r} is the parameter that receives the "
                "CloudTaskRequest; it cannot be passed as an argument"
            )

    def run(self, request: CloudTaskRequest, args: list[Any], kwargs: dict[str, Any]) -> R:
        """Call the function; coroutine functions are run to completion."""
        if self._is_coroutine:
            return async_to_sync(self.func)(request, *args, **kwargs)  # type: ignore[arg-type]
        return self.func(request, *args, **kwargs)


class TaskCall(Generic[R]):
    """One call of a task with bound, JSON-checked arguments.

    A call that is garbage-collected without having been pushed or run warns
    (``RuntimeWarning``, pointing at the line that made it), as a coroutine that was never
    awaited does: ``add(a=1)`` alone does nothing.
    """

    __slots__ = ("_arguments_json", "_audience", "_headers", "_made_at", "_url", "task")

    def __init__(
        self, task: Task[Any, R], arguments_json: str, made_at: tuple[str, int] | None = None
    ) -> None:
        self.task = task
        self._arguments_json = arguments_json
        self._url = task.url
        self._headers: Mapping[str, str] = task.headers
        self._audience = task.audience
        #: Where the call was made, until it is pushed or run (None: nothing to warn about).
        self._made_at = made_at

    def consume(self) -> None:
        """Mark the call as pushed or run, so it does not warn when it is collected."""
        self._made_at = None

    def __del__(self) -> None:
        made_at = getattr(self, "_made_at", None)
        if made_at is None:
            return  # pushed or run
        try:
            warn, exiting = warnings.warn_explicit, sys.meta_path is None
        except AttributeError:
            return  # the interpreter is exiting and has cleared this module's globals
        if exiting:
            return
        warn(
            f"{self!r} was never pushed or run: call .delay(), .schedule() or .execute() on "
            "it (a task call does nothing by itself).",
            RuntimeWarning,
            filename=made_at[0],
            lineno=made_at[1],
            module=self.task.func.__module__,
        )

    def __repr__(self) -> str:
        args, kwargs = self.arguments
        shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"<TaskCall {self.task.name}({', '.join(shown)})>"

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON array ``[args, kwargs]`` (checked when the call was made)."""
        return self._arguments_json

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
        self._headers = options.check_headers(value, "TaskCall.headers")

    @property
    def audience(self) -> str | None:
        """The OIDC token's audience for this call (the task's unless set)."""
        return self._audience

    @audience.setter
    def audience(self, value: str | None) -> None:
        self._audience = options.check_audience(value, "TaskCall.audience")

    def delay(
        self,
        *,
        name: str | None = None,
        unique: bool = False,
        expires: Expires | None = None,
        revocable: bool = False,
    ) -> TaskHandle:
        """Push the call to its queue now; ``unique`` appends a random suffix to the name.

        ``expires`` (an aware datetime, or seconds / a timedelta after the push): a delivery
        after that moment is acknowledged without running. The task's ``expires`` otherwise.
        ``revocable=True`` stores the call (a one-step workflow) so that
        ``cloudtask.workflows.revoke_workflow(handle.call_id)`` can stop it before it runs.
        """
        return self._push(eta=None, name=name, unique=unique, expires=expires, revocable=revocable)

    @overload
    def push(
        self,
        *,
        name: str | None = ...,
        unique: bool = ...,
        on_commit: Literal[False] = ...,
        expires: Expires | None = ...,
    ) -> TaskHandle: ...

    @overload
    def push(
        self,
        *,
        name: str | None = ...,
        unique: bool = ...,
        on_commit: Literal[True],
        expires: Expires | None = ...,
    ) -> None: ...

    def push(
        self,
        *,
        name: str | None = None,
        unique: bool = False,
        on_commit: bool = False,
        expires: Expires | None = None,
    ) -> TaskHandle | None:
        """Push the call now (alias of :meth:`delay`), or when the transaction commits."""
        if on_commit:
            self.delay_on_commit(name=name, unique=unique, expires=expires)
            return None
        return self._push(eta=None, name=name, unique=unique, expires=expires)

    def delay_on_commit(
        self,
        *,
        name: str | None = None,
        unique: bool = False,
        using: str | None = None,
        expires: Expires | None = None,
    ) -> None:
        """Push the call once the current transaction commits; nothing is pushed on rollback.

        Outside a transaction it is pushed at once. The name and ``expires`` are checked now,
        not at commit; a duration in ``expires`` counts from the push.
        """
        self.consume()  # pushed, or tried: a failed push raises where it was made
        task_id = task_ids.task_id_for(self, name, unique)
        push_on_commit(self, task_id, using=using, expires=options.check_expires(expires))

    def schedule(
        self,
        *,
        at: datetime | None = None,
        countdown: float | timedelta | None = None,
        name: str | None = None,
        unique: bool = False,
        expires: Expires | None = None,
        revocable: bool = False,
    ) -> TaskHandle:
        """Push the call to run at ``at`` or ``countdown`` (seconds or timedelta) from now.

        ``expires`` must fall after that time; ``revocable`` as for :meth:`delay`.
        """
        self.consume()
        eta = options.schedule_time(at=at, countdown=countdown)
        return self._push(eta=eta, name=name, unique=unique, expires=expires, revocable=revocable)

    def execute(self) -> R:
        """Run the function now, in this process, as a task would run."""
        self.consume()
        args, kwargs = self.arguments
        return self.task.run(CloudTaskRequest(is_last_attempt=True), args, kwargs)

    def __call__(self) -> R:
        """Run the function now, in this process (same as :meth:`execute`)."""
        return self.execute()

    def _push(
        self,
        *,
        eta: datetime | None,
        name: str | None,
        unique: bool,
        expires: Expires | None,
        revocable: bool = False,
    ) -> TaskHandle:
        self.consume()  # pushed, or tried: a failed push raises where it was made
        if revocable:
            return self._push_revocable(eta, name, unique, expires)
        lifetime = options.check_expires(expires)
        task_id = task_ids.task_id_for(self, name, unique)
        return push(self, eta=eta, task_id=task_id, expires=lifetime)

    def _push_revocable(
        self, eta: datetime | None, name: str | None, unique: bool, expires: Expires | None
    ) -> TaskHandle:
        if name is not None or unique or expires is not None:
            raise TypeError(
                f"{self.task.name}: revocable=True cannot be combined with name=, unique= or "
                "expires=: a revocable call is named after its stored step."
            )
        task = self.task
        if (self._url, self._headers, self._audience) != (task.url, task.headers, task.audience):
            raise TypeError(
                f"{self.task.name}: a revocable call is pushed with its task's own url, "
                "headers and audience; set them on the task (@task(...) or .using())."
            )
        # The engine needs the models, which ``import cloudtask`` must not load.
        from .workflows.engine import start_call

        args, kwargs = self.arguments
        return start_call(self.task, args, kwargs, eta)


def _caller() -> tuple[str, int]:
    """Return the file and line that called the task (two frames up)."""
    frame = sys._getframe(2)
    return frame.f_code.co_filename, frame.f_lineno


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
    audience: str | None = None,
    expires: float | timedelta | None = None,
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
    audience: str | None = None,
    expires: float | timedelta | None = None,
) -> Task[P, R] | Callable[[Callable[Concatenate[CloudTaskRequest, P], R]], Task[P, R]]:
    """Register a function as a task; use bare (``@task``) or with options."""

    def decorate(f: Callable[Concatenate[CloudTaskRequest, P], R]) -> Task[P, R]:
        options.check_function(f)
        options.check_name(name)
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
            audience=audience,
            expires=expires,  # type: ignore[arg-type]  # normalised to timedelta
        )
        registry.register(definition)
        return definition

    if func is not None:
        return decorate(func)
    return decorate
