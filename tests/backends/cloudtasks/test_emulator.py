"""End to end: push with the real client -> gcloud-tasks-emulator -> HTTP POST -> our view."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.test import override_settings

from cloudtask import PushManyError, QueueNotFound, push_many
from tests import tasks
from tests.support.emulator import Emulator, queue_path, wait_for

pytestmark = pytest.mark.slow


def delivered(name: str) -> list[Any]:
    return [value for task, value in list(tasks.calls) if task == name]


def test_push_is_delivered_verified_and_run(emulator: Emulator, task_endpoint: str) -> None:
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        handle = tasks.record_request().delay()
        assert wait_for(lambda: delivered("record_request"))
    (request,) = delivered("record_request")
    assert request.task_name == handle.name
    # The emulator sends the full queue path where Cloud Tasks sends the queue id.
    assert request.queue_name == queue_path("default")
    assert request.retry_count == 0
    assert request.http_request.headers["User-Agent"].startswith("Python-urllib")


def test_arguments_arrive_as_json(emulator: Emulator, task_endpoint: str) -> None:
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        tasks.echo(1, [2, 3], key={"a": None}).delay()
        assert wait_for(lambda: delivered("echo"))
    assert delivered("echo") == [((1, [2, 3]), {"key": {"a": None}})]


def test_scheduled_task_arrives_after_its_eta(emulator: Emulator, task_endpoint: str) -> None:
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        pushed_at = time.monotonic()
        handle = tasks.record_delivery(n=7).schedule(countdown=1.5)
        assert wait_for(lambda: delivered("record_delivery"), timeout=10)
        arrived = time.monotonic() - pushed_at
    assert arrived >= 1.5
    assert delivered("record_delivery") == [(7, 0, handle.name)]


def test_push_to_a_new_queue_creates_it_and_delivers(
    emulator: Emulator, task_endpoint: str
) -> None:
    queue = f"auto-{uuid.uuid4().hex[:10]}"
    assert queue not in emulator.queue_names()
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        tasks.add.using(queue=queue)(a=20, b=22).delay()
        assert wait_for(lambda: delivered("add"))
    assert queue in emulator.queue_names()
    assert delivered("add") == [(20, 22)]


def test_tampered_request_is_refused_by_the_view(emulator: Emulator, task_endpoint: str) -> None:
    # Signed for another secret: the emulator delivers it, the view answers 403, nothing runs.
    other = {"SECRET": "another-secret-that-is-long-enough-0123456789"}
    # The live server's thread reads the settings of the moment: the queue holds the task
    # until the server's secret is the project's again, or it would verify under its own.
    emulator.state.pause_queue(queue_path("emails"))
    try:
        with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint, **other)):
            tasks.noop.using(queue="emails")().delay()
    finally:
        emulator.state.resume_queue(queue_path("emails"))
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        # A second task pushed afterwards proves the first one had its chance to run.
        tasks.add.using(queue="emails")(a=1, b=1).delay()
        assert wait_for(lambda: delivered("add"))
        time.sleep(0.3)
    assert delivered("noop") == []


def test_push_many_delivers_every_call_and_keeps_input_order(
    emulator: Emulator, task_endpoint: str
) -> None:
    with override_settings(CLOUDTASK=emulator.settings(URL=task_endpoint)):
        handles = push_many(tasks.record_delivery(n=i) for i in range(60))
        assert wait_for(lambda: len(delivered("record_delivery")) == 60, timeout=20)
    by_name = {name: n for n, _, name in delivered("record_delivery")}
    assert [by_name[h.name] for h in handles] == list(range(60))
    assert len(emulator.created()) == 60


def test_push_many_reports_failures_and_keeps_the_successes(emulator: Emulator) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    calls = [tasks.add(a=i) if i % 3 else tasks.add.using(queue=missing)(a=i) for i in range(12)]
    with (
        override_settings(CLOUDTASK=emulator.settings(AUTO_CREATE_QUEUES=False)),
        pytest.raises(PushManyError) as excinfo,
    ):
        push_many(calls, workers=4)
    error = excinfo.value
    assert sorted(error.errors) == [0, 3, 6, 9]
    assert all(isinstance(e, QueueNotFound) for e in error.errors.values())
    assert [h is None for h in error.handles] == [i % 3 == 0 for i in range(12)]
    assert all(h.queue == "default" for h in error.handles if h is not None)
    assert str(error).startswith("4 of 12 calls could not be pushed; the other 8 were")
    created = [r for r in emulator.created() if r.parent == queue_path("default")]
    assert len(created) == 8
