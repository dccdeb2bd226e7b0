"""Queue configuration from ``CLOUDTASK["QUEUES"]``, with Cloud Tasks' names and ranges.

```python
CLOUDTASK = {
    "QUEUES": {
        "emails": {"max_dispatches_per_second": 5, "max_attempts": 10, "min_backoff": 1},
    },
}
```

A queue that is not listed gets Cloud Tasks' defaults. Durations are seconds or timedeltas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from django.core.checks import CheckMessage, Error

from . import conf
from .exceptions import ConfigurationError

#: Cloud Tasks' ceilings for the rate limits of one queue.
MAX_DISPATCHES_PER_SECOND = 500.0
MAX_CONCURRENT_DISPATCHES = 5000


@dataclass(frozen=True)
class QueueConfig:
    """The rate limits and retry policy of one queue (Cloud Tasks' defaults)."""

    name: str
    max_dispatches_per_second: float = MAX_DISPATCHES_PER_SECOND
    max_concurrent_dispatches: int = 1000
    max_attempts: int = 100  # -1: unlimited
    max_retry_duration: timedelta = timedelta(0)  # zero: unlimited
    min_backoff: timedelta = timedelta(seconds=0.1)
    max_backoff: timedelta = timedelta(seconds=3600)
    max_doublings: int = 16

    def backoff(self, retry: int) -> timedelta:
        """Return the delay before retry number ``retry`` (1 for the first retry).

        The interval starts at min_backoff, doubles max_doublings times, then grows
        linearly by that last doubled step, and is capped at max_backoff; with 10 s, 300 s
        and 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300, ... (Cloud Tasks' RetryConfig).
        """
        step = max(retry, 1) - 1
        if step <= self.max_doublings:
            delay = self.min_backoff * (1 << step)
        else:
            doubled = self.min_backoff * (1 << self.max_doublings)
            delay = doubled * (1 + step - self.max_doublings)
        return min(delay, self.max_backoff)

    def exhausted(self, attempts: int, since_first_attempt: timedelta) -> bool:
        """Return whether no further attempt is allowed after ``attempts`` dispatches.

        Like Cloud Tasks, a task stops only when both limits that are set are reached.
        """
        attempts_done = self.max_attempts == -1 or attempts >= self.max_attempts
        duration_done = (
            self.max_retry_duration <= timedelta(0)
            or since_first_attempt >= self.max_retry_duration
        )
        unlimited = self.max_attempts == -1 and self.max_retry_duration <= timedelta(0)
        return attempts_done and duration_done and not unlimited


def _number(value: Any, what: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int if kind is int else int | float):
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"{what} must be {expected}, not {value!r}.")
    return kind(value)


def _duration(value: Any, what: str) -> timedelta:
    delta = conf.to_timedelta(value, what)
    if delta < timedelta(0):
        raise ValueError(f"{what} must not be negative, not {value!r}.")
    return delta


def _check_limits(config: QueueConfig, what: str) -> None:
    rate = config.max_dispatches_per_second
    if not 0 < rate <= MAX_DISPATCHES_PER_SECOND:
        raise ValueError(
            f"{what}['max_dispatches_per_second'] must be above 0 and at most 500 "
            f"(Cloud Tasks' range), not {rate:g}."
        )
    concurrent = config.max_concurrent_dispatches
    if not 1 <= concurrent <= MAX_CONCURRENT_DISPATCHES:
        raise ValueError(
            f"{what}['max_concurrent_dispatches'] must be between 1 and 5000 "
            f"(Cloud Tasks' range), not {concurrent}."
        )
    if config.max_attempts == 0 or config.max_attempts < -1:
        raise ValueError(
            f"{what}['max_attempts'] must be -1 (unlimited) or at least 1, "
            f"not {config.max_attempts}."
        )
    if config.max_doublings < 0:
        raise ValueError(f"{what}['max_doublings'] must be 0 or more, not {config.max_doublings}.")
    if config.max_backoff < config.min_backoff:
        raise ValueError(
            f"{what}['max_backoff'] ({config.max_backoff.total_seconds():g} s) must not be "
            f"shorter than min_backoff ({config.min_backoff.total_seconds():g} s)."
        )


#: The options of a queue, by name: rate limits and retry policy (Cloud Tasks' names).
OPTIONS = {f.name: f for f in dataclasses.fields(QueueConfig) if f.name != "name"}


