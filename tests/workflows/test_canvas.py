"""Workflows on ImmediateBackend and capture_tasks(): shapes, results, failures, revocation."""

from __future__ import annotations

from typing import Any

import pytest

from cloudtask import Reject
from cloudtask.models import Workflow, WorkflowStep
from cloudtask.testing import capture_tasks
from cloudtask.workflows import chain, chord, get_workflow, group
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
