"""``manage.py cloudtask_tasks list|show|delete|run|registered``."""

from __future__ import annotations

from itertools import islice
from typing import Any

from django.core.management.base import CommandParser

from cloudtask import control
from cloudtask.backends.management import Attempt, TaskInfo, View
from cloudtask.exceptions import InvalidQueueConfig
from cloudtask.registry import registry
from cloudtask.task import Task

from . import _cli

#: ``list`` columns, in this order.
COLUMNS = ("NAME", "STATE", "SCHEDULED", "DISPATCHES", "RESPONSES", "LAST_STATUS", "TASK")
#: ``registered`` columns, in this order.
REGISTERED_COLUMNS = ("NAME", "FUNCTION", "QUEUE", "OPTIONS")


class Command(_cli.SubcommandCommand):
    help = "Inspect and act on the tasks waiting in a queue. " + _cli.EXIT_CODES

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="list the tasks waiting in a queue")
        listing.add_argument("queue", metavar="QUEUE")
        listing.add_argument("--full", action="store_true", help="include headers and body")
        listing.add_argument("--page-size", type=int, default=100, help="tasks per request")
        listing.add_argument("--limit", type=int, default=None, help="stop after N tasks")
        listing.add_argument("--page-token", default="", help="start at this page (see --one-page)")
        listing.add_argument(
            "--one-page",
            action="store_true",
            help="list one page and print the next page's token (to stderr)",
        )
        for action, text in (
            ("show", "show one task"),
            ("delete", "delete one task"),
            ("run", "dispatch one task now"),
        ):
            action_parser = sub.add_parser(action, help=text)
            action_parser.add_argument("queue", metavar="QUEUE")
            action_parser.add_argument("name", metavar="NAME")
            _cli.add_json(action_parser)
        show = sub.choices["show"]
        show.add_argument("--full", action="store_true", help="include headers and body")
        delete = sub.choices["delete"]
        delete.add_argument("--missing-ok", action="store_true", help="exit 0 if it is gone")
        _cli.add_yes(delete)
        _cli.add_json(listing)
        _cli.add_json(sub.add_parser("registered", help="list the registered task functions"))

    def do_list(self, options: dict[str, Any]) -> None:
        view: View = "full" if options["full"] else "basic"
        limit = options["limit"]
        if limit is not None and limit < 0:
            raise InvalidQueueConfig(f"--limit must be 0 or more, not {limit}.")
        found = control.list_tasks(
            options["queue"], view, options["page_size"], page_token=options["page_token"]
        )
        infos = list(islice(found.next_page() if options["one_page"] else found, limit))
        if options["one_page"]:
            self.stderr.write(f"next page token: {found.next_page_token or '(none: last page)'}")
        rows = [
            (i.name, i.state, i.schedule_time, i.dispatch_count, i.response_count, *_tail(i))
            for i in infos
        ]
        self.emit(options, infos, _cli.table(COLUMNS, rows))

    def show(self, options: dict[str, Any], info: TaskInfo) -> None:
        self.emit(options, info, _cli.pairs(_task_items(info)))

    def do_show(self, options: dict[str, Any]) -> None:
        view: View = "full" if options["full"] else "basic"
        self.show(options, control.get_task(options["queue"], options["name"], view))

    def do_delete(self, options: dict[str, Any]) -> None:
        queue, name = options["queue"], options["name"]
        _cli.confirm(f"Delete task {name!r} of queue {queue!r}?", options["yes"], self.stdout)
        deleted = control.delete_task(queue, name, not_found_ok=options["missing_ok"])
        text = f"deleted task {name}" if deleted else f"task {name} was not there"
        self.emit(options, {"queue": queue, "name": name, "deleted": deleted}, text)

    def do_run(self, options: dict[str, Any]) -> None:
        self.show(options, control.run_task(options["queue"], options["name"]))

    def do_registered(self, options: dict[str, Any]) -> None:
        tasks = [registry.get(name) for name in sorted(registry)]
        if options["json"]:
            self.stdout.write(_cli.dumps([_registered(task) for task in tasks]))
            return
        rows = [
            (t.name, t.path, t.queue or "(default)", _options_text(_registered(t)["options"]))
            for t in tasks
        ]
        self.stdout.write(_cli.table(REGISTERED_COLUMNS, rows))


def _tail(info: TaskInfo) -> tuple[str | None, str | None]:
    return _status(info.last_attempt), info.task


def _status(attempt: Attempt | None) -> str | None:
    if attempt is None or attempt.status is None:
        return None
    return (
        attempt.status
        if attempt.http_status is None
        else f"{attempt.status} ({attempt.http_status})"
    )


def _task_items(info: TaskInfo) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = [
        ("name", info.name),
        ("queue", info.queue),
        ("path", info.path),
        ("task", info.task),
        ("state", info.state),
        ("schedule_time", info.schedule_time),
        ("create_time", info.create_time),
        ("dispatch_count", info.dispatch_count),
        ("response_count", info.response_count),
        ("first_attempt", _attempt_text(info.first_attempt)),
        ("last_attempt", _attempt_text(info.last_attempt)),
        ("dispatch_deadline", info.dispatch_deadline),
    ]
    if info.view == "full":
        items += [("method", info.method), ("url", info.url)]
        items += [(f"header {k}", v) for k, v in sorted((info.headers or {}).items())]
        items.append(("body bytes", len(info.body or b"")))
    return items


def _attempt_text(attempt: Attempt | None) -> str | None:
    if attempt is None:
        return None
    when = _cli.iso(attempt.dispatch_time or attempt.schedule_time)
    return f"{when} {_status(attempt) or '-'} {attempt.message}".rstrip()


def _registered(task: Task[Any, Any]) -> dict[str, Any]:
    """Describe a registered task: its options, header names only (values may be secret)."""
    on_failure = task.on_failure
    options = {
        "named": task.named,
        "timeout": task.timeout,
        "max_retries": task.max_retries,
        "retry_for": [f"{e.__module__}.{e.__qualname__}" for e in task.retry_for or ()] or None,
        "on_failure": on_failure if isinstance(on_failure, str | None) else on_failure.name,
        "url": task.url,
        "headers": sorted(task.headers) or None,
        "method": task.method,
        "auth": task.auth,
    }
    return {"name": task.name, "function": task.path, "queue": task.queue, "options": options}


def _options_text(options: dict[str, Any]) -> str:
    """Show the options that differ from the defaults, ``key=value`` separated by spaces."""
    defaults = {"named": False, "method": "POST", "auth": "oidc"}
    shown = [
        f"{key}={','.join(value) if isinstance(value, list) else _cli.cell(value)}"
        for key, value in options.items()
        if value is not None and defaults.get(key, object()) != value
    ]
    return " ".join(shown) or "-"
