"""Periodic tasks without Cloud Scheduler: the local worker fires them from the database.

Each schedule has a row (:class:`cloudtask.models.Schedule`) with its next due time. A worker
fires a due schedule by moving that time forward with a compare-and-set UPDATE and pushing
the run in the same transaction: of several workers, exactly one UPDATE matches, so each due
time is fired once, and a push that fails leaves the row due for the next look.

After downtime a schedule fires once for the runs it missed, then keeps to its cron: the
due time is the missed one, the next is computed from now.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from ..exceptions import ScheduleNotFound, TaskAlreadyExists
from ..models import Schedule as Row
from ..models import TaskResult
from ..push import TaskHandle, push
from ..registry import registry
from ..task_ids import make_task_id
from .declare import Schedule, history_prefix, schedules
from .records import ScheduleChange, ScheduleInfo

logger = logging.getLogger("cloudtask")

#: The row fields that mirror the declaration.
MIRRORED = ("task", "cron", "time_zone", "kwargs")


def sync(*, dry_run: bool = False, now: datetime | None = None) -> list[ScheduleChange]:
    """Make the rows match the declarations: add, update and delete rows; return the changes.

    A row paused by hand stays paused; a schedule declared ``paused=True`` is paused.
    """
    now = now or timezone.now()
    declared = schedules()
    rows = {row.name: row for row in Row.objects.all()}
    changes: list[ScheduleChange] = []
    for name, schedule in sorted(declared.items()):
        row = rows.pop(name, None)
        if row is None:
            changes.append(ScheduleChange(name, "create"))
            if not dry_run:
                _create(schedule, now)
            continue
        fields = _differences(schedule, row)
        changes.append(ScheduleChange(name, "update" if fields else "unchanged", fields))
        if fields and not dry_run:
            _update(row, schedule, fields, now)
    for name in sorted(rows):
        changes.append(ScheduleChange(name, "delete"))
        if not dry_run:
            Row.objects.filter(pk=name).delete()
    return changes


def _create(schedule: Schedule, now: datetime) -> None:
    try:
        with transaction.atomic():
            Row.objects.create(
                name=schedule.name,
                **_mirrored(schedule),
                paused=schedule.paused,
                next_run=schedule.next_run(now),
            )
    except IntegrityError:
        pass  # another worker starting at the same moment made it


def _mirrored(schedule: Schedule) -> dict[str, Any]:
    return {
        "task": schedule.task,
        "cron": schedule.cron,
        "time_zone": schedule.time_zone,
        "kwargs": dict(schedule.kwargs),
    }


def _differences(schedule: Schedule, row: Row) -> tuple[str, ...]:
    wanted = _mirrored(schedule)
    fields = [key for key in MIRRORED if getattr(row, key) != wanted[key]]
    if schedule.paused and not row.paused:
        fields.append("paused")
    return tuple(fields)


def _update(row: Row, schedule: Schedule, fields: tuple[str, ...], now: datetime) -> None:
    for key, value in _mirrored(schedule).items():
        setattr(row, key, value)
    if "paused" in fields:
        row.paused = True
    if "cron" in fields or "time_zone" in fields or row.next_run is None:
        row.next_run = schedule.next_run(now)
    row.save()


class Firing:
    """The local worker's ``tick``: sync the rows once, then fire what is due at each call.

    Before ``migrate`` has made the schedules' table (a project upgraded without it), it says
    so once and fires nothing until the worker is started again.
    """

    def __init__(self) -> None:
        self.synced = False
        self.disabled = False

    def __call__(self, now: datetime) -> int:
        if self.disabled:
            return 0
        if not self.synced:
            if Row._meta.db_table not in connection.introspection.table_names():
                logger.warning(
                    "worker status=schedules-off reason=the table %s is missing: run python "
                    "manage.py migrate, then start the worker again",
                    Row._meta.db_table,
                )
                self.disabled = True
                return 0
            sync(now=now)
            self.synced = True
        return fire_due(now)


def fire_due(now: datetime | None = None) -> int:
    """Push every due, unpaused schedule's run once; return how many were pushed."""
    now = now or timezone.now()
    declared = schedules()
    fired = 0
    due = Row.objects.filter(paused=False, next_run__lte=now).order_by("next_run")
    for row in list(due):
        schedule = declared.get(row.name)
        if schedule is None or row.next_run is None:
            continue  # no longer declared: the next sync removes the row
        try:
            fired += _fire(schedule, row.next_run, now)
        except DatabaseError as exc:
            # Another worker holds the row, or the database is busy: the next look tries again.
            logger.info("schedule=%s status=fire-deferred reason=%s", row.name, exc)
    return fired


