"""``manage.py cloudtask_schedules list|sync|pause|resume|run``: periodic tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from cloudtask.schedules.manage import (
    engine,
    list_schedules,
    pause_schedule,
    resume_schedule,
    run_schedule,
    sync_schedules,
)
from cloudtask.schedules.records import ScheduleChange

from . import _cli

#: ``list`` columns, in this order.
COLUMNS = ("NAME", "TASK", "CRON", "TIME_ZONE", "STATE", "NEXT_RUN", "LAST_RUN", "LAST_STATUS")


class Command(_cli.SubcommandCommand):
    help = (
        "Manage periodic tasks: Cloud Scheduler jobs with the Cloud Tasks backend, the local "
        "worker's schedules otherwise. " + _cli.EXIT_CODES
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        _cli.add_json(sub.add_parser("list", help="list the schedules, next and last runs"))
        sync = sub.add_parser(
            "sync", help="create, update and delete the jobs cloudtask manages (no others)"
        )
        sync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        sync.add_argument(
            "--check", action="store_true", help="dry run; exit 5 if anything would change"
        )
        _cli.add_json(sync)
        for action, text in (
            ("pause", "stop running a schedule until resumed"),
            ("resume", "run a paused schedule again from its next due time"),
            ("run", "run a schedule once now"),
        ):
            parser_ = sub.add_parser(action, help=text)
            parser_.add_argument("name", metavar="NAME")
            _cli.add_json(parser_)

    def do_list(self, options: dict[str, Any]) -> None:
        found = list_schedules()
        rows = [
            (s.name, s.task, s.cron, s.time_zone, s.state, s.next_run, s.last_run, s.last_status)
            for s in found
        ]
        text = _cli.table(COLUMNS, rows) if found else "No schedules are declared."
        self.emit(options, found, text)

    def do_sync(self, options: dict[str, Any]) -> None:
        dry = options["dry_run"] or options["check"]
        changes = sync_schedules(dry_run=dry)
        self.emit(options, changes, sync_text(changes, dry, engine().__name__))
        if options["check"] and any(change.action != "unchanged" for change in changes):
            raise CommandError(
                "The schedules differ from their declarations; run cloudtask_schedules sync.",
                returncode=_cli.DRIFT,
            )

    def do_pause(self, options: dict[str, Any]) -> None:
        pause_schedule(options["name"])
        self.done(options, "paused")

    def do_resume(self, options: dict[str, Any]) -> None:
        resume_schedule(options["name"])
        self.done(options, "resumed")

    def do_run(self, options: dict[str, Any]) -> None:
        started = run_schedule(options["name"])
        self.done(options, "started", started)

    def done(self, options: dict[str, Any], what: str, started: str = "") -> None:
        value = {"name": options["name"], "status": what, **({"run": started} if started else {})}
        text = f"Schedule {options['name']!r} {what}" + (f": {started}" if started else ".")
        self.emit(options, value, text)


def sync_text(changes: list[ScheduleChange], dry_run: bool, engine_name: str) -> str:
    """Describe a sync: one line per schedule, then a count per action."""
    where = "Cloud Scheduler" if engine_name.endswith("cloud") else "the local worker's schedules"
    lines = [f"(dry run: nothing changed in {where})" if dry_run else f"Synced {where}."]
    for change in changes:
        detail = f" ({', '.join(change.fields)})" if change.fields else ""
        lines.append(f"{change.action:<9} {change.name}{detail}")
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    summary = ", ".join(f"{count} {action}" for action, count in sorted(counts.items()))
    lines.append(summary or "No schedules are declared and none are managed.")
    return "\n".join(lines)
