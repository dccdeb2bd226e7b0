"""The admin of the local queue, through the real admin views."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import include, path

from cloudtask import conf
from cloudtask.models import LocalQueue, LocalTask
from tests import tasks
from tests.settings import INSTALLED_APPS, MIDDLEWARE

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN_APPS = [
    "django.contrib.admin",
    "django.contrib.sessions",
    "django.contrib.messages",
    *INSTALLED_APPS,
]
ADMIN_MIDDLEWARE = [
    *MIDDLEWARE,
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


@pytest.fixture
def client() -> Iterator[Client]:
    with override_settings(
        INSTALLED_APPS=ADMIN_APPS,
        MIDDLEWARE=ADMIN_MIDDLEWARE,
        TEMPLATES=TEMPLATES,
        CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": "http://127.0.0.1:8000/_tasks/"},
    ):
        from django.contrib import admin

        urls = types.ModuleType("cloudtask_admin_test_urls")
        urls.urlpatterns = [  # type: ignore[attr-defined]
            path("admin/", admin.site.urls),
            path("_tasks/", include("cloudtask.urls")),
        ]
        sys.modules[urls.__name__] = urls
        call_command("migrate", verbosity=0)
        with override_settings(ROOT_URLCONF=urls.__name__):
            user = User.objects.create_superuser("admin", "admin@example.com", "pw")
            client = Client()
            client.force_login(user)
            yield client
        del sys.modules[urls.__name__]


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
