"""``manage.py cloudtask_workflows`` and the workflows ``cloudtask_prune`` removes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from freezegun import freeze_time

from cloudtask import Reject
from cloudtask.models import TaskResult, Workflow, WorkflowStep
from cloudtask.testing import capture_tasks
from cloudtask.workflows import WorkflowHandle, group
from tests import tasks
from tests.support import helpers

pytestmark = pytest.mark.django_db(transaction=True)

run = helpers.run_command
exit_code = helpers.command_exit


def succeeded() -> WorkflowHandle:
    """A chord run to its end (ImmediateBackend runs it inside delay())."""
    return (group(tasks.add.s(a=1, b=2), tasks.add.s(a=3, b=4)) | tasks.total.s()).delay()


def failed() -> WorkflowHandle:
    flow = tasks.add.s(a=1, b=1) | tasks.fails_for_good.s() | tasks.add.s(b=1)
    with pytest.raises(Reject):
        flow.on_error(tasks.report_error.s(label="x")).delay()
    return WorkflowHandle(Workflow.objects.get(status="failed").id)


def running() -> WorkflowHandle:
    """A chain whose first step is pushed (captured) and not run."""
    with capture_tasks():
        return (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()


def ended_days_ago(handle: WorkflowHandle, days: float) -> None:
    Workflow.objects.filter(pk=handle.id).update(finished_at=timezone.now() - timedelta(days=days))


def test_list_prints_newest_first_with_task_steps_finished() -> None:
    with freeze_time("2026-03-01 10:00:00"):
        done = succeeded()
    with freeze_time("2026-03-02 10:00:00"):
        going = running()
    assert run("cloudtask_workflows", "list").splitlines() == [
        "ID                                STATUS     STEPS  CREATED                    "
        "FINISHED                   DESCRIPTION",
        f"{going.id}  running    0/2    2026-03-02T10:00:00+00:00  -"
        "                          chain(tests.tasks.add, tests.tasks.add)",
        f"{done.id}  succeeded  3/3    2026-03-01T10:00:00+00:00  2026-03-01T10:00:00+00:00  "
        "chain(group(tests.tasks.add, tests.tasks.add), tests.tasks.total)",
    ]


def test_list_filters_limits_and_prints_json() -> None:
    done = succeeded()
    running()
    failed()
    [row] = json.loads(run("cloudtask_workflows", "list", "--status", "succeeded", "--json"))
    assert row == {
        "id": done.id,
        "status": "succeeded",
        "description": "chain(group(tests.tasks.add, tests.tasks.add), tests.tasks.total)",
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "steps_finished": 3,
        "steps_total": 3,
    }
    assert row["finished_at"].endswith("+00:00")
    [failing] = json.loads(run("cloudtask_workflows", "list", "--status", "failed", "--json"))
    assert (failing["steps_finished"], failing["steps_total"]) == (3, 3)  # one skipped
    assert len(json.loads(run("cloudtask_workflows", "list", "--limit", "2", "--json"))) == 2
    Workflow.objects.all().delete()
    assert (
        run("cloudtask_workflows", "list", "--status", "revoked") == "No workflows are revoked.\n"
    )
    assert run("cloudtask_workflows", "list") == "No workflows are stored.\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("list", "--status", "done"),
            "--status 'done' is not a workflow status: use one of running, succeeded, failed, "
            "revoked.",
        ),
        (("list", "--limit", "0"), "--limit must be 1 or more (e.g. --limit 50), not 0."),
        (("list", "--limit", "-3"), "--limit must be 1 or more (e.g. --limit 50), not -3."),
        (("prune", "--days", "-1"), "--days must be 0 or more (e.g. --days 7), not -1."),
    ],
)
def test_bad_input_says_what_to_fix(argv: tuple[str, ...], message: str) -> None:
    assert exit_code("cloudtask_workflows", *argv) == (2, message)


def test_show_prints_the_workflow_and_its_steps_in_tree_order() -> None:
    with freeze_time("2026-03-01 10:00:00"):
        handle = failed()
    steps = {step.key: step for step in WorkflowStep.objects.filter(workflow_id=handle.id)}
    out = run("cloudtask_workflows", "show", handle.id).splitlines()
    assert out[:9] == [
        f"id:          {handle.id}",
        "status:      failed",
        "description: chain(tests.tasks.add, tests.tasks.fails_for_good, tests.tasks.add)",
        "created_at:  2026-03-01T10:00:00+00:00",
        "updated_at:  2026-03-01T10:00:00+00:00",
        "finished_at: 2026-03-01T10:00:00+00:00",
        f"error:       {handle.row().error.splitlines()[0]}",
        "result:      -",
        "",
    ]
    columns = ["KEY", "KIND", "TASK", "STATUS", "ATTEMPTS", "CALL_ID", "TASK_ID", "ERROR"]
    assert out[9].split() == [*columns, "RESULT"]
    assert [line.split()[:4] for line in out[10:]] == [
        ["0.0", "task", "tests.tasks.add", "succeeded"],
        ["0.1", "task", "tests.tasks.fails_for_good", "failed"],
        ["0.2", "task", "tests.tasks.add", "skipped"],
        ["0.e0", "errback", "tests.tasks.report_error", "succeeded"],
    ]
    assert out[10].endswith("  2")  # add(1, 1)'s result
    assert steps["0.1"].call_id in out[11]
    assert "refused (2,)" in out[11]

    shown = json.loads(run("cloudtask_workflows", "show", handle.id, "--json"))
    assert shown["status"] == "failed"
    assert [step["key"] for step in shown["steps"]] == ["0.0", "0.1", "0.2", "0.e0"]
    assert shown["steps"][0] == {
        "key": "0.0",
        "kind": "task",
        "task": "tests.tasks.add",
        "status": "succeeded",
        "attempts": steps["0.0"].attempts,
        "call_id": steps["0.0"].call_id,
        "task_id": steps["0.0"].task_id,
        "error": "",
        "result": 2,
    }


def test_show_a_succeeded_workflow_prints_its_result() -> None:
    handle = succeeded()
    out = run("cloudtask_workflows", "show", handle.id)
    assert "result:      10\n" in out
    assert json.loads(run("cloudtask_workflows", "show", handle.id, "--json"))["result"] == 10


def test_revoke_by_id_or_step_call_id() -> None:
    handle = running()
    assert run("cloudtask_workflows", "revoke", handle.id) == f"Workflow {handle.id} revoked.\n"
    assert handle.status == "revoked"
    assert WorkflowStep.objects.filter(workflow_id=handle.id, status="revoked").count() == 3
    again = json.loads(run("cloudtask_workflows", "revoke", handle.id, "--json"))
    assert again == {"id": handle.id, "revoked": False, "status": "revoked"}

    other = running()
    call_id = WorkflowStep.objects.get(workflow_id=other.id, key="0.1").call_id
    revoked = json.loads(run("cloudtask_workflows", "revoke", call_id, "--json"))
    assert revoked == {"id": other.id, "revoked": True, "status": "revoked"}

    done = succeeded()
    out = run("cloudtask_workflows", "revoke", done.id)
    assert out == f"Workflow {done.id} already ended (succeeded).\n"


@pytest.mark.parametrize("action", ["show", "revoke", "resume"])
def test_an_unknown_workflow_exits_3(action: str) -> None:
    code, message = exit_code("cloudtask_workflows", action, "nope")
    assert code == 3
    assert message.startswith("No workflow 'nope': check the id")


def test_resume_pushes_again_the_steps_whose_task_is_gone() -> None:
    handle = running()
    with capture_tasks() as captured:
        out = run("cloudtask_workflows", "resume", handle.id)
        assert out == f"Workflow {handle.id}: 1 step(s) pushed again.\n"
        assert [c.task.name for c in captured] == ["tests.tasks.add"]
        step = WorkflowStep.objects.get(workflow_id=handle.id, key="0.0")
        assert (step.status, step.generation) == ("queued", 1)
        value = json.loads(run("cloudtask_workflows", "resume", handle.id, "--json"))
        assert value == {"id": handle.id, "pushed": 1}
        assert handle.status == "running"
    done = succeeded()
    assert run("cloudtask_workflows", "resume", done.id).startswith(f"Workflow {done.id}: 0 ")


def test_prune_deletes_ended_workflows_older_than_days_with_their_steps() -> None:
    old, recent, old_failed = succeeded(), succeeded(), failed()
    going = running()
    ended_days_ago(old, 8)
    ended_days_ago(old_failed, 30)
    ended_days_ago(recent, 6)
    Workflow.objects.filter(pk=going.id).update(created_at=timezone.now() - timedelta(days=90))

    out = run("cloudtask_workflows", "prune", "--dry-run")  # --days 7 by default
    assert out.startswith("would delete 2 workflows that ended before ")
    assert Workflow.objects.count() == 4
    value = json.loads(run("cloudtask_workflows", "prune", "--days", "10", "--dry-run", "--json"))
    assert (value["deleted"], value["dry_run"]) == (1, True)

    assert run("cloudtask_workflows", "prune").startswith("deleted 2 workflows that ended before ")
    assert set(Workflow.objects.values_list("id", flat=True)) == {recent.id, going.id}
    assert not WorkflowStep.objects.filter(workflow_id__in=(old.id, old_failed.id)).exists()
    value = json.loads(run("cloudtask_workflows", "prune", "--days", "0", "--json"))
    assert (value["deleted"], value["dry_run"]) == (1, False)
    assert list(Workflow.objects.values_list("id", flat=True)) == [going.id]  # running: kept


def test_cloudtask_prune_also_deletes_ended_workflows() -> None:
    old, recent = succeeded(), succeeded()
    going = running()
    ended_days_ago(old, 8)
    Workflow.objects.filter(pk=going.id).update(created_at=timezone.now() - timedelta(days=90))
    out = run("cloudtask_prune", "--older-than", "7d", "--dry-run").splitlines()
    assert out[0].startswith("would delete 0 results created before ")
    assert out[1].startswith("would delete 1 workflows that ended before ")
    assert Workflow.objects.count() == 3
    out = run("cloudtask_prune", "--older-than", "7d").splitlines()
    assert out[1].startswith("deleted 1 workflows that ended before ")
    assert set(Workflow.objects.values_list("id", flat=True)) == {recent.id, going.id}
    assert TaskResult.objects.count() == 0  # RESULTS is off in the test settings
