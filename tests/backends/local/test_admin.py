"""The admin of the local queue, through the real admin views."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings

from cloudtask import conf
from cloudtask.backends.local import claims, heartbeats
from cloudtask.models import LocalQueue, LocalTask, TaskResult
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client() -> Iterator[Client]:
    local = {"BACKEND": conf.LOCAL_BACKEND, "URL": "http://127.0.0.1:8000/_tasks/"}
    with override_settings(CLOUDTASK=local):
        user = User.objects.create_superuser("admin", "admin@example.com", "pw")
        client = Client()
        client.force_login(user)
        yield client


def act(client: Client, model: str, action: str, pks: list[int]) -> str:
    response = client.post(
        f"/admin/cloudtask/{model}/",
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )
    assert response.status_code == 200
    return " | ".join(str(m) for m in response.context["messages"])


def test_task_list_filters_and_search(client: Client) -> None:
    tasks.noop().delay(name="alpha")
    tasks.send_email(to="x").delay(name="beta")
    page = client.get("/admin/cloudtask/localtask/", {"queue": "emails"})
    assert page.status_code == 200
    assert b"beta" in page.content
    assert b"alpha" not in page.content
    page = client.get("/admin/cloudtask/localtask/", {"q": "alph"})
    assert b"alpha" in page.content
    assert b"beta" not in page.content
    page = client.get("/admin/cloudtask/localtask/", {"status__exact": "failed"})
    assert b"alpha" not in page.content
    assert client.get("/admin/cloudtask/localtask/add/").status_code == 403


def test_task_actions(client: Client) -> None:
    later = tasks.noop().schedule(countdown=3600)
    failed = tasks.noop().delay()
    LocalTask.objects.filter(name=failed.name).update(status="failed", dispatch_count=3)
    pk_later = LocalTask.objects.get(name=later.name).pk
    pk_failed = LocalTask.objects.get(name=failed.name).pk

    assert act(client, "localtask", "run_now", [pk_later]) == "1 queued task(s) made due now."
    assert act(client, "localtask", "retry", [pk_later, pk_failed]) == (
        "1 failed task(s) queued again."
    )
    assert LocalTask.objects.get(pk=pk_failed).status == "queued"
    assert act(client, "localtask", "delete_tasks", [pk_failed]) == "1 task(s) deleted."
    assert LocalTask.objects.get(pk=pk_failed).status == "deleted"
    page = client.get("/admin/cloudtask/localtask/")
    assert b"delete_selected" not in page.content


def test_queue_actions(client: Client) -> None:
    tasks.noop().delay()
    tasks.noop().delay()
    queue = LocalQueue.objects.get(name="default")
    page = client.get("/admin/cloudtask/localqueue/")
    assert page.status_code == 200
    assert b'<td class="field-waiting">2</td>' in page.content

    assert act(client, "localqueue", "pause", [queue.pk]) == "Queue(s) paused."
    assert LocalQueue.objects.get(pk=queue.pk).paused
    assert act(client, "localqueue", "resume", [queue.pk]) == "Queue(s) resumed."
    assert not LocalQueue.objects.get(pk=queue.pk).paused
    assert act(client, "localqueue", "purge", [queue.pk]) == "2 task(s) purged."
    assert set(LocalTask.objects.values_list("status", flat=True)) == {"deleted"}


def test_tasks_are_listed_newest_first(client: Client) -> None:
    for name in ("first", "second", "third"):
        tasks.noop().delay(name=name)
    page = client.get("/admin/cloudtask/localtask/").content.decode()
    assert page.index(">third<") < page.index(">second<") < page.index(">first<")


def test_a_task_page_shows_the_call_and_hides_the_signature(client: Client) -> None:
    tasks.send_email(to="a@example.com").delay(name="welcome")
    pk = LocalTask.objects.get(name="welcome").pk
    page = client.get(f"/admin/cloudtask/localtask/{pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "send_email(to=&#x27;a@example.com&#x27;)" in html  # the call as it reads in code
    assert "X-CloudTask-Signature: (redacted)" in html
    assert "v1=" not in html  # the signature's value appears nowhere on the page
    assert "<details><summary>the request body (" in html  # the raw JSON, folded
    assert 'name="_save"' not in html  # read-only: nothing to save
    assert 'name="_continue"' not in html


def test_a_failed_task_says_what_failed_it(client: Client) -> None:
    exhausted = tasks.noop().delay(name="exhausted")
    gave_up = tasks.noop().delay(name="gave-up")
    LocalTask.objects.filter(name=exhausted.name).update(
        status="failed", dispatch_count=3, retry_reason="500 Internal Server Error"
    )
    LocalTask.objects.filter(name=gave_up.name).update(
        status="failed", dispatch_count=1, retry_reason="gave up", last_response_status=200
    )
    html = client.get("/admin/cloudtask/localtask/").content.decode()
    assert "failed after 3 attempt(s): 500 Internal Server Error" in html
    assert "failed: the task gave up (answered 200)" in html


def test_the_queue_form_refuses_a_name_cloud_tasks_would_refuse(client: Client) -> None:
    page = client.post("/admin/cloudtask/localqueue/add/", {"name": "my queue!"})
    assert page.status_code == 200
    assert "The queue name must be a Cloud Tasks queue id" in page.content.decode()
    assert not LocalQueue.objects.filter(name="my queue!").exists()
    page = client.post("/admin/cloudtask/localqueue/add/", {"name": "reports"})
    assert page.status_code == 302
    assert LocalQueue.objects.filter(name="reports").exists()


def test_a_result_page_keeps_the_traceback_and_pushes_again(client: Client) -> None:
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\n    boom()\nValueError'
    row = TaskResult.objects.create(
        call_id="c1", task="tests.tasks.add", args=[2], kwargs={"b": 3}, traceback=traceback
    )
    unknown = TaskResult.objects.create(call_id="c2", task="tests.tasks.gone")
    html = client.get(f"/admin/cloudtask/taskresult/{row.pk}/change/").content.decode()
    assert "add(2, b=3)" in html
    assert "\n  File &quot;x.py&quot;, line 1\n    boom()" in html  # indentation kept
    assert 'name="_save"' not in html
    messages = act(client, "taskresult", "push_again", [row.pk, unknown.pk])
    assert messages == (
        "1 call(s) pushed again. | Not pushed: gone(): no task is registered under "
        "'tests.tasks.gone'"
    )
    [pushed] = LocalTask.objects.all()
    assert pushed.task == "tests.tasks.add"


def test_actions_need_the_change_permission(client: Client) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_localtask"))
    browser = Client()
    browser.force_login(viewer)
    tasks.noop().delay()
    page = browser.get("/admin/cloudtask/localtask/")
    assert page.status_code == 200
    assert b"run_now" not in page.content


def test_workers_are_listed_with_their_heartbeat_and_tasks(client: Client) -> None:
    tasks.noop().delay()
    heartbeats.beat("w1", datetime.now(timezone.utc))
    claims.lease("default", 10, datetime.now(timezone.utc), worker="w1")
    page = client.get("/admin/cloudtask/localworker/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "w1" in text
    assert '<td class="field-running_tasks">1</td>' in text
    task = LocalTask.objects.get()
    detail = client.get(f"/admin/cloudtask/localtask/{task.pk}/change/").content.decode()
    assert "w1" in detail
