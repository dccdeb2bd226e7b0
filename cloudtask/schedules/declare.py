"""Declaring periodic tasks: ``@periodic`` and ``CLOUDTASK["SCHEDULES"]``, checked and resolved.

A schedule names a registered task, a unix-cron expression (Cloud Scheduler's syntax: five
fields), a time zone and the keyword arguments of each run. Nothing here raises at import:
a bad declaration is kept as it was written and reported by :func:`check_schedules` (the
system checks), naming the schedule and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.checks import CheckMessage, Error

from .. import conf, envelope
from ..backends.cloudtasks.client import check_emulator_host
from ..exceptions import ConfigurationError, MalformedEnvelope, UnknownTask
from ..registry import registry

#: A schedule name: a stable id, part of the Cloud Scheduler job id and of each run's call id.
#: At most 40 characters, so that a run's call id fits the 64 of a stored result.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
#: One field of a unix-cron expression: numbers, ranges, steps, lists, ``*`` and month or
#: day names. croniter accepts more (seconds, ``L``, ``#``, ``H``); Cloud Scheduler does not.
_CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*/,-]+$")
#: The keys a ``CLOUDTASK["SCHEDULES"]`` entry may have.
SETTING_KEYS = frozenset({"task", "cron", "time_zone", "kwargs", "paused", "description", "retry"})
#: The options of a schedule's ``retry`` (Cloud Scheduler's RetryConfig).
RETRY_KEYS = frozenset(
    {"retry_count", "max_retry_duration", "min_backoff", "max_backoff", "max_doublings"}
)
#: Cloud Scheduler retries a failed run at most this many times.
MAX_RETRY_COUNT = 5

F = TypeVar("F")


@dataclass(frozen=True)
class Schedule:
    """One periodic task: which task runs, when, and with which keyword arguments."""

    #: The stable id (letters, digits, ``-`` and ``_``, at most 40).
    name: str
    #: The registry name of the task.
    task: str
    #: A unix-cron expression, e.g. ``"0 3 * * *"`` (03:00 every day).
    cron: str
    #: The tz database name the cron expression is read in.
    time_zone: str = "UTC"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Declared paused: synced as a paused job, not fired by the local worker.
    paused: bool = False
    description: str = ""
    #: Cloud Scheduler retry options (``retry_count`` ...); unset ones follow the task's queue.
    retry: Mapping[str, Any] = field(default_factory=dict)
    #: Where it was declared, for messages.
    origin: str = ""

    def next_run(self, after: datetime) -> datetime:
        """Return the first run strictly after ``after`` (aware), in UTC."""
        return next_run(self.cron, self.time_zone, after)

    def run_call_id(self, when: datetime) -> str:
        """Return the call id of the run due at ``when``."""
        return run_call_id(self.name, when)


@dataclass
class _Declaration:
    """A ``@periodic`` as written, before it is checked."""

    target: Any
    cron: Any
    time_zone: Any
    kwargs: Any
    name: Any
    paused: Any
    description: Any
    retry: Any
    where: str


_declared: dict[tuple[str, str, str, str], _Declaration] = {}


def periodic(
    cron: str,
    *,
    time_zone: str = "UTC",
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    paused: bool = False,
    description: str = "",
    retry: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """Run the task below on a cron schedule; stack it above ``@task``, several times if needed.

    ```python
    @periodic("0 3 * * *", time_zone="Europe/Zurich")
    @periodic("0 12 * * 1", kwargs={"full": True}, name="weekly-full-report")
    @task
    def report(request, full=False): ...
    ```

    ``name`` defaults to the task's registry name with every character other than letters,
    digits, ``-`` and ``_`` turned into ``-``; two schedules of one task need their own
    names. A mistake (bad cron, unknown time zone, arguments that do not bind) is reported by
    the system checks, naming the schedule, rather than raised at import.
    """

    def declare(target: F) -> F:
        declaration = _Declaration(
            target, cron, time_zone, kwargs, name, paused, description, retry, _where(target)
        )
        # A module imported again replaces its declarations; two unnamed schedules of one
        # task are both kept (and reported as sharing a name).
        key = (declaration.where, str(name), repr(cron), repr(kwargs))
        _declared[key] = declaration
        return target

    return declare


def _where(target: Any) -> str:
    path = getattr(target, "path", None)
    if isinstance(path, str):
        return path  # a Task
    module = getattr(target, "__module__", "?")
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def default_name(task_name: str) -> str:
    """Return the schedule name ``@periodic`` gives a task's schedule without ``name=``."""
    # Too long: the end, which names the function, is kept.
    return re.sub(r"[^A-Za-z0-9_-]", "-", task_name)[-40:].lstrip("-_") or "schedule"


