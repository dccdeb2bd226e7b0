"""``manage.py cloudtask_tasks``: exact table columns, JSON shapes and exit codes (local queue)."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from freezegun import freeze_time

from cloudtask import conf
from cloudtask.management.commands.cloudtask_dev import check_address
from cloudtask.models import LocalTask
from cloudtask.registry import registry
from cloudtask.task import TaskCall
from tests import tasks
from tests.support import helpers

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED = "http://127.0.0.1:9/_tasks/"  # the discard port: nothing listens
LATER = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def push(call: TaskCall[Any], name: str) -> None:
    """Push ``call`` as ``name``, due at ``LATER`` (a fixed time in the future)."""
    with freeze_time(LATER - timedelta(days=1)):
        call.schedule(at=LATER, name=name)


@pytest.fixture(autouse=True)
def local() -> Iterator[None]:
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": CLOSED}):
        yield


run = helpers.run_command
exit_code = helpers.command_exit


def test_list_prints_a_fixed_table() -> None:
    push(tasks.add(1, 2), "first")
    push(tasks.add(3, 4), "second")
    assert run("cloudtask_tasks", "list", "default").splitlines() == [
        "NAME    STATE   SCHEDULED                  DISPATCHES  RESPONSES  LAST_STATUS  TASK",
        "first   queued  2030-01-02T03:04:05+00:00  0           0          -            tests.tasks.add",
        "second  queued  2030-01-02T03:04:05+00:00  0           0          -            tests.tasks.add",
    ]
    limited = run("cloudtask_tasks", "list", "default", "--limit", "1", "--page-size", "1")
    assert [line.split()[0] for line in limited.splitlines()] == ["NAME", "first"]
    assert run("cloudtask_tasks", "list", "default", "--limit", "0").splitlines() == [
        "NAME  STATE  SCHEDULED  DISPATCHES  RESPONSES  LAST_STATUS  TASK"
    ]


def test_list_one_page_at_a_time() -> None:
    for name in ("first", "second", "third"):
        push(tasks.add(1, 2), name)
    err = io.StringIO()
    out = io.StringIO()
    call_command(
        "cloudtask_tasks",
        "list",
        "default",
        "--one-page",
        "--page-size",
        "2",
        stdout=out,
        stderr=err,
    )
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["NAME", "first", "second"]
    token = err.getvalue().strip().removeprefix("next page token: ")
    rest = run("cloudtask_tasks", "list", "default", "--page-token", token, "--one-page")
    assert [line.split()[0] for line in rest.splitlines()] == ["NAME", "third"]


def test_list_full_json_redacts_and_encodes() -> None:
    push(tasks.send_email(to="a@example.com"), "mail-1")
    [info] = json.loads(run("cloudtask_tasks", "list", "emails", "--full", "--json"))
    assert info["headers"]["X-CloudTask-Signature"] == "(redacted)"
    assert info["headers"]["X-Tenant"] == "acme"
    body = json.loads(base64.b64decode(info["body"]))
    assert (body["task"], body["kwargs"]) == ("tests.tasks.send_email", {"to": "a@example.com"})
    assert set(info) == {
        "name", "queue", "path", "state", "schedule_time", "create_time", "dispatch_count",
        "response_count", "first_attempt", "last_attempt", "task", "view", "method", "url",
        "headers", "body", "dispatch_deadline",
    }  # fmt: skip
    assert info["schedule_time"] == "2030-01-02T03:04:05.678000+00:00"


def test_show() -> None:
    push(tasks.add(1, 2), "first")
    lines = run("cloudtask_tasks", "show", "default", "first").splitlines()
    assert lines[:6] == [
        "name:              first",
        "queue:             default",
        "path:              local/queues/default/tasks/first",
        "task:              tests.tasks.add",
        "state:             queued",
        "schedule_time:     2030-01-02T03:04:05+00:00",
    ]
    full = run("cloudtask_tasks", "show", "default", "first", "--full")
    assert "header X-CloudTask-Signature: (redacted)" in full
    assert json.loads(run("cloudtask_tasks", "show", "default", "first", "--json"))["body"] is None


def test_errors_map_to_exit_codes() -> None:
    push(tasks.add(1, 2), "first")
    assert exit_code("cloudtask_tasks", "show", "nope", "first")[0] == 3
    code, message = exit_code("cloudtask_tasks", "show", "default", "gone")
    assert code == 3
    assert "gone" in message
    assert exit_code("cloudtask_tasks", "list", "default", "--page-size", "0")[0] == 2
    assert exit_code("cloudtask_tasks", "list", "default", "--limit", "-1") == (
        2,
        "--limit must be 0 or more, not -1.",
    )
    assert exit_code("cloudtask_tasks", "show", "default", "bad name")[0] == 2


def test_delete_needs_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    push(tasks.add(1, 2), "first")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert exit_code("cloudtask_tasks", "delete", "default", "first")[0] == 4
    assert LocalTask.objects.count() == 1
    out = json.loads(run("cloudtask_tasks", "delete", "default", "first", "--yes", "--json"))
    assert out == {"queue": "default", "name": "first", "deleted": True}
    assert exit_code("cloudtask_tasks", "delete", "default", "first", "--yes")[0] == 3
    again = run("cloudtask_tasks", "delete", "default", "first", "--yes", "--missing-ok")
    assert again == "task first was not there\n"


def test_run_dispatches_now() -> None:
    push(tasks.add(1, 2), "first")
    info = json.loads(run("cloudtask_tasks", "run", "default", "first", "--json"))
    assert (info["name"], info["queue"], info["task"]) == ("first", "default", "tests.tasks.add")
    # The local queue moves the task's schedule to now so the worker takes it at once.
    assert datetime.fromisoformat(info["schedule_time"]) < LATER - timedelta(days=365)
    assert exit_code("cloudtask_tasks", "run", "default", "nope")[0] == 3


def test_registered() -> None:
    lines = run("cloudtask_tasks", "registered").splitlines()
    assert lines[0].split() == ["NAME", "FUNCTION", "QUEUE", "OPTIONS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["tests.tasks.send_email"] == [
        "tests.tasks.send_email",
        "emails",
        "headers=X-Tenant",
    ]
    assert rows["tests.tasks.noop"] == ["tests.tasks.noop", "(default)", "-"]
    assert rows["tests.tasks.with_deadline"][1:] == ["reports", "timeout=120s"]
    entries = {e["name"]: e for e in json.loads(run("cloudtask_tasks", "registered", "--json"))}
    assert entries["tests.tasks.retries_connection_errors_only"]["options"] == {
        "named": False,
        "timeout": None,
        "max_retries": None,
        "retry_for": ["builtins.ConnectionError"],
        "on_failure": "tests.tasks.record_failure",
        "url": None,
        "headers": None,
        "method": "POST",
        "auth": "oidc",
    }
    assert len(entries) == len(registry)


@pytest.mark.parametrize(
    ("cloudtask", "addrport"),
    [
        ({"BACKEND": "cloudtask.backends.local.LocalBackend"}, "127.0.0.1:8000"),
        ({"BACKEND": "cloudtask.backends.local.LocalBackend"}, "8000"),
        ({"BACKEND": "cloudtask.backends.local.LocalBackend"}, "0.0.0.0:8000"),
        ({"BACKEND": "cloudtask.backends.local.LocalBackend"}, "localhost:8000"),
        (
            {
                "BACKEND": "cloudtask.backends.local.LocalBackend",
                "URL": "http://127.0.0.1:8002/_tasks/",
            },
            "8002",
        ),
        (
            {
                "BACKEND": "cloudtask.backends.local.LocalBackend",
                "URL": "https://dev.example.com/_tasks/",
            },
            "8002",
        ),
    ],
)
def test_cloudtask_dev_accepts_an_address_the_tasks_reach(cloudtask: Any, addrport: str) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        check_address(addrport)


@pytest.mark.parametrize(
    ("addrport", "fix"),
    [
        ("8002", "127.0.0.1:8002"),
        ("127.0.0.1:8002", "127.0.0.1:8002"),
        ("0.0.0.0:9000", "127.0.0.1:9000"),
        ("[::1]:8000", "[::1]:8000"),
    ],
)
def test_cloudtask_dev_refuses_an_address_the_tasks_do_not_reach(addrport: str, fix: str) -> None:
    local = {"BACKEND": "cloudtask.backends.local.LocalBackend"}
    with override_settings(CLOUDTASK=local), pytest.raises(CommandError) as excinfo:
        check_address(addrport)
    assert str(excinfo.value) == (
        f"Tasks are sent to http://127.0.0.1:8000/_tasks/, but the server would listen on "
        f"{addrport}: the worker's deliveries would not reach it. Set CLOUDTASK['URL'] = "
        f"'http://{fix}/_tasks/' in your settings, or run cloudtask_dev without an address."
    )