def _fire(schedule: Schedule, due: datetime, now: datetime) -> int:
    call_id = schedule.run_call_id(due)
    with transaction.atomic():
        claimed = Row.objects.filter(pk=schedule.name, next_run=due, paused=False).update(
            next_run=schedule.next_run(now), last_run=due, last_call_id=call_id
        )
        if not claimed:
            return 0  # another worker fired this due time
        try:
            _push_run(schedule, call_id)
        except TaskAlreadyExists:
            return 0  # pushed before under the same name: a run is never pushed twice
        except DatabaseError:
            raise
        except Exception:
            # Not a passing problem (the task is gone, its arguments no longer fit): this
            # run is skipped and said, and the schedule keeps to its cron.
            logger.exception("schedule=%s id=%s status=fire-failed", schedule.name, call_id)
            return 0
    logger.info("schedule=%s task=%s id=%s status=fired", schedule.name, schedule.task, call_id)
    return 1


def run_task_id(call_id: str) -> str:
    """Return the Cloud Tasks id the run ``call_id`` is pushed under (a second push is refused)."""
    return make_task_id(f"schedule-{call_id}")


def _push_run(schedule: Schedule, call_id: str) -> TaskHandle:
    task = registry.get(schedule.task)
    call = task(**schedule.kwargs)
    return push(call, call_id=call_id, task_id=run_task_id(call_id))


def run(name: str, now: datetime | None = None) -> str:
    """Push a run of schedule ``name`` now, whatever its cron and pause; return its call id."""
    schedule = _declared(name)
    now = now or timezone.now()
    call_id = schedule.run_call_id(now)
    _push_run(schedule, call_id)
    Row.objects.filter(pk=name).update(last_run=now, last_call_id=call_id)
    return call_id


def pause(name: str) -> None:
    """Stop firing schedule ``name`` until :func:`resume`."""
    _ensure_row(name)
    Row.objects.filter(pk=name).update(paused=True)


def resume(name: str, now: datetime | None = None) -> None:
    """Fire schedule ``name`` again from its next due time after now (missed runs skipped)."""
    schedule = _declared(name)
    _ensure_row(name)
    Row.objects.filter(pk=name).update(
        paused=False, next_run=schedule.next_run(now or timezone.now())
    )


def _declared(name: str) -> Schedule:
    found = schedules().get(name)
    if found is None:
        raise ScheduleNotFound(name)
    return found


def _ensure_row(name: str) -> None:
    _declared(name)
    if not Row.objects.filter(pk=name).exists():
        sync()


def list_schedules() -> list[ScheduleInfo]:
    """Return every declared schedule with its row's state (rows are synced first)."""
    sync()
    rows = {row.name: row for row in Row.objects.all()}
    declared = schedules()
    outcomes = _outcomes([row.last_call_id for row in rows.values() if row.last_call_id])
    return [
        ScheduleInfo(
            name=name,
            task=schedule.task,
            cron=schedule.cron,
            time_zone=schedule.time_zone,
            kwargs=dict(schedule.kwargs),
            state="paused" if rows[name].paused else "enabled",
            next_run=None if rows[name].paused else rows[name].next_run,
            last_run=rows[name].last_run,
            last_status=outcomes.get(rows[name].last_call_id, "pushed")
            if rows[name].last_call_id
            else "",
            raw=rows[name],
        )
        for name, schedule in sorted(declared.items())
    ]


def _outcomes(call_ids: list[str]) -> dict[str, str]:
    """Return the stored status of each call that has a result row (``RESULTS`` on)."""
    if not call_ids:
        return {}
    found = TaskResult.objects.filter(call_id__in=call_ids).values_list("call_id", "status")
    return dict(found)


def history(name: str) -> Any:
    """Return the stored results of schedule ``name``'s runs, newest first (a QuerySet)."""
    return TaskResult.objects.filter(call_id__startswith=history_prefix(name))
