"""The workflows admin, through the real admin views: list, search, steps, revoke."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from cloudtask import Reject
from cloudtask.models import Workflow, WorkflowStep
from cloudtask.testing import capture_tasks
from cloudtask.workflows import WorkflowHandle, group
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)

WORKFLOWS = "/admin/cloudtask/workflow/"
STEPS = "/admin/cloudtask/workflowstep/"


def login(superuser: bool = True) -> Client:
    if superuser:
        user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    else:
        user = User.objects.create_user("viewer", "viewer@example.com", "pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    client = Client()
    client.force_login(user)
    return client


def running() -> WorkflowHandle:
    """A chain whose first step is pushed (captured) and not run."""
    with capture_tasks():
        return (tasks.add.s(a=1, b=1) | tasks.add.s(b=1)).delay()


def listed(client: Client, query: str = "") -> list[str]:
    response = client.get(WORKFLOWS + query)
    assert response.status_code == 200
    return [row.id for row in response.context["cl"].result_list]


def revoke(client: Client, ids: list[str]) -> str:
    response = client.post(WORKFLOWS, {"action": "revoke", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return " | ".join(str(m) for m in response.context["messages"])


def test_the_list_filters_by_status_and_the_detail_shows_the_steps_in_tree_order() -> None:
    client = login()
    done = (group(tasks.add.s(a=1, b=2), tasks.add.s(a=3, b=4)) | tasks.total.s()).delay()
    going = running()
    assert listed(client) == [going.id, done.id]
    assert listed(client, "?status__exact=succeeded") == [done.id]
    html = client.get(WORKFLOWS).content.decode()
    assert "chain(group(tests.tasks.add, tests.tasks.add), tests.tasks.total)" in html

    detail = client.get(f"{WORKFLOWS}{done.id}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "Save" not in page
    keys = ["0", "0.0", "0.0.0", "0.0.1", "0.1"]
    cells = [f"<td>{key}</td>" for key in keys]
    assert all(cell in page for cell in cells)
    assert [page.index(cell) for cell in cells] == sorted(page.index(cell) for cell in cells)
    total = WorkflowStep.objects.get(workflow_id=done.id, key="0.1")
    assert total.call_id in page
    assert '<code style="white-space: pre-wrap">10</code>' in page  # total's result

    assert client.get(f"{WORKFLOWS}add/").status_code == 403
    assert client.get(f"{WORKFLOWS}{done.id}/delete/").status_code == 403


def test_failed_steps_show_their_error_and_the_error_callback() -> None:
    client = login()
    flow = tasks.add.s(a=1, b=1) | tasks.fails_for_good.s()
    with pytest.raises(Reject):
        flow.on_error(tasks.report_error.s(label="x")).delay()
    workflow = Workflow.objects.get()
    page = client.get(f"{WORKFLOWS}{workflow.id}/change/").content.decode()
    assert "refused (2,)" in page
    assert "error callback" in page
    assert listed(client, "?status__exact=failed") == [workflow.id]


def test_search_finds_a_workflow_by_id_step_call_id_or_task_once() -> None:
    client = login()
    first, second = running(), running()
    call_id = WorkflowStep.objects.get(workflow_id=second.id, key="0.1").call_id
    assert listed(client, f"?q={call_id}") == [second.id]
    assert listed(client, f"?q={first.id}") == [first.id]
    # Two steps of each run add: each workflow is listed once.
    assert listed(client, "?q=tests.tasks.add") == [second.id, first.id]
    assert listed(client, "?q=tests.tasks.total") == []


def test_the_revoke_action_revokes_running_workflows_and_counts_ended_ones() -> None:
    client = login()
    going = running()
    done = tasks.add.s(a=1, b=1).delay()
    message = revoke(client, [going.id, done.id])
    assert message == "1 workflow(s) revoked; 1 had already ended."
    assert going.status == "revoked"
    assert done.status == "succeeded"
    statuses = WorkflowStep.objects.filter(workflow_id=going.id).values_list("status", flat=True)
    assert set(statuses) == {"revoked"}


def test_viewers_see_workflows_but_cannot_revoke() -> None:
    going = running()
    client = login(superuser=False)
    page = client.get(WORKFLOWS)
    assert page.status_code == 200
    assert b'value="revoke"' not in page.content
    assert client.get(f"{WORKFLOWS}{going.id}/change/").status_code == 200


def test_the_steps_admin_searches_by_call_id_and_filters() -> None:
    client = login()
    going = running()
    step = WorkflowStep.objects.get(workflow_id=going.id, key="0.0")
    response = client.get(f"{STEPS}?q={step.call_id}")
    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [step.pk]
    response = client.get(f"{STEPS}?kind__exact=chain")
    assert [row.key for row in response.context["cl"].result_list] == ["0"]
    response = client.get(f"{STEPS}?status__exact=queued")
    assert [row.pk for row in response.context["cl"].result_list] == [step.pk]
    detail = client.get(f"{STEPS}{step.pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "add(a=1, b=1)" in page
    assert f"{WORKFLOWS}{going.id}/change/" in page
    assert client.get(f"{STEPS}{step.pk}/delete/").status_code == 403
