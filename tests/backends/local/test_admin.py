"""The admin of the local queue, through the real admin views."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from cloudtask import conf
from cloudtask.models import LocalQueue, LocalTask
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
