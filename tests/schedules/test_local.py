"""Periodic tasks in development: the local worker fires each due time once, from the database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import override_settings
from freezegun import freeze_time

from cloudtask import conf
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalTask, TaskResult
from cloudtask.models import Schedule as Row
from cloudtask.schedules import local
from cloudtask.schedules.manage import list_schedules, run_schedule
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import command_exit, run_command
from tests.support.worker import ScriptedServer, drain

pytestmark = pytest.mark.django_db

NIGHTLY = {"task": "tests.tasks.periodic_report", "cron": "0 3 * * *", "kwargs": {"full": True}}
UTC = timezone.utc


def settings(url: str = "http://127.0.0.1:9/_tasks/", **schedules: Any) -> Any:
    return override_settings(
        CLOUDTASK={
            "BACKEND": conf.LOCAL_BACKEND,
            "URL": url,
            "SCHEDULES": schedules or {"nightly": NIGHTLY},
        }
    )


def pushed_call_ids() -> list[str]:
    return [json.loads(bytes(row.body))["id"] for row in LocalTask.objects.order_by("id")]


def test_sync_mirrors_the_declarations_in_rows() -> None:
    with settings(), freeze_time("2026-12-02 12:00:00"):
        changes = local.sync()
        assert [(c.name, c.action) for c in changes] == [("nightly", "create")]
        row = Row.objects.get()
        assert (row.task, row.cron, row.time_zone, row.kwargs) == (
            "tests.tasks.periodic_report",
            "0 3 * * *",
            "UTC",
            {"full": True},
        )
        assert row.next_run == datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
        assert [c.action for c in local.sync()] == ["unchanged"]
        assert [c.action for c in local.sync(dry_run=True)] == ["unchanged"]
    changed = {**NIGHTLY, "cron": "30 4 * * *", "time_zone": "Europe/Zurich"}
    with settings(nightly=changed), freeze_time("2026-12-02 12:00:00"):
        [change] = local.sync()
        assert (change.action, change.fields) == ("update", ("cron", "time_zone"))
        # 04:30 in Zurich (UTC+1 in December).
        assert Row.objects.get().next_run == datetime(2026, 12, 3, 3, 30, tzinfo=UTC)
    with settings(other={**NIGHTLY, "paused": True}):
        changes = local.sync()
        assert sorted((c.name, c.action) for c in changes) == [
            ("nightly", "delete"),
            ("other", "create"),
        ]
        assert Row.objects.get().paused


def test_each_due_time_is_fired_once_and_downtime_is_caught_up_once() -> None:
    with settings():
        with freeze_time("2026-12-02 12:00:00"):
            local.sync()
            assert local.fire_due() == 0  # not due before 03:00 tomorrow
        with freeze_time("2026-12-03 03:00:00"):
            assert local.fire_due() == 1
            assert local.fire_due() == 0  # this due time is taken
        # Three days without a worker: the missed runs make one run, then the cron resumes.
        with freeze_time("2026-12-06 10:00:00"):
            assert local.fire_due() == 1
            assert local.fire_due() == 0
            assert Row.objects.get().next_run == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert pushed_call_ids() == ["nightly.20261203T030000Z", "nightly.20261204T030000Z"]
    row = Row.objects.get()
    assert row.last_run == datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    assert row.last_call_id == "nightly.20261204T030000Z"


def test_a_paused_schedule_is_not_fired_and_resumes_from_its_next_due_time() -> None:
    with settings():
        with freeze_time("2026-12-02 12:00:00"):
            local.sync()
            local.pause("nightly")
        with freeze_time("2026-12-05 12:00:00"):
            assert local.fire_due() == 0
            local.resume("nightly")  # the runs missed while paused are not made up
            assert local.fire_due() == 0
            assert Row.objects.get().next_run == datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
            # A manual pause survives a sync of an unpaused declaration.
            local.pause("nightly")
            local.sync()
            assert Row.objects.get().paused
    assert pushed_call_ids() == []


def test_a_push_that_fails_for_good_skips_the_run_and_keeps_the_cron(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with settings(), freeze_time("2026-12-02 12:00:00"):
        local.sync()
    broken = {**NIGHTLY, "kwargs": {"full": True}}
    with settings(nightly=broken), freeze_time("2026-12-03 03:00:00"):
        Row.objects.update(kwargs={"colour": "red"})  # what the row says is not used
        assert local.fire_due() == 1
    with settings(), freeze_time("2026-12-04 03:00:00"):
        too_small = {**conf.user_settings(), "MAX_BODY_SIZE": 10}
        with override_settings(CLOUDTASK=too_small):
            assert local.fire_due() == 0  # the body can never fit: this run cannot be made
        assert "status=fire-failed" in caplog.text
        assert Row.objects.get().next_run == datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert pushed_call_ids() == ["nightly.20261203T030000Z"]


def test_the_worker_fires_due_schedules_and_delivers_them_over_http() -> None:
    server = ScriptedServer()
    # The run fell due a moment ago, and the worker's clock is a little ahead of the real one,
    # which the pushed task's schedule time comes from: the task is due to the worker too.
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    clock = [due + timedelta(seconds=10)]
    try:
        with settings(server.url), freeze_time("2026-12-02 12:00:00"):
            local.sync()
        Row.objects.update(next_run=due)
        with settings(server.url):
            worker = Worker(clock=lambda: clock[0], tick=local.Firing(), poll_interval=0.05)
            drain(worker)
    finally:
        server.close()
    [request] = server.requests
    body = json.loads(request["body"])
    assert (body["task"], body["id"], body["kwargs"]) == (
        "tests.tasks.periodic_report",
        f"nightly.{due:%Y%m%dT%H%M%SZ}",
        {"full": True},
    )


@pytest.mark.django_db(transaction=True)
def test_the_task_runs_through_the_real_endpoint_with_its_arguments(task_endpoint: str) -> None:
    with settings(task_endpoint), freeze_time("2026-12-02 12:00:00"):
        local.sync()
    with settings(task_endpoint):
        cloudtask = {**conf.user_settings(), "RESULTS": True}
        with override_settings(CLOUDTASK=cloudtask):
            Row.objects.update(next_run=datetime.now(UTC) - timedelta(seconds=5))
            worker = Worker(tick=local.Firing(), poll_interval=0.05)
            drain(worker)
    [(name, (call_id, label, full))] = tasks.calls
    assert (name, label, full) == ("periodic_report", "daily", True)
    assert call_id == Row.objects.get().last_call_id
    assert TaskResult.objects.get(call_id=call_id).status == "succeeded"
    assert list(local.history("nightly").values_list("call_id", flat=True)) == [call_id]


def test_run_now_goes_through_the_configured_backend() -> None:
    with (
        override_settings(CLOUDTASK={"SCHEDULES": {"nightly": NIGHTLY}}),
        capture_tasks() as captured,
    ):
        call_id = run_schedule("nightly")
        assert call_id.startswith("nightly.")
        [pushed] = captured
        assert pushed.kwargs == {"full": True}
        captured.run_all()
    assert tasks.calls == [("periodic_report", (call_id, "daily", True))]


def test_the_commands_work_on_the_local_worker() -> None:
    with settings(), freeze_time("2026-12-02 12:00:00"):
        assert command_exit("cloudtask_schedules", "sync", "--check")[0] == 5
        out = run_command("cloudtask_schedules", "sync", "--dry-run")
        assert "create    nightly" in out
        assert "dry run" in out
        run_command("cloudtask_schedules", "sync")
        run_command("cloudtask_schedules", "sync", "--check")  # in sync: exit 0
        listed = json.loads(run_command("cloudtask_schedules", "list", "--json"))
        assert [(s["name"], s["state"], s["next_run"]) for s in listed] == [
            ("nightly", "enabled", "2026-12-03T03:00:00+00:00")
        ]
        assert "paused" in run_command("cloudtask_schedules", "pause", "nightly")
        assert [s.state for s in list_schedules()] == ["paused"]
        run_command("cloudtask_schedules", "resume", "nightly")
        ran = json.loads(run_command("cloudtask_schedules", "run", "nightly", "--json"))
        assert ran["run"] == "nightly.20261202T120000Z"
        assert Row.objects.get().last_run == datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        table = run_command("cloudtask_schedules", "list")
        assert "nightly" in table
        assert "pushed" in table
        code, message = command_exit("cloudtask_schedules", "pause", "weekly")
        assert code == 3
        assert "No schedule named 'weekly'" in message
    assert pushed_call_ids() == ["nightly.20261202T120000Z"]


@pytest.mark.django_db(transaction=True)
def test_before_migrate_the_worker_says_so_once_and_goes_on_delivering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.db import connection

    firing = local.Firing()
    with connection.schema_editor() as editor:
        editor.delete_model(Row)
    try:
        with settings():
            assert firing(datetime.now(UTC)) == 0
            assert firing(datetime.now(UTC)) == 0
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(Row)
    assert caplog.text.count("status=schedules-off") == 1
    assert "run python manage.py migrate" in caplog.text


def test_a_database_error_in_the_tick_does_not_stop_the_deliveries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.db import OperationalError

    server = ScriptedServer()

    def broken(now: datetime) -> int:
        raise OperationalError("database is locked")

    try:
        with settings(server.url):
            tasks.noop().delay()
            worker = Worker(tick=broken, poll_interval=0.05)
            drain(worker)
    finally:
        server.close()
    assert len(server.requests) == 1
    assert "during=tick" in caplog.text