def parse(name: Any, options: Any) -> QueueConfig:
    """Validate one queue's options in ``CLOUDTASK["QUEUES"]`` and return its QueueConfig."""
    try:
        conf.check_queue_name(name, f"The queue name {name!r} in CLOUDTASK['QUEUES']")
        return build(name, options, where=f"CLOUDTASK['QUEUES'][{name!r}]")
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None


def build(name: str, options: Any, *, where: str, base: QueueConfig | None = None) -> QueueConfig:
    """Return ``base`` (default: Cloud Tasks' defaults) with ``options`` applied, validated.

    Raises ValueError (or TypeError) with a message that names ``where`` and the option.
    """
    if not isinstance(options, Mapping):
        raise TypeError(
            f"{where} must be a dict of options such as {{'max_attempts': 5}}, "
            f"not {type(options).__name__}."
        )
    values: dict[str, Any] = {}
    for key, value in options.items():
        field = OPTIONS.get(key)
        if field is None:
            raise ValueError(
                f"{where} has an unknown option {key!r}; known options: {', '.join(OPTIONS)}."
            )
        what = f"{where}[{key!r}]"
        if field.type == "timedelta":
            values[key] = _duration(value, what)
        else:
            values[key] = _number(value, what, float if field.type == "float" else int)
    config = dataclasses.replace(base or QueueConfig(name=name), name=name, **values)
    _check_limits(config, where)
    return config


@cache
def configured() -> dict[str, QueueConfig]:
    """Return the QueueConfig of every queue listed in ``CLOUDTASK["QUEUES"]``."""
    queues = conf.get("QUEUES")
    if not isinstance(queues, Mapping):
        raise ConfigurationError(
            "CLOUDTASK['QUEUES'] must be a dict of queue names to option dicts, "
            f"not {type(queues).__name__}."
        )
    return {name: parse(name, options) for name, options in queues.items()}


conf.on_change(configured.cache_clear)


def get(name: str) -> QueueConfig:
    """Return the configuration of queue ``name``; a queue not listed gets the defaults."""
    return configured().get(name) or QueueConfig(name=name)


def check_queues() -> list[CheckMessage]:
    """Report every problem in ``CLOUDTASK["QUEUES"]`` and the local queue's windows."""
    messages: list[CheckMessage] = []
    windows = (
        ("LOCAL_DEDUP_WINDOW", "Use seconds, e.g. 3600.", "cloudtask.E034"),
        ("LOCAL_QUEUE_REUSE_WINDOW", "Use seconds, e.g. 0 in development.", "cloudtask.E035"),
    )
    for key, hint, check_id in windows:
        try:
            conf.check_dedup_window(conf.get(key), f"CLOUDTASK[{key!r}]")
        except (TypeError, ValueError) as exc:
            messages.append(Error(str(exc), hint=hint, id=check_id))
    options = conf.get("QUEUES")
    if not isinstance(options, Mapping):
        return [
            *messages,
            Error(
                "CLOUDTASK['QUEUES'] must be a dict of queue names to option dicts, "
                f"not {type(options).__name__}.",
                hint="CLOUDTASK['QUEUES'] = {'emails': {'max_attempts': 5}}",
                id="cloudtask.E030",
            ),
        ]
    for name, value in options.items():
        messages += _check_queue(name, value)
    return messages


def _check_queue(name: Any, options: Any) -> list[CheckMessage]:
    if not isinstance(name, str) or not conf.QUEUE_ID_RE.match(name):
        return [
            Error(
                f"The queue name {name!r} in CLOUDTASK['QUEUES'] is not a Cloud Tasks queue id "
                "(letters, digits and hyphens, 1 to 100 characters).",
                id="cloudtask.E031",
            )
        ]
    unknown = [key for key in options if key not in OPTIONS] if isinstance(options, Mapping) else []
    if unknown:
        return [
            Error(
                f"CLOUDTASK['QUEUES'][{name!r}] has unknown option(s) "
                f"{', '.join(map(repr, unknown))}.",
                hint=f"Known options: {', '.join(OPTIONS)}.",
                id="cloudtask.E032",
            )
        ]
    try:
        parse(name, options)
    except ConfigurationError as exc:
        return [Error(str(exc), id="cloudtask.E033")]
    return []
