"""``manage.py cloudtask_worker``: deliver the local queue's tasks over HTTP."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf, queues
from ...backends.local.claims import awaiting_retry
from ...backends.local.store import require_tables
from ...backends.local.worker import Worker
from ...exceptions import ConfigurationError
from ...schedules.local import Firing


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Deliver tasks stored by LocalBackend to the task endpoint over HTTP, with Cloud Tasks' "
        "headers, retries and queue limits. Ctrl+C once finishes in-flight work; twice exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="Only deliver this queue (repeatable; default: every queue).",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            default=10,
            help="How many deliveries may be in flight at once (default 10).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Deliver every due task, then exit: 0 if none failed or awaits a retry, else 1.",
        )
        parser.add_argument(
            "--poll-interval",
            type=_positive_float,
            default=0.5,
            help="Seconds between looks at the database when idle (default 0.5).",
        )
        parser.add_argument(
            "--no-schedules",
            action="store_false",
            dest="schedules",
            help="Do not fire periodic tasks (another worker does; several may, each due "
            "time is fired once).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            queues.configured()
            for name in options["queues"] or ():
                conf.check_queue_name(name, "The --queue option")
            require_tables()
        except (ConfigurationError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        verbosity = options["verbosity"]
        worker = Worker(
            queues=options["queues"],
            concurrency=options["concurrency"],
            poll_interval=options["poll_interval"],
            log=self._writer(verbosity),
            tick=Firing() if options["schedules"] else None,
        )
        # Before the first line: whoever waits for that line may signal at once.
        restore = worker.install_signal_handlers()
        if verbosity:
            mode = "burst" if options["burst"] else "watching"
            served = ",".join(worker.queues or ["*"])
            self._line(f"cloudtask_worker mode={mode} queues={served} pid={os.getpid()}")
        try:
            summary = worker.run(burst=options["burst"])
        finally:
            restore()
        self._line(f"cloudtask_worker {summary.line()}")
        if worker.in_flight:
            # Second signal: leave at once; leases hand unfinished tasks to the next worker.
            os._exit(130)
        if options["burst"] and (summary.failed or awaiting_retry(worker.queues)):
            sys.exit(1)

    def _line(self, line: str) -> None:
        # Flushed at once: under a process manager stdout is a pipe, which Python buffers.
        self.stdout.write(line)
        self.stdout.flush()

    def _writer(self, verbosity: int) -> Any:
        def write(line: str) -> None:
            if verbosity >= 1:
                self._line(line)

        return write