class Declared:
    """Every schedule declared, resolved, and what is wrong with each one."""

    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self.errors: list[CheckMessage] = []

    def error(self, origin: str, message: str, hint: str, check_id: str) -> None:
        self.errors.append(Error(f"{origin}: {message}", hint=hint, id=check_id))

    def add(self, schedule: Schedule) -> None:
        found = problems(schedule)
        for message, hint, check_id in found:
            self.error(schedule.origin, message, hint, check_id)
        if schedule.name in self.schedules:
            first = self.schedules[schedule.name].origin
            self.error(
                schedule.origin,
                f"the schedule name {schedule.name!r} is taken by {first}",
                "Give one of them its own name (@periodic(..., name=...) or another "
                "CLOUDTASK['SCHEDULES'] key).",
                "cloudtask.E056",
            )
        elif not found:
            self.schedules[schedule.name] = schedule


def declared() -> Declared:
    """Resolve every ``@periodic`` on a registered task and every ``SCHEDULES`` entry."""
    result = Declared()
    for declaration in list(_declared.values()):
        schedule = _from_decorator(declaration, result)
        if schedule is not None:
            result.add(schedule)
    for schedule in _from_settings(result):
        result.add(schedule)
    return result


_LOCATION_RE = re.compile(r"^[a-z]+(-[a-z]+)*[0-9]+$|^auto$")


def check_schedules(*, cloud_scheduler: bool) -> list[CheckMessage]:
    """Report every bad declaration and setting of periodic tasks (``cloudtask.E050``-``E059``).

    ``cloud_scheduler``: whether the configured backend runs them as Cloud Scheduler jobs,
    which need the endpoint's URL and a service account for their OIDC token.
    """
    found = declared()
    messages = list(found.errors)
    host = conf.get("SCHEDULER_EMULATOR_HOST")
    try:
        if host is not None:
            check_emulator_host(host, "SCHEDULER_EMULATOR_HOST")
    except ConfigurationError as exc:
        messages.append(Error(str(exc), id="cloudtask.E058"))
    location = conf.get("SCHEDULER_LOCATION")
    if location is not None and not (isinstance(location, str) and _LOCATION_RE.match(location)):
        messages.append(
            Error(
                f"CLOUDTASK['SCHEDULER_LOCATION'] must be a region such as 'europe-west6' "
                f"(or 'auto'), not {location!r}.",
                hint="Leave it unset to use CLOUDTASK['LOCATION'].",
                id="cloudtask.E058",
            )
        )
    if cloud_scheduler and found.schedules:
        messages += _cloud_scheduler_needs(found.schedules)
    return messages


