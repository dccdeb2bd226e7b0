"""``manage.py cloudtask_dev``: the development server and a local worker, together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf
from ...backends.loading import get_backend
from ...exceptions import ConfigurationError

DEFAULT_ADDRPORT = "127.0.0.1:8000"
#: Hosts runserver may bind that a delivery to 127.0.0.1 reaches.
_LOOPBACK = {"127.0.0.1", "localhost"}
_ALL_INTERFACES = {"", "0", "0.0.0.0", "::"}  # noqa: S104  (compared with, never bound)
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
        "Without CLOUDTASK['URL'], LocalBackend sends tasks to http://127.0.0.1:8000; to serve "
        "on another address, set CLOUDTASK['URL'] to it. Closing the terminal stops both."
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
        check_address(options["addrport"])
        worker_options = [f"--concurrency={options['concurrency']}"]
        worker_options += [f"--queue={name}" for name in options["queues"] or ()]
        # This interpreter and manage.py, not outside input. In its own session, so Ctrl+C
        # reaches only this process, which then stops the worker with one SIGTERM (finish
        # the deliveries in flight) rather than two (exit at once).
        command = worker_command(*worker_options)
        worker = subprocess.Popen(command, start_new_session=True)  # noqa: S603
        # Closing the terminal hangs up this process; the worker, in its own session, would
        # not hear it and would outlive the terminal. Stop it as Ctrl+C does.
        signal.signal(signal.SIGHUP, _hang_up)
        try:
            call_command("runserver", options["addrport"], use_reloader=options["use_reloader"])
        finally:
            _stop(worker)


def check_address(addrport: str) -> None:
    """Refuse an address the tasks are not sent to: the worker would deliver elsewhere."""
    try:
        target = get_backend().default_url()
    except ConfigurationError:
        return  # a backend that does not deliver over HTTP here (e.g. the Cloud Tasks one)
    url = conf.get("URL") or target
    parts = urlsplit(url)
    if parts.hostname not in _LOOPBACK:
        return  # tasks go to another host on purpose (a tunnel, a shared server)
    host, _, port = addrport.rpartition(":") if ":" in addrport else ("", "", addrport)
    host = host.strip("[]")
    reached = (host in _ALL_INTERFACES or host in _LOOPBACK) and port == str(parts.port or 80)
    if not reached:
        listening = "127.0.0.1" if host in _ALL_INTERFACES else host
        shown = f"[{listening}]:{port}" if ":" in listening else f"{listening}:{port}"
        raise CommandError(
            f"Tasks are sent to {url}, but the server would listen on {addrport}: the "
            f"worker's deliveries would not reach it. Set CLOUDTASK['URL'] = "
            f"'http://{shown}{parts.path}' in your settings, or run cloudtask_dev without "
            "an address."
        )


def _hang_up(signum: int, frame: FrameType | None) -> None:
    # Unwinds runserver without a traceback; the finally clause stops the worker.
    raise SystemExit(128 + signum)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
