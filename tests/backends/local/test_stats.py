"""``cloudtask_queues stats``: each local queue's recent activity, for "is anything stuck?"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

import cloudtask
from cloudtask import conf
from cloudtask.models import LocalTask
from tests import tasks
from tests.support.helpers import command_exit, run_command

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND}):
        yield


def finish(name: str, status: str, ago: float, http: int | None) -> None:
    when = timezone.now() - timedelta(seconds=ago)
    LocalTask.objects.filter(name=name).update(
        status=status,
        finished_at=when if status in ("succeeded", "failed") else None,
        last_response_at=when,
        last_response_status=http,
        dispatch_count=1,
    )


def test_stats_count_what_each_queue_did_and_what_waits() -> None:
    handles = [tasks.noop().delay() for _ in range(5)]
    tasks.send_email.using(queue="emails")(to="a@example.com").delay()
    finish(handles[0].name, "succeeded", 30, 200)
    finish(handles[1].name, "succeeded", 60, 200)
    finish(handles[2].name, "failed", 90, 500)
    finish(handles[3].name, "succeeded", 3600, 200)  # before the window
    finish(handles[4].name, "queued", 10, 503)  # failed an attempt; waits for a retry
    LocalTask.objects.filter(name=handles[4].name).update(
        schedule_time=timezone.now() - timedelta(seconds=42)
    )
    default, emails = cloudtask.queue_stats(minutes=5)
    assert (default.name, default.waiting, default.retrying) == ("default", 1, 1)
    assert (default.succeeded, default.failed, default.failing) == (2, 1, 2)
    assert default.per_minute == 0.6
    assert default.oldest_due_s is not None
    assert 42 <= default.oldest_due_s < 60
    assert (emails.name, emails.waiting, emails.succeeded) == ("emails", 1, 0)

    text = run_command("cloudtask_queues", "stats")
    assert text.splitlines()[0].split() == [
        "NAME",
        "WAITING",
        "RUNNING",
        "RETRYING",
        "SUCCEEDED",
        "FAILED",
        "FAILING",
        "PER_MIN",
        "OLDEST_DUE",
    ]
    assert text.splitlines()[1].split()[:8] == ["default", "1", "0", "1", "2", "1", "2", "0.6"]
    data = json.loads(run_command("cloudtask_queues", "stats", "--minutes", "120", "--json"))
    assert data[0]["name"] == "default"
    assert data[0]["succeeded"] == 3
    assert data[0]["window_s"] == 7200


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "20000"])
def test_a_bad_window_is_refused(minutes: str) -> None:
    code, message = command_exit("cloudtask_queues", "stats", "--minutes", minutes)
    assert code == 2
    assert "--minutes must be a number of minutes from 0 to 10080" in message


def test_other_backends_say_where_their_statistics_are() -> None:
    with override_settings(CLOUDTASK={"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}):
        code, message = command_exit("cloudtask_queues", "stats")
    assert code == 2
    assert "keeps no queues" in message
