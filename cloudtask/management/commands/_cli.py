"""What the queue and task commands share: tables, JSON, confirmation and exit codes.

Django does not load command modules whose name starts with an underscore, so this module
is not a command of its own.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import DatabaseError

from cloudtask.backends.local.store import require_tables
from cloudtask.exceptions import (
    CloudTaskError,
    InvalidQueueConfig,
    ManagementNotSupported,
    QueueNotFound,
    ScheduleNotFound,
    TaskNotFound,
)

OK, FAILED, USAGE, NOT_FOUND, NOT_CONFIRMED, DRIFT = 0, 1, 2, 3, 4, 5

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the operation failed (backend error, permission, unavailable); "
    "2 bad usage or invalid queue configuration; 3 queue or task not found; "
    "4 not confirmed; 5 sync --check found drift."
)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """Parse ``0.5``, ``10s``, ``5m``, ``2h`` or ``1d`` (argparse type)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


duration.__name__ = "duration"  # argparse names the type in its error message


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turn the library's errors into ``CommandError`` with the documented exit code."""
    try:
        yield
    except (QueueNotFound, TaskNotFound, ScheduleNotFound) as exc:
        raise CommandError(str(exc), returncode=NOT_FOUND) from exc
    except (InvalidQueueConfig, ManagementNotSupported, ImproperlyConfigured) as exc:
        raise CommandError(str(exc), returncode=USAGE) from exc
    except DatabaseError as exc:
        try:
            require_tables()  # before migrate: say so, not "no such table"
        except ImproperlyConfigured as missing:
            raise CommandError(str(missing), returncode=USAGE) from exc
        raise
    except (CloudTaskError, PermissionError, OSError) as exc:
        raise CommandError(str(exc), returncode=FAILED) from exc


def add_json(parser: CommandParser) -> None:
    """Add ``--json`` to a subcommand."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_yes(parser: CommandParser) -> None:
    """Add ``--yes`` to a destructive subcommand."""
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def confirm(question: str, yes: bool, stdout: OutputWrapper) -> None:
    """Ask ``question [y/N]`` on the terminal; exit 4 unless answered yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(
            f"{question} Refusing without confirmation: stdin is not a terminal. "
            "Pass --yes to confirm.",
            returncode=NOT_CONFIRMED,
        )
    stdout.write(f"{question} [y/N] ", ending="")
    stdout.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CommandError("Not confirmed; nothing was changed.", returncode=NOT_CONFIRMED)


def iso(value: datetime | None) -> str:
    """Format a time as ISO-8601 UTC to the second, or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def cell(value: Any) -> str:
    """Format one table cell."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render a header row and rows, left-aligned, columns two spaces apart."""
    texts = [list(columns), *([cell(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in texts) for i in range(len(columns))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
        for line in texts
    ]
    return "\n".join(line.rstrip() for line in lines)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """Render ``key: value`` lines with the keys aligned (the ``show`` layout)."""
    width = max(len(key) for key, _ in items)
    return "\n".join(f"{key + ':':<{width + 1}} {cell(value)}".rstrip() for key, value in items)


def jsonable(value: Any) -> Any:
    """Turn our dataclasses into plain JSON values (``raw`` dropped, bytes in base64)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "raw"
        }
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def dumps(value: Any) -> str:
    """Serialize ``value`` for ``--json`` output."""
    return json.dumps(jsonable(value), indent=2, sort_keys=False)


class SubcommandCommand(BaseCommand):
    """A command whose subcommand ``X`` runs ``do_X(options)`` with the documented exit codes."""

    def handle(self, *args: Any, **options: Any) -> None:
        with exit_codes():
            getattr(self, "do_" + options["action"])(options)

    def emit(self, options: dict[str, Any], value: Any, text: str) -> None:
        """Print ``value`` as JSON with ``--json``, else ``text``."""
        self.stdout.write(dumps(value) if options["json"] else text)
