"""Every check of what ``@task(...)``, ``using()`` and a call's options accept, in one place.

A task is validated when it is decorated and a call when it is made, so a mistake raises
where it was written, not later inside a worker. Each check names the option and says how
to write it instead.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from django.conf import settings as django_settings
from django.utils import timezone

from . import conf
from .exceptions import TaskDefinitionError
from .signing import SIGNATURE_HEADER

if TYPE_CHECKING:
    from .task import Task

#: Cloud Tasks refuses a schedule_time further ahead than this.
MAX_SCHEDULE = timedelta(days=30)
#: Methods that carry a body; the call travels in the body, so only these can deliver it.
BODY_METHODS = ("POST", "PUT", "PATCH")
AUTH_CHOICES = ("oidc", "oauth", None)
APP_ENGINE_KEYS = ("service", "version", "instance")
#: The keyword arguments an ``on_failure`` task receives.
FAILURE_ARGUMENTS = ("task", "id", "args", "kwargs", "error")
#: Options the endpoint takes from the registered task, whatever the pushed copy said.
RUN_TIME_OPTIONS = ("func", "name", "max_retries", "retry_for", "on_failure")
#: Options that decide where and how a call is delivered; a ``request.retry()`` copy keeps them.
ROUTE_OPTIONS = (
    "queue",
    "timeout",
    "method",
    "auth",
    "oauth_scope",
    "app_engine",
    "relative_uri",
    "audience",
)

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by cloudtask, or replaced or dropped by Cloud Tasks (its HttpRequest.headers docs):
# a custom value would silently not arrive. Authorization carries the OIDC/OAuth token.
_RESERVED_HEADERS = frozenset(
    {SIGNATURE_HEADER.lower(), "content-type", "content-length", "host", "user-agent"}
)
_RESERVED_PREFIXES = ("x-cloudtasks-", "x-google-", "x-appengine-")


@runtime_checkable
class TaskLike(Protocol):
    """What ``on_failure=`` accepts besides a registry name: a task definition."""

    @property
    def name(self) -> str: ...

    def check_received(self, args: list[Any], kwargs: dict[str, Any]) -> None: ...


def check_function(func: Any) -> None:
    """Refuse what ``@task`` cannot register: a worker must find it by name and call it."""
    if not callable(func):
        raise TaskDefinitionError(f"@task decorates functions, not {type(func).__name__} objects.")
    if not inspect.isfunction(func):
        raise TaskDefinitionError(
            f"@task decorates plain module-level functions; {func!r} is not one."
        )
    if func.__name__ == "<lambda>":
        raise TaskDefinitionError(
            "@task cannot register a lambda: a worker finds tasks by name, and a lambda has "
            "none. Define it with def at module level."
        )
    if "<locals>" in func.__qualname__:
        raise TaskDefinitionError(
            f"@task cannot register {func.__qualname__}: it is defined inside another function, "
            "so other processes cannot find it. Move it to module level (e.g. a tasks.py)."
        )
    params = list(inspect.signature(func).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TaskDefinitionError(
            f"{func.__qualname__} needs a first positional parameter: it receives the "
            f"CloudTaskRequest. Write def {func.__name__}(request, ...)."
        )


#: First parameter names that say "this receives the request".
_REQUEST_NAMES = frozenset({"request", "req", "r", "_request", "_req", "_r", "_", "ctx", "context"})


def request_hint(task: Task[Any, Any], args: tuple[Any, ...]) -> str:
    """Explain a call that fails to bind when the function forgot its request parameter.

    ``def ok(x)`` called as ``ok(5)``: the call has one argument too many, because ``x``
    receives the CloudTaskRequest. Said only when the first parameter looks like an argument
    (an unknown name and no CloudTaskRequest annotation) and arguments were passed by position.
    """
    first = next(iter(inspect.signature(task.func).parameters.values()))
    annotation = first.annotation
    shown = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if not args or first.name in _REQUEST_NAMES or shown.endswith("CloudTaskRequest"):
        return ""
    function = task.func.__name__
    return (
        f". Note: the first parameter of {function}(), {first.name!r}, receives the "
        f"CloudTaskRequest, so it takes no argument from the caller; if {first.name!r} is "
        f"meant to be an argument, write def {function}(request, {first.name}, ...)."
    )


def check_name(name: Any) -> None:
    """Refuse a registry name that is not a non-empty string."""
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise TaskDefinitionError(f"@task(name=...) must be a non-empty string, not {name!r}.")


def check_task(task: Task[Any, Any]) -> None:
    """Validate every option of ``task``, normalising timeout, headers and retry_for."""
    where = f"@task(...) of {task.name}"
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
        timeout = conf.check_timeout(task.timeout, f"@task(timeout=...) of {task.name}")
        object.__setattr__(task, "timeout", timeout)
    headers = check_headers(task.headers, f"@task(headers=...) of {task.name}")
    object.__setattr__(task, "headers", headers)
    if task.expires is not None:
        lifetime = check_lifetime(task.expires, f"@task(expires=...) of {task.name}")
        object.__setattr__(task, "expires", lifetime)
    _check_retries(task, where)
    _check_target(task, where)


def check_using(task_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Refuse what ``Task.using()`` cannot change; return the options with timeout checked."""
    refused = [option for option in RUN_TIME_OPTIONS if option in options]
    if refused:
        raise TypeError(
            f"{task_name}.using() cannot change {', '.join(refused)}: the endpoint runs the "
            "registered task, so the copy's value would be ignored. Set it in @task(...), "
            "or register another task."
        )
    if options.get("timeout") is not None:
        options["timeout"] = conf.check_timeout(options["timeout"], "timeout")
    if options.get("expires") is not None:
        options["expires"] = check_lifetime(options["expires"], "expires")
    return options


