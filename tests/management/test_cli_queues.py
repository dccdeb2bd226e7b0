"""``manage.py cloudtask_queues``: exact table columns, JSON shapes and exit codes (local queue)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError
from django.test import override_settings

import cloudtask
from cloudtask import conf
from tests import tasks
from tests.support import REPO_ROOT, helpers

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = REPO_ROOT
CLOSED = "http://127.0.0.1:9/_tasks/"  # the discard port: nothing listens


def settings(**extra: Any) -> dict[str, Any]:
    return {"BACKEND": conf.LOCAL_BACKEND, "URL": CLOSED, **extra}


@pytest.fixture(autouse=True)
def local() -> Iterator[None]:
    with override_settings(CLOUDTASK=settings(QUEUES={"emails": {"max_attempts": 5}})):
        yield


run = helpers.run_command
exit_code = helpers.command_exit


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_list_prints_a_fixed_table() -> None:
    tasks.add(1, 2).delay()
    cloudtask.create_queue("emails", max_attempts=5, max_dispatches_per_second=2.5)
    assert run("cloudtask_queues", "list").splitlines() == [
        "NAME     STATE    TASKS  MAX_RATE  MAX_CONCURRENT  MAX_ATTEMPTS",
        "default  running  1      500       1000            100",
        "emails   running  0      2.5       1000            5",
    ]


def test_list_json() -> None:
    cloudtask.create_queue("emails", min_backoff=2)
    [queue] = json.loads(run("cloudtask_queues", "list", "--json"))
    assert queue == {
        "name": "emails",
        "path": "local/queues/emails",
        "state": "running",
        "config": {
            "name": "emails",
            "max_dispatches_per_second": 500.0,
            "max_concurrent_dispatches": 1000,
            "max_attempts": 100,
            "max_retry_duration": 0.0,
            "min_backoff": 2.0,
            "max_backoff": 3600.0,
            "max_doublings": 16,
        },
        "tasks": 0,
    }


def test_create_show_update_pause_resume() -> None:
    out = run("cloudtask_queues", "create", "jobs", "--max-attempts", "7", "--min-backoff", "5m")
    assert out.splitlines() == [
        "name:                      jobs",
        "path:                      local/queues/jobs",
        "state:                     running",
        "tasks:                     0",
        "max_dispatches_per_second: 500",
        "max_concurrent_dispatches: 1000",
        "max_attempts:              7",
        "max_retry_duration:        0s",
        "min_backoff:               300s",
        "max_backoff:               3600s",
        "max_doublings:             16",
    ]
    shown = json.loads(run("cloudtask_queues", "update", "jobs", "--max-backoff", "1h", "--json"))
    assert shown["config"]["max_attempts"] == 7  # untouched
    assert shown["config"]["max_backoff"] == 3600.0
    assert json.loads(run("cloudtask_queues", "pause", "jobs", "--json"))["state"] == "paused"
    assert "state:                     running" in run("cloudtask_queues", "resume", "jobs")
    assert cloudtask.get_queue("jobs").config.min_backoff.total_seconds() == 300


def test_errors_map_to_exit_codes() -> None:
    code, message = exit_code("cloudtask_queues", "show", "nope")
    assert code == 3
    assert message == (
        "The queue local/queues/nope does not exist. "
        "List the queues with manage.py cloudtask_queues list."
    )
    cloudtask.create_queue("jobs")
    assert exit_code("cloudtask_queues", "create", "jobs")[0] == 1  # QueueAlreadyExists
    code, message = exit_code("cloudtask_queues", "create", "bad", "--max-attempts", "0")
    assert code == 2
    assert "max_attempts" in message
    assert exit_code("cloudtask_queues", "update", "jobs")[0] == 2  # nothing to change
    assert exit_code("cloudtask_queues", "show", "Bad_Name!")[0] == 2


def test_not_supported_on_the_immediate_backend() -> None:
    with override_settings(CLOUDTASK={"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}):
        code, message = exit_code("cloudtask_queues", "list")
    assert code == 2
    assert "Immediate" in message


def test_destructive_actions_refuse_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks.add(1, 2).delay()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, message = exit_code("cloudtask_queues", "purge", "default")
    assert code == 4
    assert message == (
        "Delete every task of queue 'default'? Refusing without confirmation: stdin is not "
        "a terminal. Pass --yes to confirm."
    )
    assert exit_code("cloudtask_queues", "delete", "default")[0] == 4
    assert cloudtask.get_queue("default").tasks == 1


def test_confirmation_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks.add(1, 2).delay()
    monkeypatch.setattr(sys, "stdin", TTY("n\n"))
    assert exit_code("cloudtask_queues", "purge", "default") == (
        4,
        "Not confirmed; nothing was changed.",
    )
    monkeypatch.setattr(sys, "stdin", TTY("y\n"))
    out = run("cloudtask_queues", "purge", "default")
    assert out.startswith("Delete every task of queue 'default'? [y/N] name:")
    assert cloudtask.get_queue("default").tasks == 0


def test_delete_with_yes() -> None:
    cloudtask.create_queue("jobs")
    out = json.loads(run("cloudtask_queues", "delete", "jobs", "--yes", "--json"))
    assert out == {"name": "jobs", "deleted": True}
    assert exit_code("cloudtask_queues", "show", "jobs")[0] == 3


def test_sync_dry_run_check_and_prune() -> None:
    cloudtask.create_queue("emails", max_attempts=9)
    cloudtask.create_queue("old")
    expected = [
        "(dry run: nothing changed)",
        "create     default",
        "update     emails",
        "    max_attempts: 9 -> 5",
        "create     reports",
    ]
    assert run("cloudtask_queues", "sync", "--dry-run").splitlines() == expected
    code, message = exit_code("cloudtask_queues", "sync", "--check")
    assert (code, message) == (
        5,
        "The queues differ from CLOUDTASK['QUEUES']; run cloudtask_queues sync.",
    )
    with pytest.raises(CommandError) as caught:
        run("cloudtask_queues", "sync", "--prune")  # stdin is not a terminal under pytest
    assert caught.value.returncode == 4
    changes = json.loads(run("cloudtask_queues", "sync", "--prune", "--yes", "--json"))
    assert [(c["name"], c["action"]) for c in changes] == [
        ("default", "create"),
        ("emails", "update"),
        ("reports", "create"),
        ("old", "delete"),
    ]
    assert changes[1]["changes"] == {"max_attempts": [9, 5]}
    assert run("cloudtask_queues", "sync", "--check").splitlines()[1:] == [
        "unchanged  default",
        "unchanged  emails",
        "unchanged  reports",
    ]


SCRIPT = """
import sys
import django
from django.conf import settings
import tests.settings as base

db, url, *argv = sys.argv[1:]
options = {key: getattr(base, key) for key in dir(base) if key.isupper()}
options["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}}
options["CLOUDTASK"] = {"BACKEND": "cloudtask.backends.local.LocalBackend", "URL": url}
settings.configure(**options)
django.setup()
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *argv])
"""


@pytest.mark.slow
def test_real_process_exit_codes(tmp_path: Path) -> None:
    db = str(tmp_path / "db.sqlite3")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", SCRIPT, db, CLOSED, *argv],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    created = manage("cloudtask_queues", "create", "jobs", "--json")
    assert (created.returncode, json.loads(created.stdout)["name"]) == (0, "jobs")
    missing = manage("cloudtask_queues", "show", "nope")
    assert missing.returncode == 3
    assert "The queue local/queues/nope does not exist." in missing.stderr
    assert manage("cloudtask_queues", "purge", "jobs").returncode == 4
    assert manage("cloudtask_queues", "create", "x", "--max-attempts", "many").returncode == 2
    assert manage("cloudtask_queues", "sync", "--check").returncode == 5