def _cloud_scheduler_needs(declared: Mapping[str, Schedule]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    names = ", ".join(sorted(declared))
    for key, why in (
        ("URL", "its jobs send each run to the task endpoint's absolute URL"),
        ("SAE", "its jobs authenticate with an OIDC token minted for that service account"),
    ):
        if not conf.get(key):
            messages.append(
                Error(
                    f"Periodic tasks ({names}) run as Cloud Scheduler jobs, which need "
                    f"CLOUDTASK['{key}']: {why}.",
                    hint=f"Set CLOUDTASK['{key}'] as for Cloud Tasks tasks.",
                    id="cloudtask.E059",
                )
            )
    for schedule in declared.values():
        task = registry.get(schedule.task)
        if task.app_engine is not None or task.url is not None or task.method != "POST":
            messages.append(
                Error(
                    f"{schedule.origin}: {task.name} is not sent to this project's task "
                    "endpoint with POST (an App Engine target, its own url= or method=), which "
                    "is what a Cloud Scheduler job of cloudtask calls.",
                    hint="Schedule a task that uses the default target, which may call the other.",
                    id="cloudtask.E059",
                )
            )
    return messages


def schedules() -> dict[str, Schedule]:
    """Return the valid declared schedules by name (see :func:`check_schedules` for the rest)."""
    return declared().schedules


def get(name: str) -> Schedule:
    """Return the declared schedule ``name`` or raise :class:`ScheduleNotFound`."""
    from ..exceptions import ScheduleNotFound

    found = schedules().get(name)
    if found is None:
        raise ScheduleNotFound(name)
    return found


def _from_decorator(declaration: _Declaration, result: Declared) -> Schedule | None:
    target = declaration.target
    task_name = getattr(target, "name", None)
    if not isinstance(task_name, str) or not hasattr(target, "func"):
        result.error(
            f"@periodic on {declaration.where}",
            "@periodic is below @task, or on something that is not a task",
            "Put @periodic above @task: @periodic(...) then @task then def ...",
            "cloudtask.E054",
        )
        return None
    if task_name not in registry or registry.get(task_name).path != target.path:
        return None  # not registered (now): a test's isolated registry, say
    name = declaration.name if declaration.name is not None else default_name(task_name)
    return Schedule(
        name=name,
        task=task_name,
        cron=declaration.cron,
        time_zone=declaration.time_zone,
        kwargs=declaration.kwargs if declaration.kwargs is not None else {},
        paused=declaration.paused,
        description=declaration.description,
        retry=declaration.retry if declaration.retry is not None else {},
        origin=f"@periodic schedule {name!r} on {task_name}",
    )


def _from_settings(result: Declared) -> list[Schedule]:
    try:
        entries = conf.get("SCHEDULES")
    except ConfigurationError:
        return []  # CLOUDTASK itself is wrong: cloudtask.E001
    where = "CLOUDTASK['SCHEDULES']"
    hint = (
        "CLOUDTASK['SCHEDULES'] = {'nightly': {'task': 'shop.tasks.report', 'cron': '0 3 * * *'}}"
    )
    if not isinstance(entries, Mapping):
        result.error(where, "must be a dict of schedule names to dicts", hint, "cloudtask.E050")
        return []
    found = []
    for name, entry in entries.items():
        origin = f"{where}[{name!r}]"
        if not isinstance(entry, Mapping):
            result.error(origin, "must be a dict with 'task' and 'cron'", hint, "cloudtask.E050")
            continue
        unknown = sorted(set(entry) - SETTING_KEYS)
        missing = sorted({"task", "cron"} - set(entry))
        if unknown or missing:
            what = f"unknown keys {unknown}" if unknown else f"missing {missing}"
            result.error(
                origin,
                what,
                f"A schedule takes {sorted(SETTING_KEYS)}; 'task' and 'cron' are required.",
                "cloudtask.E050",
            )
            continue
        found.append(
            Schedule(
                name=name,
                task=entry["task"],
                cron=entry["cron"],
                time_zone=entry.get("time_zone", "UTC"),
                kwargs=entry.get("kwargs", {}),
                paused=entry.get("paused", False),
                description=entry.get("description", ""),
                retry=entry.get("retry", {}),
                origin=origin,
            )
        )
    return found


def problems(schedule: Schedule) -> list[tuple[str, str, str]]:
    """Return ``(message, hint, check id)`` for everything wrong with ``schedule``."""
    found: list[tuple[str, str, str]] = []
    if not isinstance(schedule.name, str) or not NAME_RE.match(schedule.name):
        found.append(
            (
                f"the name {schedule.name!r} is not a valid schedule name",
                "Use 1 to 40 letters, digits, '-' or '_', e.g. 'nightly-report'.",
                "cloudtask.E051",
            )
        )
    reason = cron_problem(schedule.cron)
    if reason:
        found.append(
            (
                f"the cron expression {schedule.cron!r} is not valid: {reason}",
                "Use five unix-cron fields (minute hour day-of-month month day-of-week), "
                "e.g. '0 3 * * *' for 03:00 every day or '*/15 * * * *' every 15 minutes.",
                "cloudtask.E052",
            )
        )
    if not _known_zone(schedule.time_zone):
        found.append(
            (
                f"the time zone {schedule.time_zone!r} is not known",
                "Use a tz database name such as 'UTC' or 'Europe/Zurich'.",
                "cloudtask.E053",
            )
        )
    found += _task_problems(schedule)
    found += _option_problems(schedule)
    return found


def _task_problems(schedule: Schedule) -> list[tuple[str, str, str]]:
    if not isinstance(schedule.task, str):
        return [
            (f"'task' must be a registry name, not {schedule.task!r}", _TASK_HINT, "cloudtask.E054")
        ]
    try:
        task = registry.get(schedule.task)
    except UnknownTask:
        return [(f"no task is registered under {schedule.task!r}", _TASK_HINT, "cloudtask.E054")]
    if not isinstance(schedule.kwargs, Mapping) or not all(
        isinstance(key, str) for key in schedule.kwargs
    ):
        return [("'kwargs' must be a dict with str keys", _KWARGS_HINT, "cloudtask.E055")]
    try:
        task.check_received([], dict(schedule.kwargs))
        envelope.check_arguments(task.name, [], schedule.kwargs)
    except TypeError as exc:
        return [(f"the arguments do not fit {task.name}(): {exc}", _KWARGS_HINT, "cloudtask.E055")]
    return []


_TASK_HINT = (
    "Name a task decorated with @task by its registry name (its module and function, "
    "e.g. 'shop.tasks.report', or the name=... given to @task)."
)
_KWARGS_HINT = (
    "Pass the task's arguments (other than the request) as JSON values by keyword, "
    "e.g. kwargs={'full': True}."
)


def _option_problems(schedule: Schedule) -> list[tuple[str, str, str]]:
    found = []
    if not isinstance(schedule.paused, bool):
        found.append(("'paused' must be True or False", "e.g. paused=True", "cloudtask.E057"))
    if not isinstance(schedule.description, str) or len(schedule.description) > 400:
        found.append(("'description' must be text of at most 400 characters", "", "cloudtask.E057"))
    try:
        retry_options(schedule.retry)
    except (TypeError, ValueError) as exc:
        found.append((str(exc), "See 'retry' in the periodic tasks guide.", "cloudtask.E057"))
    return found


def retry_options(value: Any) -> dict[str, Any]:
    """Validate a schedule's ``retry`` and return it with durations as timedeltas."""
    if not isinstance(value, Mapping):
        raise TypeError(f"'retry' must be a dict of {sorted(RETRY_KEYS)}, not {value!r}")
    unknown = sorted(set(value) - RETRY_KEYS)
    if unknown:
        raise ValueError(f"'retry' has unknown keys {unknown}; it takes {sorted(RETRY_KEYS)}")
    found: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("retry_count", "max_doublings"):
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise ValueError(f"'retry'['{key}'] must be a whole number of 0 or more")
            if key == "retry_count" and item > MAX_RETRY_COUNT:
                raise ValueError(
                    f"'retry'['retry_count'] must be 0 to {MAX_RETRY_COUNT} (Cloud Scheduler's "
                    f"limit), not {item}"
                )
            found[key] = item
        else:
            delta = conf.to_timedelta(item, f"'retry'['{key}']")
            if delta < timedelta(0):
                raise ValueError(f"'retry'['{key}'] must not be negative")
            found[key] = delta
    return found


def cron_problem(cron: Any) -> str:
    """Return why ``cron`` is not a unix-cron expression Cloud Scheduler accepts ("" if it is)."""
    from croniter import croniter

    if not isinstance(cron, str):
        return "it must be a string"
    fields = cron.split()
    if len(fields) != 5:
        return f"it has {len(fields)} fields, not 5"
    if not all(_CRON_FIELD_RE.match(part) for part in fields):
        return "only numbers, names, '*', ',', '-' and '/' are allowed"
    if not croniter.is_valid(cron):
        return "a field is out of range or malformed"
    return ""


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _known_zone(name: Any) -> bool:
    if not isinstance(name, str) or not name:
        return False
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def next_run(cron: str, time_zone: str, after: datetime) -> datetime:
    """Return the first time ``cron`` matches strictly after ``after``, in UTC."""
    from croniter import croniter

    local = after.astimezone(_zone(time_zone))
    found = croniter(cron, local).get_next(datetime)
    return found.astimezone(timezone.utc)


def run_call_id(name: str, when: datetime) -> str:
    """Return the call id of schedule ``name``'s run due at ``when``: ``name.YYYYmmddTHHMMSSZ``.

    A run keeps its id across retries; microseconds are added only when ``when`` has them
    (a run started by hand).
    """
    moment = when.astimezone(timezone.utc)
    stamp = moment.strftime("%Y%m%dT%H%M%S")
    if moment.microsecond:
        stamp += f".{moment.microsecond:06d}"
    return f"{name}.{stamp}Z"


def history_prefix(name: str) -> str:
    """Return the prefix every run of schedule ``name`` has in its call id."""
    return f"{name}."


#: Cloud Scheduler's header with the run's scheduled time (RFC 3339, UTC).
SCHEDULE_TIME_META = "HTTP_X_CLOUDSCHEDULER_SCHEDULETIME"


def delivered_call_id(name: Any, meta: Mapping[str, str], now: datetime | None = None) -> str:
    """Return the call id of a Cloud Scheduler delivery of schedule ``name``.

    It comes from the scheduled time Cloud Scheduler sends, so the retries of one run share
    it and each run has its own. Without the header (a run forced with RunJob may lack it,
    and it is not signed), the time of arrival, to the microsecond, is used. A body whose
    schedule is not a schedule name is malformed.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise MalformedEnvelope("'schedule' must be a schedule name")
    when = _parse_time(meta.get(SCHEDULE_TIME_META, ""))
    if when is None:
        when = now or datetime.now(timezone.utc)
    return run_call_id(name, when)


def _parse_time(text: str) -> datetime | None:
    if not text or len(text) > 40:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None
