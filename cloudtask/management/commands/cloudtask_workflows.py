"""``manage.py cloudtask_workflows list|show|revoke|resume|prune``: stored workflows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, connection
from django.db.models import Count, Q
from django.utils import timezone

from cloudtask.exceptions import WorkflowNotFound
from cloudtask.models import Workflow
from cloudtask.workflows import engine, get_workflow, revoke_workflow

from . import _cli

#: ``list`` columns, in this order.
COLUMNS = ("ID", "STATUS", "STEPS", "CREATED", "FINISHED", "DESCRIPTION")
#: The values of ``Workflow.status``.
STATUSES: tuple[str, ...] = tuple(Workflow.Status.values)
#: ``show`` columns of the steps, in this order.
STEP_COLUMNS = (
    "KEY",
    "KIND",
    "TASK",
    "STATUS",
    "ATTEMPTS",
    "CALL_ID",
    "TASK_ID",
    "ERROR",
    "RESULT",
)
#: The fields of a step that ``show`` prints, in the order of STEP_COLUMNS.
STEP_FIELDS = ("key", "kind", "task", "status", "attempts", "call_id", "task_id", "error", "result")
#: How many days ``prune`` keeps an ended workflow unless told (``cloudtask_prune``'s
#: ``--older-than`` has no default; its documented example is 7d).
DEFAULT_DAYS = 7

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the operation failed (backend error, unavailable); 2 bad usage; "
    "3 workflow not found."
)


class Command(_cli.SubcommandCommand):
    help = (
        "Inspect, revoke, resume and prune the stored workflows (chains, groups and chords "
        "of cloudtask.workflows). " + EXIT_CODES
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="list the workflows, newest first")
        listing.add_argument(
            "--status", default=None, help=f"only those in this state: {', '.join(STATUSES)}"
        )
        listing.add_argument(
            "--limit", type=int, default=50, help="at most N workflows (default 50)"
        )
        _cli.add_json(listing)
        for action, text in (
            ("show", "show a workflow and its steps"),
            ("revoke", "stop a running workflow: no step that has not started will run"),
            ("resume", "push again the queued steps whose Cloud Task is gone"),
        ):
            action_parser = sub.add_parser(action, help=text)
            action_parser.add_argument("id", metavar="ID")
            _cli.add_json(action_parser)
        sub.choices[
            "revoke"
        ].description = "ID is the workflow's id or the call id of one of its steps."
        prune = sub.add_parser(
            "prune", help="delete the workflows that ended longer ago than --days (and steps)"
        )
        prune.add_argument(
            "--days",
            type=int,
            default=DEFAULT_DAYS,
            help=f"keep those that ended in the last N days (default {DEFAULT_DAYS})",
        )
        prune.add_argument(
            "--dry-run", action="store_true", help="count the workflows without deleting them"
        )
        _cli.add_json(prune)

    def handle(self, *args: Any, **options: Any) -> None:
        with _cli.exit_codes(), workflow_errors():
            getattr(self, "do_" + options["action"])(options)

    def do_list(self, options: dict[str, Any]) -> None:
        status, limit = options["status"], options["limit"]
        if status is not None and status not in STATUSES:
            raise CommandError(
                f"--status {status!r} is not a workflow status: use one of {', '.join(STATUSES)}.",
                returncode=_cli.USAGE,
            )
        if limit < 1:
            raise CommandError(
                f"--limit must be 1 or more (e.g. --limit 50), not {limit}.",
                returncode=_cli.USAGE,
            )
        found = Workflow.objects.order_by("-created_at", "-id")
        if status is not None:
            found = found.filter(status=status)
        tasks = Q(steps__kind="task")
        rows = found.annotate(
            steps_total=Count("steps", filter=tasks),
            steps_finished=Count("steps", filter=tasks & Q(steps__status__in=engine.FINISHED)),
        )[:limit]
        value = [
            {
                "id": row.id,
                "status": row.status,
                "description": row.description,
                "created_at": row.created_at,
                "finished_at": row.finished_at,
                "steps_finished": row.steps_finished,
                "steps_total": row.steps_total,
            }
            for row in rows
        ]
        lines = [
            (
                w["id"],
                w["status"],
                f"{w['steps_finished']}/{w['steps_total']}",
                w["created_at"],
                w["finished_at"],
                w["description"],
            )
            for w in value
        ]
        text = _cli.table(COLUMNS, lines) if value else "No workflows" + _where(status) + "."
        self.emit(options, value, text)

    def do_show(self, options: dict[str, Any]) -> None:
        handle = get_workflow(options["id"])
        row, steps = handle.row(), handle.steps()
        fields = ("id", "status", "description", "created_at", "updated_at", "finished_at")
        value: dict[str, Any] = {name: getattr(row, name) for name in fields}
        value.update(result=row.result, error=row.error)
        value["steps"] = [{name: getattr(step, name) for name in STEP_FIELDS} for step in steps]
        items: list[tuple[str, Any]] = [(name, value[name]) for name in fields]
        items += [
            ("error", _line(row.error)),
            ("result", _json(row.result) if row.status == "succeeded" else None),
        ]
        table = [
            (
                *(getattr(step, name) for name in STEP_FIELDS[:6]),
                step.task_id or None,
                _line(step.error),
                _json(step.result) if step.status == "succeeded" else None,
            )
            for step in steps
        ]
        text = _cli.pairs(items) + "\n\n" + _cli.table(STEP_COLUMNS, table)
        self.emit(options, value, text)

    def do_revoke(self, options: dict[str, Any]) -> None:
        from cloudtask.models import WorkflowStep

        given = options["id"]
        revoked = revoke_workflow(given)
        workflow_id = given
        if not Workflow.objects.filter(pk=given).exists():  # a step's call id
            owner = WorkflowStep.objects.filter(call_id=given).values_list("workflow_id", flat=True)
            workflow_id = owner.first() or given
        status = get_workflow(workflow_id).status
        value = {"id": workflow_id, "revoked": revoked, "status": status}
        text = f"Workflow {workflow_id} " + (
            "revoked." if revoked else f"already ended ({status})."
        )
        self.emit(options, value, text)

    def do_resume(self, options: dict[str, Any]) -> None:
        pushed = engine.resume(options["id"])
        text = f"Workflow {options['id']}: {pushed} step(s) pushed again."
        self.emit(options, {"id": options["id"], "pushed": pushed}, text)

    def do_prune(self, options: dict[str, Any]) -> None:
        days = options["days"]
        if days < 0:
            raise CommandError(
                f"--days must be 0 or more (e.g. --days 7), not {days}.", returncode=_cli.USAGE
            )
        cutoff = timezone.now() - timedelta(days=days)
        count = engine.prune(cutoff, dry_run=options["dry_run"])
        when = _cli.iso(cutoff)
        text = (
            f"would delete {count} workflows that ended before {when}"
            if options["dry_run"]
            else f"deleted {count} workflows that ended before {when}"
        )
        value = {"deleted": count, "dry_run": options["dry_run"], "before": cutoff}
        self.emit(options, value, text)


@contextmanager
def workflow_errors() -> Iterator[None]:
    """Turn ``WorkflowNotFound`` into exit code 3, as the other commands' "not found", and
    a database without the workflow tables into exit code 2 saying to migrate."""
    try:
        yield
    except WorkflowNotFound as exc:
        raise CommandError(str(exc), returncode=_cli.NOT_FOUND) from exc
    except DatabaseError as exc:
        missing = _missing_tables()
        if missing:
            raise CommandError(
                f"The workflow tables ({', '.join(missing)}) are not in the database yet: "
                "run python manage.py migrate.",
                returncode=_cli.USAGE,
            ) from exc
        raise


def _missing_tables() -> list[str]:
    from cloudtask.models import WorkflowStep

    try:
        tables = connection.introspection.table_names()
    except DatabaseError:
        return []  # the database cannot tell: the caller's error stands
    return [m._meta.db_table for m in (Workflow, WorkflowStep) if m._meta.db_table not in tables]


def _where(status: str | None) -> str:
    return f" are {status}" if status else " are stored"


def _line(text: str) -> str | None:
    """The first line of an error (a table cell holds one), or None for none."""
    return text.strip().splitlines()[0] if text.strip() else None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
