"""The schedules admin, through the real admin views, on the local worker and Cloud Scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from freezegun import freeze_time
from google.cloud import scheduler_v1

from cloudtask import conf
from cloudtask.models import LocalTask
from cloudtask.models import Schedule as Row
from tests.support.scheduler import PARENT, FakeScheduler

pytestmark = pytest.mark.django_db

NIGHTLY = {"task": "tests.tasks.periodic_report", "cron": "0 3 * * *", "kwargs": {"full": True}}


def login(superuser: bool = True) -> Client:
    if superuser:
        user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    else:
        user = User.objects.create_user("viewer", "viewer@example.com", "pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, action: str, names: list[str]) -> str:
    response = client.post(
        "/admin/cloudtask/schedule/",
        {"action": action, "_selected_action": names},
        follow=True,
    )
    assert response.status_code == 200
    return " | ".join(str(m) for m in response.context["messages"])


@pytest.fixture(name="local_settings")
def local_settings_fixture() -> Iterator[None]:
    local = {
        "BACKEND": conf.LOCAL_BACKEND,
        "URL": "http://127.0.0.1:8000/_tasks/",
        "SCHEDULES": {"nightly": NIGHTLY},
    }
    with override_settings(CLOUDTASK=local, TIME_ZONE="UTC"):
        yield


@pytest.mark.usefixtures("local_settings")
def test_the_list_shows_declared_schedules_with_next_run_and_history_link() -> None:
    client = login()
    with freeze_time("2026-12-02 12:00:00"):
        html = client.get("/admin/cloudtask/schedule/").content.decode()
    assert "nightly" in html
    assert "0 3 * * *" in html
    assert "tests.tasks.periodic_report" in html
    assert "Dec. 3, 2026, 3 a.m." in html
    assert "/admin/cloudtask/taskresult/?q=nightly." in html
    assert client.get("/admin/cloudtask/schedule/add/").status_code == 403
    detail = client.get("/admin/cloudtask/schedule/nightly/change/")
    assert detail.status_code == 200
    assert b"Save" not in detail.content


@pytest.mark.usefixtures("local_settings")
def test_pause_resume_and_run_now_actions() -> None:
    client = login()
    client.get("/admin/cloudtask/schedule/")  # the rows are made from the declarations
    assert "nightly: paused" in act(client, "pause", ["nightly"])
    assert Row.objects.get().paused
    assert "nightly: resumed" in act(client, "resume", ["nightly"])
    assert not Row.objects.get().paused
    assert "nightly: started" in act(client, "run_now", ["nightly"])
    assert LocalTask.objects.count() == 1


@pytest.mark.usefixtures("local_settings")
def test_viewers_see_schedules_but_cannot_act() -> None:
    client = login(superuser=False)
    page = client.get("/admin/cloudtask/schedule/")
    assert page.status_code == 200
    assert b"run_now" not in page.content


def test_on_cloud_scheduler_the_list_reads_the_jobs(scheduler: FakeScheduler) -> None:
    client = login()
    with override_settings(CLOUDTASK=scheduler.settings(SCHEDULES={"nightly": NIGHTLY})):
        html = client.get("/admin/cloudtask/schedule/").content.decode()
        assert "not-synced" in html
        from cloudtask.schedules.manage import sync_schedules

        sync_schedules()
        html = client.get("/admin/cloudtask/schedule/").content.decode()
        assert "enabled" in html
        assert "nightly: paused" in act(client, "pause", ["nightly"])
        job = scheduler.jobs[f"{PARENT}/jobs/cloudtask-nightly"]
        assert job.state == scheduler_v1.Job.State.PAUSED
        scheduler.disable_api()
        page: Any = client.get("/admin/cloudtask/schedule/", follow=True)
        assert "Schedules not read" in " ".join(str(m) for m in page.context["messages"])
