"""Declaring periodic tasks: @periodic, CLOUDTASK["SCHEDULES"], and the checks that name each mistake."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import override_settings

from cloudtask import envelope, registry
from cloudtask.checks import check_periodic_tasks
from cloudtask.schedules import declared, schedules
from cloudtask.schedules.declare import (
    cron_problem,
    default_name,
    delivered_call_id,
    next_run,
    run_call_id,
)
from tests import tasks
from tests.support.helpers import post

CLOUD = {
    "BACKEND": "cloudtask.backends.cloudtasks.CloudTasksBackend",
    "PROJECT": "p",
    "LOCATION": "europe-west6",
    "URL": "https://app.example.com/_tasks/",
    "SAE": "scheduler@p.iam.gserviceaccount.com",
}


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def check(**cloudtask: Any) -> list[Any]:
    with override_settings(CLOUDTASK=cloudtask):
        return check_periodic_tasks()


def entry(**overrides: Any) -> dict[str, Any]:
    return {"task": "tests.tasks.periodic_report", "cron": "0 3 * * *", **overrides}


def test_a_settings_schedule_is_resolved_with_its_defaults() -> None:
    with override_settings(CLOUDTASK={"SCHEDULES": {"nightly": entry(kwargs={"full": True})}}):
        found = schedules()["nightly"]
    assert (found.task, found.cron, found.time_zone, dict(found.kwargs)) == (
        "tests.tasks.periodic_report",
        "0 3 * * *",
        "UTC",
        {"full": True},
    )
    assert found.paused is False


def test_periodic_stacks_on_a_task_with_its_own_names(declaring: Any) -> None:
    with registry.isolated():
        declaring("periodic_tasks")
        found = schedules()
        assert found["shop-tasks-report"].time_zone == "Europe/Zurich"
        assert dict(found["weekly"].kwargs) == {"n": 2}
        assert found["weekly"].task == "shop.tasks.report"
        assert check_periodic_tasks() == []
    # Outside this registry the task is gone, and so are its schedules.
    assert "weekly" not in schedules()


def test_periodic_below_task_is_a_check_error_not_an_import_error(declaring: Any) -> None:
    declaring("wrong_order")
    messages = check_periodic_tasks()
    assert "cloudtask.E054" in ids(messages)
    assert "Put @periodic above @task" in messages[0].hint


@pytest.mark.parametrize(
    ("overrides", "check_id", "named"),
    [
        ({"cron": "61 * * * *"}, "cloudtask.E052", "'61 * * * *'"),
        ({"cron": "0 3 * *"}, "cloudtask.E052", "4 fields"),
        ({"cron": "0 0 3 * * *"}, "cloudtask.E052", "6 fields"),
        ({"cron": "0 3 * * 1#2"}, "cloudtask.E052", "only numbers"),
        ({"cron": 3}, "cloudtask.E052", "string"),
        ({"time_zone": "Mars/Olympus"}, "cloudtask.E053", "Mars/Olympus"),
        ({"task": "tests.tasks.nope"}, "cloudtask.E054", "tests.tasks.nope"),
        ({"kwargs": {"colour": "red"}}, "cloudtask.E055", "colour"),
        ({"kwargs": {"label": {1, 2}}}, "cloudtask.E055", "JSON"),
        ({"paused": "yes"}, "cloudtask.E057", "paused"),
        ({"retry": {"retry_count": 9}}, "cloudtask.E057", "0 to 5"),
        ({"retry": {"backoff": 1}}, "cloudtask.E057", "unknown keys"),
        ({"color": "red"}, "cloudtask.E050", "unknown keys"),
    ],
)
def test_each_bad_declaration_is_an_error_naming_the_schedule(
    overrides: dict[str, Any], check_id: str, named: str
) -> None:
    messages = check(SCHEDULES={"nightly": entry(**overrides)})
    assert check_id in ids(messages)
    text = " ".join(message.msg for message in messages if message.id == check_id)
    assert "CLOUDTASK['SCHEDULES']['nightly']" in text
    assert named in text
    # A bad declaration is left out of the schedules that run.
    with override_settings(CLOUDTASK={"SCHEDULES": {"nightly": entry(**overrides)}}):
        assert "nightly" not in schedules()


def test_bad_names_and_duplicates_are_reported(declaring: Any) -> None:
    messages = check(SCHEDULES={"no spaces": entry(), "x" * 41: entry()})
    assert ids(messages) == ["cloudtask.E051", "cloudtask.E051"]
    declaring("periodic_tasks")
    messages = check(SCHEDULES={"nightly": entry()})
    assert ids(messages) == ["cloudtask.E056"]
    assert "taken by @periodic schedule 'nightly' on shop.tasks.other" in messages[0].msg


def test_a_missing_task_or_cron_and_a_non_dict_setting_are_reported() -> None:
    assert ids(check(SCHEDULES={"n": {"cron": "* * * * *"}})) == ["cloudtask.E050"]
    assert ids(check(SCHEDULES=["n"])) == ["cloudtask.E050"]
    assert ids(check(SCHEDULES={"n": "0 3 * * *"})) == ["cloudtask.E050"]


def test_cloud_scheduler_needs_url_and_sae() -> None:
    settings = {**CLOUD, "SCHEDULES": {"nightly": entry()}}
    assert check(**settings) == []
    without = {k: v for k, v in settings.items() if k not in ("URL", "SAE")}
    messages = check(**without)
    assert ids(messages) == ["cloudtask.E059", "cloudtask.E059"]
    assert "CLOUDTASK['URL']" in messages[0].msg
    assert "CLOUDTASK['SAE']" in messages[1].msg
    # The local worker needs neither.
    assert check(SCHEDULES={"nightly": entry()}) == []


def test_a_task_with_its_own_target_cannot_be_a_cloud_scheduler_job(declaring: Any) -> None:
    settings = {**CLOUD, "SCHEDULES": {"mail": entry(task="tests.tasks.send_email")}}
    settings["SCHEDULES"]["mail"]["kwargs"] = {"to": "a@example.com"}
    assert check(**settings) == []
    declaring("periodic_tasks")
    schedules = {"e": entry(task="shop.tasks.elsewhere")}
    messages = [m for m in check(**{**CLOUD, "SCHEDULES": schedules}) if "'e'" in m.msg]
    assert ids(messages) == ["cloudtask.E059"]


def test_scheduler_settings_are_checked() -> None:
    assert ids(check(SCHEDULER_EMULATOR_HOST="nowhere")) == ["cloudtask.E058"]
    assert ids(check(SCHEDULER_LOCATION="Europe West")) == ["cloudtask.E058"]
    assert check(SCHEDULER_LOCATION="us-central1", SCHEDULER_EMULATOR_HOST="127.0.0.1:1") == []


def test_cron_follows_unix_cron_and_the_time_zone() -> None:
    assert cron_problem("*/15 * * * *") == ""
    assert cron_problem("0 9 * * MON-FRI") == ""
    after = datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc)
    # 03:00 in Zurich: UTC+1 before the switch to summer time on 29 March, UTC+2 after.
    assert next_run("0 3 * * *", "Europe/Zurich", after) == datetime(
        2026, 3, 29, 1, 0, tzinfo=timezone.utc
    )
    assert next_run(
        "0 3 * * *", "Europe/Zurich", datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)
    ) == (datetime(2026, 3, 30, 1, 0, tzinfo=timezone.utc))


def test_each_run_has_its_own_call_id_from_its_scheduled_time() -> None:
    due = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
    assert run_call_id("nightly", due) == "nightly.20261202T030000Z"
    meta = {"HTTP_X_CLOUDSCHEDULER_SCHEDULETIME": "2026-12-02T03:00:00Z"}
    assert delivered_call_id("nightly", meta) == "nightly.20261202T030000Z"
    # Another offset of the same moment is the same run.
    meta = {"HTTP_X_CLOUDSCHEDULER_SCHEDULETIME": "2026-12-02T04:00:00+01:00"}
    assert delivered_call_id("nightly", meta) == "nightly.20261202T030000Z"
    # Without a usable header: the time of arrival, to the microsecond.
    now = datetime(2026, 12, 2, 3, 0, 1, 250, tzinfo=timezone.utc)
    for bad in ({}, {"HTTP_X_CLOUDSCHEDULER_SCHEDULETIME": "yesterday"}):
        assert delivered_call_id("nightly", bad, now) == "nightly.20261202T030001.000250Z"
    assert len(run_call_id("x" * 40, now)) <= 64  # fits a stored result's call id


def test_two_unnamed_schedules_of_one_task_are_reported_not_lost(declaring: Any) -> None:
    declaring("unnamed_twice")
    messages = check_periodic_tasks()
    assert ids(messages) == ["cloudtask.E056"]
    assert "the schedule name 'shop-tasks-twice' is taken" in messages[0].msg


def test_default_names_are_valid_schedule_names() -> None:
    assert default_name("shop.tasks.nightly_report") == "shop-tasks-nightly_report"
    long = default_name("a" * 30 + ".tasks." + "nightly_report")
    assert len(long) <= 40
    assert long.endswith("nightly_report")
    assert declared().errors == []


def test_a_signed_body_naming_no_valid_schedule_is_refused() -> None:
    body = envelope.encode(
        "tests.tasks.periodic_report", "x", "[[],{}]", {"schedule": "no spaces!"}
    )
    response = post(body)
    assert response.status_code == 400
    assert response.json()["detail"] == "'schedule' must be a schedule name"
    assert tasks.calls == []
