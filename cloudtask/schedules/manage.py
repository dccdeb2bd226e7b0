"""Managing periodic tasks wherever they run: Cloud Scheduler jobs, or the local worker's rows.

Where schedules run is what the configured backend declares (``uses_cloud_scheduler``).
"""

from __future__ import annotations

from types import ModuleType

from ..backends.loading import get_backend
from . import cloud, local
from .records import ScheduleChange, ScheduleInfo


def engine() -> ModuleType:
    """Return the module that runs schedules for the configured backend (cloud or local)."""
    return cloud if get_backend().uses_cloud_scheduler else local


def list_schedules() -> list[ScheduleInfo]:
    """Return every declared schedule with its state, next and last run."""
    return engine().list_schedules()  # type: ignore[no-any-return]


def sync_schedules(*, dry_run: bool = False) -> list[ScheduleChange]:
    """Make the jobs (or local rows) match the declarations; return what changed."""
    return engine().sync(dry_run=dry_run)  # type: ignore[no-any-return]


def pause_schedule(name: str) -> None:
    """Stop running schedule ``name`` until :func:`resume_schedule`."""
    engine().pause(name)


def resume_schedule(name: str) -> None:
    """Run schedule ``name`` again from its next due time."""
    engine().resume(name)


def run_schedule(name: str) -> str:
    """Run schedule ``name`` once now; return its call id (local) or job name (Cloud Scheduler)."""
    return engine().run(name)  # type: ignore[no-any-return]