def check_audience(value: Any, what: str) -> str | None:
    """Validate an OIDC audience: None (the default rule) or a non-empty one-line string.

    Cloud Tasks accepts any string (a URL, or an IAP client id), so only the shape is checked.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise TypeError(
            f"{what} must be a non-empty string such as 'https://app.example.com/_tasks/', "
            f"not {value!r}."
        )
    return value


def check_lifetime(value: Any, what: str) -> timedelta:
    """Validate a task's lifetime after its push: a positive number of seconds or timedelta."""
    lifetime = conf.to_timedelta(value, what)
    if lifetime <= timedelta(0):
        raise ValueError(
            f"{what} must be a positive duration after the push (seconds or a timedelta), "
            f"not {lifetime.total_seconds():g} seconds."
        )
    return lifetime


#: What ``expires=`` takes: an aware datetime, or a duration (seconds, timedelta) after the push.
Expires = datetime | timedelta | float | int


def check_expires(value: Any) -> datetime | timedelta | None:
    """Validate a call's ``expires=``: an aware datetime, or a positive duration."""
    if value is None or isinstance(value, datetime):
        return None if value is None else _aware(value, "expires")
    return check_lifetime(value, "expires")


def expiry_time(expires: datetime | timedelta | None, eta: datetime | None) -> datetime | None:
    """Return the moment after which a delivery is acknowledged without running, or None.

    A duration counts from now (the push). The moment must lie ahead, and after ``eta``: a
    task that expires before it is due would never run.
    """
    if expires is None:
        return None
    now = _now()
    moment = now + expires if isinstance(expires, timedelta) else expires
    if moment <= now:
        raise ValueError(
            f"expires={moment.isoformat()} is in the past: a task that expired before it was "
            "pushed would never run. Pass a later datetime, or a duration after the push."
        )
    if eta is not None and moment <= eta:
        raise ValueError(
            f"expires={moment.isoformat()} is not after the schedule time {eta.isoformat()}: "
            "the task would expire before it is due. Expire it later, or schedule it earlier."
        )
    return moment


def _now() -> datetime:
    return timezone.now() if django_settings.USE_TZ else datetime.now(dt_timezone.utc)


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
                "auth='oidc' | 'oauth' | None instead of setting the header."
            )
    return dict(headers)


def check_failure_handler(handler: TaskLike) -> None:
    """Refuse an ``on_failure`` task that cannot take the failure's keyword arguments."""
    try:
        handler.check_received([], dict.fromkeys(FAILURE_ARGUMENTS))
    except TypeError as exc:
        raise TaskDefinitionError(
            f"on_failure task {handler.name} must accept the keyword arguments "
            f"{', '.join(FAILURE_ARGUMENTS)} ({exc})."
        ) from None


def schedule_time(*, at: datetime | None, countdown: float | timedelta | None) -> datetime:
    """Validate ``at`` / ``countdown`` and return the aware UTC time to run at."""
    now = _now()
    if (at is None) == (countdown is None):
        raise TypeError("schedule() takes exactly one of at= (a datetime) or countdown=.")
    if countdown is not None:
        delta = conf.to_timedelta(countdown, "countdown")
        if delta < timedelta(0):
            raise ValueError(f"countdown must not be negative, got {delta.total_seconds():g}s.")
        eta = now + delta
    else:
        eta = _aware(at, "at")
    eta = eta.astimezone(dt_timezone.utc)
    if eta - now > MAX_SCHEDULE:
        raise ValueError(
            f"Cannot schedule a task for {eta.isoformat()}: Cloud Tasks accepts at most "
            "30 days ahead. Store the date and push the task later (e.g. from a daily task)."
        )
    return eta


