"""``manage.py cloudtask_prune --older-than 7d``: delete stored results, and ended workflows,
older than a duration."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

_DURATION_RE = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``12h``, ``7d``, ``2w`` or plain seconds."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise CommandError(
            f"--older-than {text!r} is not a duration: use a number with s, m, h, d or w "
            "(e.g. 7d, 12h, 90m)."
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class Command(BaseCommand):
    help = (
        "Delete stored task results created longer ago than --older-than, and the workflows "
        "(with their steps) that ended longer ago than that; running workflows are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", required=True, help="e.g. 7d, 12h, 90m, 30s or 2w (required)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count the rows without deleting them"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from cloudtask.models import TaskResult
        from cloudtask.workflows import engine

        cutoff = timezone.now() - parse_duration(options["older_than"])
        when = f"{cutoff:%Y-%m-%d %H:%M:%S%z}"
        old = TaskResult.objects.filter(created_at__lt=cutoff)
        if options["dry_run"]:
            self.stdout.write(f"would delete {old.count()} results created before {when}")
            workflows = engine.prune(cutoff, dry_run=True)
            self.stdout.write(f"would delete {workflows} workflows that ended before {when}")
            return
        deleted, _ = old.delete()
        self.stdout.write(f"deleted {deleted} results created before {when}")
        workflows = engine.prune(cutoff)
        self.stdout.write(f"deleted {workflows} workflows that ended before {when}")
