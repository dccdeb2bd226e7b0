"""``manage.py cloudtask_queues list|stats|show|create|update|pause|resume|purge|delete|sync``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError, CommandParser

from cloudtask import control
from cloudtask.backends.management import QueueInfo
from cloudtask.control import QueueChange
from cloudtask.queues import OPTIONS

from . import _cli

#: ``list`` columns, in this order.
COLUMNS = ("NAME", "STATE", "TASKS", "MAX_RATE", "MAX_CONCURRENT", "MAX_ATTEMPTS")
#: ``stats`` columns: counts now, then over the window.
STATS_COLUMNS = (
    "NAME",
    "WAITING",
    "RUNNING",
    "RETRYING",
    "SUCCEEDED",
    "FAILED",
    "FAILING",
    "PER_MIN",
    "OLDEST_DUE",
)

_OPTION_HELP: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "max_dispatches_per_second": ("N", float, "tasks dispatched per second at most"),
    "max_concurrent_dispatches": ("N", int, "attempts under way at once at most"),
    "max_attempts": ("N", int, "attempts per task, -1 for unlimited"),
    "max_retry_duration": ("D", _cli.duration, "stop retrying after this long, 0 for no limit"),
    "min_backoff": ("D", _cli.duration, "shortest wait before a retry"),
    "max_backoff": ("D", _cli.duration, "longest wait before a retry"),
    "max_doublings": ("N", int, "times the wait doubles before growing linearly"),
}


class Command(_cli.SubcommandCommand):
    help = (
        "Manage the queues of the configured backend. Durations (D) are seconds or "
        "10s, 5m, 2h, 1d. " + _cli.EXIT_CODES
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        _cli.add_json(sub.add_parser("list", help="list the queues"))
        stats = sub.add_parser(
            "stats", help="each queue's recent activity (the local queue): is anything stuck?"
        )
        stats.add_argument(
            "--minutes", type=float, default=5, help="how far back to look (default 5)"
        )
        _cli.add_json(stats)
        for action, text in (
            ("show", "show one queue and its options"),
            ("create", "create a queue"),
            ("update", "change the given options of a queue"),
            ("pause", "stop dispatching from a queue"),
            ("resume", "dispatch from a queue again"),
            ("purge", "delete every task of a queue"),
            ("delete", "delete a queue and its tasks"),
        ):
            action_parser = sub.add_parser(action, help=text)
            action_parser.add_argument("queue", metavar="QUEUE")
            _cli.add_json(action_parser)
            if action in ("create", "update"):
                self._add_options(action_parser)
            if action in ("purge", "delete"):
                _cli.add_yes(action_parser)
        sync = sub.add_parser("sync", help="make the queues match CLOUDTASK['QUEUES']")
        sync.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
        sync.add_argument("--prune", action="store_true", help="delete undeclared queues")
        sync.add_argument(
            "--check", action="store_true", help="dry run; exit 5 if anything would change"
        )
        _cli.add_json(sync)
        _cli.add_yes(sync)

    def _add_options(self, parser: CommandParser) -> None:
        for option, (metavar, kind, text) in _OPTION_HELP.items():
            assert option in OPTIONS
            flag = "--" + option.replace("_", "-")
            parser.add_argument(flag, dest=option, metavar=metavar, type=kind, help=text)

    def do_list(self, options: dict[str, Any]) -> None:
        queues = control.list_queues()
        rows = [
            (
                q.name,
                q.state,
                q.tasks,
                q.config.max_dispatches_per_second,
                q.config.max_concurrent_dispatches,
                q.config.max_attempts,
            )
            for q in queues
        ]
        self.emit(options, queues, _cli.table(COLUMNS, rows))

    def do_stats(self, options: dict[str, Any]) -> None:
        try:
            stats = control.queue_stats(options["minutes"])
        except ValueError as exc:
            message = str(exc).replace("queue_stats(minutes=...)", "--minutes")
            raise CommandError(message, returncode=_cli.USAGE) from None
        rows = [
            (
                s.name,
                s.waiting,
                s.running,
                s.retrying,
                s.succeeded,
                s.failed,
                s.failing,
                s.per_minute,
                "-" if s.oldest_due_s is None else f"{s.oldest_due_s:.0f}s",
            )
            for s in stats
        ]
        self.emit(options, stats, _cli.table(STATS_COLUMNS, rows))

    def show(self, options: dict[str, Any], info: QueueInfo) -> None:
        items: list[tuple[str, Any]] = [("name", info.name), ("path", info.path)]
        items += [("state", info.state), ("tasks", info.tasks)]
        items += [(option, getattr(info.config, option)) for option in OPTIONS]
        self.emit(options, info, _cli.pairs(items))

    def do_show(self, options: dict[str, Any]) -> None:
        self.show(options, control.get_queue(options["queue"]))

    def do_create(self, options: dict[str, Any]) -> None:
        self.show(options, control.create_queue(options["queue"], **self.given(options)))

    def do_update(self, options: dict[str, Any]) -> None:
        self.show(options, control.update_queue(options["queue"], **self.given(options)))

    def given(self, options: dict[str, Any]) -> dict[str, Any]:
        return {name: options[name] for name in OPTIONS if options.get(name) is not None}

    def do_pause(self, options: dict[str, Any]) -> None:
        self.show(options, control.pause_queue(options["queue"]))

    def do_resume(self, options: dict[str, Any]) -> None:
        self.show(options, control.resume_queue(options["queue"]))

    def do_purge(self, options: dict[str, Any]) -> None:
        queue = control.get_queue(options["queue"]).name
        _cli.confirm(f"Delete every task of queue {queue!r}?", options["yes"], self.stdout)
        self.show(options, control.purge_queue(queue))

    def do_delete(self, options: dict[str, Any]) -> None:
        queue = control.get_queue(options["queue"]).name
        _cli.confirm(f"Delete queue {queue!r} and its tasks?", options["yes"], self.stdout)
        control.delete_queue(queue)
        self.emit(options, {"name": queue, "deleted": True}, f"deleted queue {queue}")

    def do_sync(self, options: dict[str, Any]) -> None:
        dry = options["dry_run"] or options["check"]
        if options["prune"] and not dry:
            plan = control.sync_queues(dry_run=True, prune=True)
            doomed = [change.name for change in plan if change.action == "delete"]
            if doomed:
                question = f"Delete the undeclared queues {', '.join(doomed)}?"
                _cli.confirm(question, options["yes"], self.stdout)
        changes = control.sync_queues(dry_run=dry, prune=options["prune"])
        self.emit(options, changes, sync_text(changes, dry))
        if options["check"] and any(change.action != "unchanged" for change in changes):
            raise CommandError(
                "The queues differ from CLOUDTASK['QUEUES']; run cloudtask_queues sync.",
                returncode=_cli.DRIFT,
            )


def sync_text(changes: list[QueueChange], dry_run: bool) -> str:
    """One line per queue (``ACTION  NAME``), then ``  option: current -> declared``."""
    lines = ["(dry run: nothing changed)"] if dry_run else []
    for change in changes:
        lines.append(f"{change.action:<9}  {change.name}")
        for option, (current, declared) in change.changes.items():
            lines.append(f"    {option}: {_cli.cell(current)} -> {_cli.cell(declared)}")
    return "\n".join(lines)
