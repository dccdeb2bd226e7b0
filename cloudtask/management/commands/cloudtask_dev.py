"""``manage.py cloudtask_dev``: the development server and a local worker, together."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

DEFAULT_ADDRPORT = "127.0.0.1:8000"
#: How long the worker may take to finish its in-flight deliveries when the server stops.
STOP_TIMEOUT = 30


def worker_command(*options: str) -> list[str]:
    """Return the command line running ``cloudtask_worker`` in this same project."""
    script = sys.argv[0]
    if script.endswith(".py") and os.path.basename(script) != "__main__.py":
        return [sys.executable, script, "cloudtask_worker", *options]
    return [
        sys.executable,
        "-m",
        "django",
        "cloudtask_worker",
        f"--settings={settings.SETTINGS_MODULE}",
        *options,
    ]


class Command(BaseCommand):
    help = (
        "Run the development server and a cloudtask_worker next to it, so pushed tasks run. "
        "Without CLOUDTASK['URL'], LocalBackend sends tasks to http://127.0.0.1:8000."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default=DEFAULT_ADDRPORT)
        parser.add_argument("--noreload", action="store_false", dest="use_reloader")
        parser.add_argument("--concurrency", type=int, default=10)
        parser.add_argument("--queue", action="append", dest="queues", metavar="NAME")

    def handle(self, *args: Any, **options: Any) -> None:
        # runserver's reloader re-runs this command in a child with RUN_MAIN set; only the
        # outer process starts the worker, so reloads do not multiply workers.
        if os.environ.get("RUN_MAIN") == "true":
            call_command("runserver", options["addrport"], use_reloader=options["use_reloader"])
            return
        worker_options = [f"--concurrency={options['concurrency']}"]
        worker_options += [f"--queue={name}" for name in options["queues"] or ()]
        # This interpreter and manage.py, not outside input. In its own session, so Ctrl+C
        # reaches only this process, which then stops the worker with one SIGTERM (finish
        # the deliveries in flight) rather than two (exit at once).
        command = worker_command(*worker_options)
        worker = subprocess.Popen(command, start_new_session=True)  # noqa: S603
        try:
            call_command("runserver", options["addrport"], use_reloader=options["use_reloader"])
        finally:
            _stop(worker)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
