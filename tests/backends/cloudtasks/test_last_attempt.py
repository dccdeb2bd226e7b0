"""The last attempt on a queue not declared in CLOUDTASK["QUEUES"]: read from Cloud Tasks.

The queue is made with the real client in the emulator; the endpoint learns its retry policy
with GetQueue, caches it, and gives up on the queue's last attempt with ``on_failure``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import grpc
import pytest
from django.test import override_settings

import cloudtask
from tests import tasks
from tests.support.emulator import Emulator, queue_path
from tests.support.helpers import delivery_headers, post

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator(quiet_emulator: Emulator) -> Iterator[Emulator]:
    with override_settings(CLOUDTASK=quiet_emulator.settings()):
        yield quiet_emulator


def deliver(queue: str, retry_count: int) -> object:
    body = json.dumps(
        {"v": 1, "task": "tests.tasks.fails_on_queue", "id": f"c-{queue}", "kwargs": {}}
    ).encode()
    headers = delivery_headers(queue=queue, retry_count=retry_count, execution_count=retry_count)
    return post(body, headers=headers)


def on_failure_pushes(emulator: Emulator) -> list[str]:
    found = []
    for request in emulator.created("CreateTask"):
        data = json.loads(request.task.http_request.body)
        if data["task"] == "tests.tasks.record_failure":
            found.append(data["kwargs"]["id"])
    return found


def test_the_queue_s_max_attempts_decides_the_last_attempt(emulator: Emulator) -> None:
    queue = f"g-{uuid.uuid4().hex[:12]}"
    cloudtask.create_queue(queue, max_attempts=2)

    first = deliver(queue, retry_count=0)
    assert first.status_code == 500  # Cloud Tasks retries it
    assert first.json() == {"status": "failed", "error": "ValueError"}
    last = deliver(queue, retry_count=1)
    assert last.status_code == 500
    assert last.json()["reason"] == "max-attempts"
    assert on_failure_pushes(emulator) == [f"c-{queue}"]
    # Both deliveries asked once: the answer is kept.
    reads = [r.name for r in emulator.created("GetQueue")]
    assert reads == [queue_path(queue)]


def test_a_queue_with_a_retry_duration_never_declares_a_last_attempt(
    emulator: Emulator,
) -> None:
    queue = f"g-{uuid.uuid4().hex[:12]}"
    cloudtask.create_queue(queue, max_attempts=2, max_retry_duration=3600)
    assert "reason" not in deliver(queue, retry_count=5).json()
    assert on_failure_pushes(emulator) == []


def test_an_unreadable_queue_warns_once_and_delivers_as_before(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    queue = f"g-{uuid.uuid4().hex[:12]}"
    cloudtask.create_queue(queue, max_attempts=1)
    # Cloud Tasks answers PERMISSION_DENIED to an account without cloudtasks.queues.get.
    emulator.servicer.fail_next(
        "GetQueue",
        grpc.StatusCode.PERMISSION_DENIED,
        'The principal lacks IAM permission "cloudtasks.queues.get"',
    )
    with caplog.at_level(logging.WARNING, "cloudtask"):
        for _ in range(2):
            response = deliver(queue, retry_count=3)
            assert response.status_code == 500
            assert "reason" not in response.json()
    assert caplog.text.count("status=retry-config-unknown") == 1
    assert "roles/cloudtasks.viewer" in caplog.text
    assert on_failure_pushes(emulator) == []


def test_a_declared_queue_is_not_read(emulator: Emulator) -> None:
    settings = {**emulator.settings(), "QUEUES": {"declared": {"max_attempts": 2}}}
    with override_settings(CLOUDTASK=settings):
        assert deliver("declared", retry_count=1).json()["reason"] == "max-attempts"
    assert emulator.created("GetQueue") == []
    assert tasks.calls.count(("fails_on_queue", None)) == 1
