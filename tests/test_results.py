"""Stored results: one row per call through push, success, retry, failure and give-up."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from cloudtask import ConfigurationError, ResultNotFound, get_result, signals
from cloudtask.models import TaskResult
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import delivery_headers, post

RESULTS_ON = {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend", "RESULTS": True}
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_results_on")]


@pytest.fixture
def _results_on() -> Any:
    with override_settings(CLOUDTASK=RESULTS_ON):
        yield


def deliver(name: str, kwargs: dict[str, Any], call_id: str, retry_count: int = 0) -> Any:
    body = json.dumps({"v": 1, "task": name, "id": call_id, "args": [], "kwargs": kwargs}).encode()
    return post(body, headers=delivery_headers(retry_count=retry_count))


def test_success_row_with_arguments_result_and_times() -> None:
    with capture_tasks() as captured:
        handle = tasks.add(a=2, b=5).delay()
        row = handle.result()
        assert row.status == "pending"
        assert (row.args, row.kwargs, row.attempts) == ([], {"a": 2, "b": 5}, 0)
        assert row.task_name == handle.name
        assert row.queue == "default"
        captured.run_all()
    row = get_result(handle.call_id)
    assert row.status == "succeeded"
    assert row.result == 7
    assert row.attempts == 1
    assert row.pushed_at is not None
    assert row.started_at is not None
    assert row.finished_at is not None
    assert row.pushed_at <= row.started_at <= row.finished_at
    assert row.done


def test_a_delivery_writes_its_row_once() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with capture_tasks() as captured:
        handle = tasks.add(a=2, b=5).delay()
        failing = tasks.fails_with_value_error().delay()
        with CaptureQueriesContext(connection) as queries:
            captured.run_all()
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE", "UPDATE"]
    assert get_result(handle.call_id).status == "succeeded"
    assert get_result(failing.call_id).status == "retrying"


def test_retrying_then_failed_for_good() -> None:
    with capture_tasks():
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, "call-r", retry_count=0)
        row = get_result("call-r")
        assert (row.status, row.attempts, row.error_type) == ("retrying", 1, "builtins.ValueError")
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, "call-r", retry_count=1)
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, "call-r", retry_count=2)
    row = get_result("call-r")
    assert row.status == "failed"
    assert row.attempts == 3
    assert row.failure_reason == "max-retries"
    assert row.error_message == "attempt 2 of 1"
    assert "ValueError: attempt 2 of 1" in row.traceback
    assert row.finished_at is not None


def test_success_after_a_failed_attempt_clears_its_error() -> None:
    deliver("tests.tasks.flaky", {"failures": 1}, "call-f", retry_count=0)
    row = get_result("call-f")
    assert (row.status, row.error_type) == ("retrying", "builtins.RuntimeError")
    assert row.error_message == "failing on purpose, attempt 1"
    assert row.traceback != ""
    deliver("tests.tasks.flaky", {"failures": 1}, "call-f", retry_count=1)
    row = get_result("call-f")
    assert (row.status, row.result, row.attempts) == ("succeeded", 1, 2)
    assert (row.error_type, row.error_message, row.traceback) == ("", "", "")
    assert row.failure_reason == ""


def test_rejected_call_is_failed_with_reason() -> None:
    with capture_tasks():
        deliver("tests.tasks.rejects", {}, "call-x")
    row = get_result("call-x")
    assert (row.status, row.failure_reason, row.error_type) == (
        "failed",
        "rejected",
        "cloudtask.exceptions.Reject",
    )


def test_non_json_return_value_is_recorded_as_a_failure() -> None:
    response = deliver("tests.tasks.returns_set", {}, "call-s")
    assert response.status_code == 200
    row = get_result("call-s")
    assert row.status == "failed"
    assert row.failure_reason == "result-not-json"
    assert row.error_type == "builtins.TypeError"
    assert row.error_message.startswith(
        "tests.tasks.returns_set returned set, which is not JSON-serialisable"
    )


def test_immediate_backend_records_the_whole_call() -> None:
    handle = tasks.add(a=1, b=1).delay()
    row = handle.result()
    assert (row.status, row.result, row.attempts) == ("succeeded", 2, 1)
    assert row.kwargs == {"a": 1, "b": 1}


def test_unknown_call_and_results_off() -> None:
    with pytest.raises(ResultNotFound, match="No result is stored for call 'nope'"):
        get_result("nope")
    with override_settings(CLOUDTASK={**RESULTS_ON, "RESULTS": False}):
        with pytest.raises(ConfigurationError, match=r"set CLOUDTASK\['RESULTS'\] = True"):
            get_result("nope")
        tasks.add(a=1, b=1).delay()
        # Without RESULTS the recorder is disconnected: nothing is written.
        assert not signals.task_succeeded.has_listeners(tasks.add)
    assert TaskResult.objects.count() == 0


def test_prune_deletes_old_rows_only() -> None:
    tasks.add(a=1, b=1).delay()
    old = tasks.add(a=2, b=2).delay()
    TaskResult.objects.filter(call_id=old.call_id).update(
        created_at=timezone.now() - timedelta(days=8)
    )
    out = StringIO()
    call_command("cloudtask_prune", "--older-than", "7d", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete 1 results created before ")
    assert TaskResult.objects.count() == 2
    out = StringIO()
    call_command("cloudtask_prune", "--older-than", "7d", stdout=out)
    assert out.getvalue().startswith("deleted 1 results created before ")
    assert list(TaskResult.objects.values_list("kwargs", flat=True)) == [{"a": 1, "b": 1}]


@pytest.mark.parametrize("bad", ["7 days", "-1d", "d", "1y", ""])
def test_prune_refuses_a_bad_duration(bad: str) -> None:
    with pytest.raises(CommandError, match="is not a duration"):
        call_command("cloudtask_prune", f"--older-than={bad}", stdout=StringIO())


def test_results_admin_lists_and_filters(admin_client: Any) -> None:
    tasks.add(a=1, b=1).delay()
    response = admin_client.get("/admin/cloudtask/taskresult/?status__exact=succeeded")
    assert response.status_code == 200
    assert [row.task for row in response.context["cl"].result_list] == ["tests.tasks.add"]
    response = admin_client.get("/admin/cloudtask/taskresult/?status__exact=failed")
    assert list(response.context["cl"].result_list) == []


def test_results_setting_is_checked() -> None:
    from cloudtask.checks import check_settings

    with override_settings(CLOUDTASK={**RESULTS_ON, "RESULTS": "yes"}):
        assert [m.id for m in check_settings()] == ["cloudtask.E012"]
