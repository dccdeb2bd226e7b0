"""What schedule management answers with: a schedule's state, and one change of a sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

State = Literal["enabled", "paused", "not-synced", "undeclared"]
Action = Literal["create", "update", "delete", "unchanged"]


@dataclass(frozen=True)
class ScheduleInfo:
    """A declared schedule and where it stands (Cloud Scheduler's job, or the local row)."""

    name: str
    task: str
    cron: str
    time_zone: str
    kwargs: dict[str, Any]
    #: "enabled", "paused", "not-synced" (declared, no job yet) or "undeclared" (a job
    #: cloudtask made for a schedule that is no longer declared: sync deletes it).
    state: State
    next_run: datetime | None
    last_run: datetime | None
    #: How the last run went: "ok", "pushed" (local, results off), an error, or "" if none.
    last_status: str
    #: The Cloud Scheduler job's full name ("" for the local worker).
    job: str = ""
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ScheduleChange:
    """One thing ``sync`` does (or, on a dry run, would do) to make jobs match declarations."""

    name: str
    action: Action
    #: What differs, for "update" (e.g. ["schedule", "http_target"]).
    fields: tuple[str, ...] = ()
    job: str = ""