def _aware(at: Any, what: str) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"{what}= must be a datetime.datetime, not {type(at).__name__}.")
    if timezone.is_aware(at):
        return at
    if django_settings.USE_TZ:
        raise ValueError(
            f"{what}={at.isoformat()} is a naive datetime while USE_TZ is True; pass an aware "
            "one, e.g. timezone.now() + timedelta(hours=1)."
        )
    return timezone.make_aware(at, timezone.get_default_timezone())


def _check_retries(task: Task[Any, Any], where: str) -> None:
    max_retries = task.max_retries
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise TaskDefinitionError(f"{where}: max_retries must be a whole number >= 0 or None.")
    retry_for = task.retry_for
    if retry_for is not None:
        retry_for = retry_for if isinstance(retry_for, tuple) else (retry_for,)
        if not retry_for or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in retry_for
        ):
            raise TaskDefinitionError(
                f"{where}: retry_for must be an exception class or a tuple of them."
            )
        object.__setattr__(task, "retry_for", retry_for)
    on_failure = task.on_failure
    if on_failure is not None and not isinstance(on_failure, str):
        if not isinstance(on_failure, TaskLike):
            raise TaskDefinitionError(
                f"{where}: on_failure must be a task (decorated with @task) or its registry name."
            )
        check_failure_handler(on_failure)


def _check_target(task: Task[Any, Any], where: str) -> None:
    """Validate the HTTP method, the token and the App Engine routing of ``task``."""
    if task.method not in BODY_METHODS:
        raise ValueError(
            f"{where}: method={task.method!r} is not one of {', '.join(BODY_METHODS)}. The "
            "call's arguments travel in the request body, which Cloud Tasks sends only with "
            "these methods."
        )
    if task.method != "POST" and task.url is None:
        raise ValueError(
            f"{where}: method={task.method!r} needs url=... pointing at a receiver that "
            "accepts it: cloudtask's own endpoint accepts POST only."
        )
    if task.auth not in AUTH_CHOICES:
        raise ValueError(f"{where}: auth={task.auth!r} must be 'oidc', 'oauth' or None.")
    check_audience(task.audience, f"{where}: audience")
    if task.audience is not None and task.auth != "oidc":
        raise ValueError(f"{where}: audience= only applies with auth='oidc'.")
    if task.oauth_scope is not None and task.auth != "oauth":
        raise ValueError(f"{where}: oauth_scope= only applies with auth='oauth'.")
    scope = task.oauth_scope
    if scope is not None and not (isinstance(scope, str) and scope.startswith("https://")):
        raise ValueError(f"{where}: oauth_scope must be a scope URL, not {scope!r}.")
    _check_app_engine(task, where)


def _check_app_engine(task: Task[Any, Any], where: str) -> None:
    if task.app_engine is None:
        if task.relative_uri is not None:
            raise ValueError(
                f"{where}: relative_uri= applies to App Engine targets (app_engine=...); "
                "HTTP targets take url=."
            )
        return
    routing = task.app_engine
    if not isinstance(routing, Mapping) or not routing:
        raise TypeError(
            f"{where}: app_engine must be a dict such as {{'service': 'worker'}}, not {routing!r}."
        )
    for key, value in routing.items():
        if key not in APP_ENGINE_KEYS:
            raise ValueError(
                f"{where}: app_engine has an unknown key {key!r}; use {', '.join(APP_ENGINE_KEYS)}."
            )
        if not isinstance(value, str) or not value:
            raise TypeError(f"{where}: app_engine[{key!r}] must be a non-empty string.")
    if task.auth == "oauth":
        raise ValueError(f"{where}: App Engine targets take no OAuth token; drop auth='oauth'.")
    if task.audience is not None:
        raise ValueError(f"{where}: App Engine targets take no OIDC token; drop audience=.")
    if task.url is not None:
        raise ValueError(f"{where}: App Engine targets take relative_uri=, not url=.")
    uri = task.relative_uri
    if uri is not None and not (isinstance(uri, str) and uri.startswith("/")):
        raise ValueError(f"{where}: relative_uri must start with '/', not {uri!r}.")
