"""Worker processes in tests: a script that configures Django and plays one role.

The workers run in subprocesses on their own database (a SQLite file, or a PostgreSQL
server); they deliver to a server of the test process (live_server or a scripted one), so
deliveries are counted on the receiving side.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import REPO_ROOT

ROOT = REPO_ROOT

# Configures Django like tests.settings but on a SQLite file, then plays one role.
SCRIPT = """
import json, os, sys
from datetime import timedelta
import django
from django.conf import settings
import tests.settings as base

db, role, *args = sys.argv[1:]
options = {key: getattr(base, key) for key in dir(base) if key.isupper()}
if os.environ.get("TEST_DATABASE"):  # another database (PostgreSQL): its settings
    options["DATABASES"] = {"default": json.loads(os.environ["TEST_DATABASE"])}
else:
    options["DATABASES"] = {"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": db,
        "OPTIONS": json.loads(os.environ["TEST_SQLITE_OPTIONS"]),
    }}
options["CLOUDTASK"] = json.loads(os.environ["TEST_CLOUDTASK"])
settings.configure(**options)
django.setup()
from django.core.management import call_command
from cloudtask.models import LocalTask
from tests import tasks

if role == "push":
    call_command("migrate", verbosity=0)
    task, count, kwargs = getattr(tasks, args[0]), int(args[1]), json.loads(args[2])
    for n in range(count):
        task(**{key: (n if value == "$n" else value) for key, value in kwargs.items()}).delay()
    # The lease is the dispatch deadline plus a grace; Cloud Tasks' 15 s floor would make
    # this test wait 20 s, so the stored deadline is shortened directly. Only when asked: on
    # PostgreSQL an UPDATE of every row while workers record theirs can deadlock with them.
    if float(args[3]) != 600:
        LocalTask.objects.update(dispatch_deadline=timedelta(seconds=float(args[3])))
elif role == "show":
    rows = LocalTask.objects.values(
        "status",
        "dispatch_count",
        "response_count",
        "execution_count",
        "last_response_status",
        "lease_token",
        "lease_expires",
    )
    print(json.dumps(list(rows), default=str))
elif role == "command":  # any command, on a database that may not be migrated
    call_command(*args)
elif role == "exec":  # Python code, on a database that may not be migrated
    exec(args[0])
else:
    call_command("cloudtask_worker", *args)
"""


class Project:
    """Runs the script's roles against one SQLite file, or the ``database`` given."""

    def __init__(self, db: Path, url: str, database: dict[str, Any] | None = None) -> None:
        self.db = db
        self.env = {
            **os.environ,
            "TEST_CLOUDTASK": json.dumps(
                {"BACKEND": "cloudtask.backends.local.LocalBackend", "URL": url}
            ),
            "PYTHONPATH": str(ROOT),
            # A worker stuck past a test's patience is ended with SIGABRT: its threads' stacks.
            "PYTHONFAULTHANDLER": "1",
            # The recommended options; tests of Django's defaults set {}.
            "TEST_SQLITE_OPTIONS": json.dumps(
                {"init_command": "PRAGMA journal_mode=WAL", "timeout": 30}
            ),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        if database is not None:
            self.env["TEST_DATABASE"] = json.dumps(database)

    def command(self, role: str, *args: str) -> list[str]:
        return [sys.executable, "-c", SCRIPT, str(self.db), role, *args]

    def run(self, role: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(role, *args),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, role: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(role, *args),
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def push(self, task: str, count: int, kwargs: dict[str, Any], deadline: float = 600) -> None:
        done = self.run("push", task, str(count), json.dumps(kwargs), str(deadline))
        assert done.returncode == 0, done.stderr

    def show(self) -> list[dict[str, Any]]:
        done = self.run("show")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def summary(stdout: str) -> dict[str, int]:
    line = [line for line in stdout.splitlines() if " dispatched=" in line][-1]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)(?:\s|$)", line)}
