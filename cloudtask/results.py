"""Stored results: one TaskResult row per call, when ``CLOUDTASK["RESULTS"]`` is True.

The recorder listens to :mod:`cloudtask.signals`. Its receivers are connected only while the
setting is on, so deliveries pay nothing for results they do not keep. A push writes the row
(one INSERT); a delivery writes it once, when the attempt ends (one UPDATE: its status,
outcome, start and end times, and one more attempt), so nothing is written while it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.db import connections, router, transaction
from django.db.models import Field
from django.utils import timezone

from . import conf, envelope, failures, signals
from .exceptions import ConfigurationError, ResultNotFound

if TYPE_CHECKING:
    from .models import TaskResult


def enabled() -> bool:
    """Return whether results are stored, refusing a value that is not a bool."""
    value = conf.get("RESULTS")
    if not isinstance(value, bool):
        raise ConfigurationError(f"CLOUDTASK['RESULTS'] must be True or False, not {value!r}.")
    return value


def get_result(call_id: str) -> TaskResult:
    """Return the stored result of a call (``handle.call_id``)."""
    from .models import TaskResult as Model

    if not enabled():
        raise ConfigurationError("Results are not stored: set CLOUDTASK['RESULTS'] = True.")
    try:
        row: TaskResult = Model.objects.get(call_id=call_id)
    except Model.DoesNotExist:
        raise ResultNotFound(f"No result is stored for call {call_id!r}.") from None
    return row


def _save(call_id: str, task: Any, **fields: Any) -> None:
    """Write ``fields`` to the call's row: one UPDATE, or an INSERT when it has none yet."""
    from .models import TaskResult

    attempts = fields.pop("add_attempt", False)
    if not _update(call_id, fields, attempts):
        TaskResult.objects.get_or_create(
            call_id=call_id, defaults={"task": task.name, "attempts": int(attempts), **fields}
        )


def _update(call_id: str, fields: dict[str, Any], add_attempt: bool) -> int:
    """UPDATE the call's row with ``fields`` (and one more attempt); return the rows changed.

    The statement for each set of fields is built once: compiling a queryset's update costs
    several times what the database spends running it, on every delivery.
    """
    from .models import TaskResult

    alias = router.db_for_write(TaskResult)
    connection = connections[alias]
    sql = _update_sql(alias, tuple(fields), add_attempt)
    params = [_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]
    # As QuerySet.update does: an error inside a transaction marks it for rollback.
    with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
        cursor.execute(sql, [*params, call_id])
        return int(cursor.rowcount)


@lru_cache(maxsize=64)
def _update_sql(alias: str, names: tuple[str, ...], add_attempt: bool) -> str:
    from .models import TaskResult

    quote = connections[alias].ops.quote_name
    assignments = [f"{quote(_column(name))} = %s" for name in names]
    if add_attempt:
        attempts = quote(_column("attempts"))
        assignments.append(f"{attempts} = {attempts} + 1")
    column = quote(_column("call_id"))
    # Only the model's own quoted identifiers are in the text; every value is a parameter.
    return f"UPDATE {quote(TaskResult._meta.db_table)} SET {', '.join(assignments)} WHERE {column} = %s"  # noqa: S608


def _column(name: str) -> str:
    return str(_field(name).column)


def _field(name: str) -> Field[Any, Any]:
    from .models import TaskResult

    field = TaskResult._meta.get_field(name)
    assert isinstance(field, Field)  # TaskResult has no relations
    return field


def on_pushed(sender: Any, task: Any, call_id: str, handle: Any, call: Any, **kwargs: Any) -> None:
    """Record the pushed call with its arguments."""
    if task.stores_own_results:
        return
    args, call_kwargs = call.arguments
    fields = {"queue": handle.queue, "task_name": handle.name, "pushed_at": timezone.now()}
    _save(call_id, task, args=args, kwargs=call_kwargs, **fields)


def on_succeeded(
    sender: Any,
    task: Any,
    call_id: str,
    result: Any,
    request: Any,
    duration_ms: float,
    **kwargs: Any,
) -> None:
    """Store the return value; one that is not JSON is recorded as a failure."""
    if task.stores_own_results:
        return
    attempt = _attempt(request, duration_ms)
    try:
        envelope.dumps(result)
    except (TypeError, ValueError) as exc:
        error = TypeError(
            f"{task.name} returned {type(result).__name__}, which is not JSON-serialisable "
            f"({exc}); return JSON values when results are stored."
        )
        _finish(call_id, task, "failed", error=error, reason="result-not-json", **attempt)
        return
    _finish(call_id, task, "succeeded", result=result, **attempt)


def on_retrying(
    sender: Any,
    task: Any,
    call_id: str,
    error: Any,
    request: Any,
    duration_ms: float,
    **kwargs: Any,
) -> None:
    """Record the failed attempt; the call will run again."""
    if task.stores_own_results:
        return
    attempt = _attempt(request, duration_ms)
    _save(call_id, task, status="retrying", **attempt, **_error_fields(error))


def on_failed(
    sender: Any,
    task: Any,
    call_id: str,
    error: Any,
    reason: str,
    request: Any,
    duration_ms: float,
    **kwargs: Any,
) -> None:
    """Record the final failure."""
    if task.stores_own_results:
        return
    _finish(call_id, task, "failed", error=error, reason=reason, **_attempt(request, duration_ms))


def on_expired(sender: Any, task: Any, call_id: str, **kwargs: Any) -> None:
    """Record that the call expired before it ran (no attempt: the function did not run)."""
    if task.stores_own_results:
        return
    _finish(call_id, task, "expired", reason="expired")


def _attempt(request: Any, duration_ms: float) -> dict[str, Any]:
    """Return the fields one finished attempt sets: its queue, its start, one more attempt."""
    return {
        "queue": request.queue_name.rsplit("/", 1)[-1],
        # The attempt started when its request arrived: duration_ms counts from then.
        "started_at": timezone.now() - timedelta(milliseconds=duration_ms),
        "add_attempt": True,
    }


def _finish(
    call_id: str,
    task: Any,
    status: str,
    *,
    result: Any = None,
    error: Any = None,
    reason: str = "",
    **attempt: Any,
) -> None:
    fields = {"status": status, "result": result, "finished_at": timezone.now()}
    # A success after failed attempts must not keep the error of an earlier attempt.
    errors = _error_fields(error) or {"error_type": "", "error_message": "", "traceback": ""}
    _save(call_id, task, failure_reason=reason, **fields, **errors, **attempt)


def _error_fields(error: BaseException | None) -> dict[str, str]:
    if error is None:
        return {}
    described = failures.describe(error)
    return {
        "error_type": described["type"],
        "error_message": described["message"],
        "traceback": described["traceback"],
    }


_RECEIVERS: list[tuple[Any, Callable[..., None]]] = [
    (signals.task_pushed, on_pushed),
    (signals.task_succeeded, on_succeeded),
    (signals.task_retrying, on_retrying),
    (signals.task_failed, on_failed),
    (signals.task_expired, on_expired),
]


def sync_receivers() -> None:
    """Connect the recorder while RESULTS is True, and disconnect it otherwise."""
    try:
        on = enabled()
    except ConfigurationError:
        on = False  # reported by the system check
    for signal, receiver in _RECEIVERS:
        if on:
            signal.connect(receiver, dispatch_uid=f"cloudtask.results.{receiver.__name__}")
        else:
            signal.disconnect(receiver, dispatch_uid=f"cloudtask.results.{receiver.__name__}")


conf.on_change(sync_receivers)
