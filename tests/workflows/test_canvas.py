"""Workflows on ImmediateBackend and capture_tasks(): shapes, results, failures, revocation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from freezegun import freeze_time

from cloudtask import Reject, conf, signals
from cloudtask.exceptions import WorkflowFailed, WorkflowNotFinished, WorkflowNotFound
from cloudtask.models import LocalTask, Workflow, WorkflowStep
from cloudtask.request import cloud_tasks_headers
from cloudtask.testing import capture_tasks
from cloudtask.workflows import chain, chord, engine, get_workflow, group
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def called(name: str) -> list[Any]:
    return [value for called, value in tasks.calls if called == name]


def test_chain_passes_each_result_on() -> None:
    handle = (tasks.add.s(a=4, b=5) | tasks.add.s(b=10)).delay()
    assert handle.status == "succeeded"
    assert handle.result() == 19


def test_group_results_in_call_order() -> None:
    handle = group(tasks.add.s(a=3, b=3), tasks.add.s(a=7, b=2)).delay()
    assert handle.result() == [6, 9]


def test_chord_body_gets_member_results() -> None:
    handle = chord(group(tasks.add.s(a=3, b=3), tasks.add.s(a=7, b=2)), tasks.total.s()).delay()
    assert handle.result() == 15
    assert called("total") == [[6, 9]]


def test_captured_workflow_runs_to_its_end() -> None:
    with capture_tasks() as captured:
        handle = (group(tasks.add.s(a=1, b=1), tasks.add.s(a=2, b=2)) | tasks.total.s()).delay()
        assert len(captured) == 2
        captured.run_all()
    assert handle.result() == 6
    assert [c.task.name for c in captured] == [
        "tests.tasks.add",
        "tests.tasks.add",
        "tests.tasks.total",
    ]


def test_a_long_chain_runs_without_recursion() -> None:
    handle = chain([tasks.add.s(a=0, b=1)] + [tasks.add.s(b=1) for _ in range(999)]).delay()
    assert handle.result() == 1000


def test_failure_skips_the_rest_and_calls_error_callbacks_once() -> None:
    flow = chain(tasks.add.s(a=1, b=1), tasks.fails_for_good.s(), tasks.add.s(b=1))
    with pytest.raises(Reject, match=r"refused \(2,\)"):  # ImmediateBackend raises it here
        flow.on_error(tasks.report_error.s(label="outer")).delay()
    handle = get_workflow(Workflow.objects.get().id)
    assert handle.status == "failed"
    reports = called("report_error")
    assert len(reports) == 1
    assert reports[0]["label"] == "outer"
    assert reports[0]["original_task_name"] == "tests.tasks.fails_for_good"
    assert reports[0]["payload"]["args"] == [2]
    statuses = {s.key: s.status for s in WorkflowStep.objects.filter(workflow_id=handle.id)}
    assert statuses["0.2"] == "skipped"


def test_building_checks_arguments_with_the_parent_result() -> None:
    with pytest.raises(TypeError, match="receives the result"):
        chain(tasks.add.s(a=1, b=1), tasks.add.s(a=1, b=2)).delay()
    assert not Workflow.objects.exists()


def test_falsy_results_are_passed_on_like_any_other() -> None:
    chain(tasks.passes_on.s(0), tasks.passes_on.s(), tasks.passes_on.s()).delay()
    handle = (group(tasks.passes_on.s(""), tasks.passes_on.s(None)) | tasks.passes_on.s()).delay()
    assert called("passes_on") == [0, 0, 0, "", None, ["", None]]
    assert handle.result() == ["", None]


def test_a_member_chain_gives_its_last_result_and_each_member_the_parent_result() -> None:
    inner = chain(tasks.add.s(b=1), tasks.add.s(b=1))
    flow = tasks.add.s(a=1, b=1) | group(inner, tasks.add.s(b=10)) | tasks.total.s(extra=100)
    assert flow.delay().result() == 4 + 12 + 100


def test_si_steps_receive_nothing() -> None:
    handle = (tasks.add.s(a=1, b=1) | tasks.add.si(a=5, b=5)).delay()
    assert handle.result() == 10


def test_a_result_that_is_not_json_fails_the_step() -> None:
    handle = (tasks.returns_set.s() | tasks.passes_on.s()).delay()
    assert handle.status == "failed"
    assert "its result is not JSON" in handle.row().error
    assert [s.status for s in handle.steps()] == ["failed", "skipped"]
    assert called("passes_on") == []


@override_settings(CLOUDTASK={**settings.CLOUDTASK, "MAX_BODY_SIZE": 2048})
def test_a_result_too_large_for_the_next_step_fails_the_step() -> None:
    handle = (tasks.repeat.s(text="x", times=4000) | tasks.passes_on.s()).delay()
    assert handle.status == "failed"
    assert "over the 2048-byte limit" in handle.row().error
    with pytest.raises(WorkflowFailed, match="failed: StepInputError"):
        handle.result()


def test_error_callbacks_are_pushed_from_the_failed_step_outwards() -> None:
    inner = tasks.fails_for_good.s(1).on_error(tasks.report_error.s(label="inner"))
    flow = chain(tasks.add.s(a=1, b=1), group(inner, tasks.passes_on.s()))
    flow = flow.on_error(tasks.report_error.s(label="outer"))
    with pytest.raises(Reject):
        flow.delay()
    assert [report["label"] for report in called("report_error")] == ["inner", "outer"]


def test_a_failed_member_never_runs_the_chord_body() -> None:
    flow = group(tasks.fails_for_good.s(1), tasks.passes_on.s(2)) | tasks.total.s()
    with capture_tasks() as captured:
        handle = flow.delay()
        captured.run_all()
    assert called("total") == []
    assert called("passes_on") == []  # skipped: its delivery came after the failure
    assert handle.status == "failed"
    assert [s.status for s in handle.steps()] == ["failed", "skipped", "skipped"]


def test_a_failure_that_will_be_retried_neither_advances_nor_fails() -> None:
    with capture_tasks() as captured:
        handle = (tasks.flaky.s(failures=1) | tasks.passes_on.s()).delay()
        first = captured[0]
        assert first.run().status_code == 500  # Cloud Tasks retries it
        assert len(captured) == 1
        assert handle.status == "running"
        step = handle.steps()[0]
        assert (step.status, step.error) == (
            "running",
            "RuntimeError: failing on purpose, attempt 1",
        )
        headers = {
            **{k: v for k, v in first.http_request.headers.items() if k != "Content-Type"},
            **cloud_tasks_headers(
                queue=first.queue, name=first.name, eta=None, retry_count=1, execution_count=1
            ),
        }
        again = Client().post(
            first.path, first.http_request.body, content_type="application/json", headers=headers
        )
        assert again.status_code == 200
        captured.run_all()
    assert handle.result() == 1
    assert handle.steps()[0].attempts == 2


def test_a_step_waits_its_countdown_from_when_it_is_ready() -> None:
    with capture_tasks() as captured:
        (tasks.add.s(a=1, b=1) | tasks.add.s(b=1).set(countdown=300)).delay()
        with freeze_time(timezone.now() + timedelta(hours=2)):
            captured[0].run()
            assert captured[1].eta == timezone.now() + timedelta(seconds=300)


def test_delays_past_thirty_days_or_naive_are_refused_when_built() -> None:
    with pytest.raises(ValueError, match="0 to 30 days"):
        tasks.add.s(a=1).set(countdown=timedelta(days=31))
    with pytest.raises(ValueError, match="more than 30 days"):
        tasks.add.s(a=1).set(eta=timezone.now() + timedelta(days=31))
    with pytest.raises(TypeError, match="aware datetime"):
        tasks.add.s(a=1).set(eta=datetime(2030, 1, 1))  # naive, on purpose


def test_workflow_finished_is_sent_once_whatever_ends_it() -> None:
    finished: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        finished.append({key: kwargs[key] for key in ("workflow_id", "status", "result")})

    signals.workflow_finished.connect(record)
    try:
        handle = (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()
        with capture_tasks() as captured:
            failing = group(tasks.fails_for_good.s(1), tasks.fails_for_good.s(2)).delay()
            captured.run_all()
            revoked = (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()
            revoked.revoke()
            revoked.revoke()
    finally:
        signals.workflow_finished.disconnect(record)
    assert finished == [
        {"workflow_id": handle.id, "status": "succeeded", "result": 3},
        {"workflow_id": failing.id, "status": "failed", "result": None},
        {"workflow_id": revoked.id, "status": "revoked", "result": None},
    ]


def test_a_repeated_push_of_a_step_is_refused_by_its_id_and_counts_as_pushed() -> None:
    with capture_tasks() as captured:
        handle = (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()
        row = WorkflowStep.objects.get(workflow_id=handle.id, key="0.0")
        engine.push_steps([row])  # as a redelivery would, had the first push been lost
        assert len(captured) == 1
        assert captured[0].name == engine.step_task_id(row)


def test_the_result_of_a_running_workflow_is_not_there_yet() -> None:
    with capture_tasks():
        handle = (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()
    with pytest.raises(WorkflowNotFinished):
        handle.result()
    with pytest.raises(WorkflowNotFound, match="No workflow 'nope'"):
        get_workflow("nope")


def test_revoking_deletes_the_queued_tasks_from_the_local_queue() -> None:
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND}):
        handle = group(tasks.add.s(a=1, b=1), tasks.add.s(a=2, b=2)).delay()
        assert list(LocalTask.objects.values_list("status", flat=True)) == ["queued"] * 2
        assert handle.revoke() is True
    assert list(LocalTask.objects.values_list("status", flat=True)) == ["deleted"] * 2


def test_an_empty_group_ends_at_once_with_no_results() -> None:
    handle = group().delay()
    assert (handle.status, handle.result()) == ("succeeded", [])


def test_a_call_instead_of_a_signature_is_refused_with_the_spelling_to_use() -> None:
    call = tasks.add(a=1, b=2)
    with pytest.raises(TypeError, match=r"A call such as add\(a=1\) becomes a step as add.s"):
        chain(call)
    with pytest.raises(TypeError, match="takes signatures"):
        group(step for step in [tasks.add.s(a=1), "add"])
    call.consume()  # refused above, on purpose: no warning about a call never pushed
