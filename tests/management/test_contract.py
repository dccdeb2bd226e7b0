"""One contract for queue and task management, run against each backend that has queues.

``backend`` names a backend with a queue manager: ``local`` (the test database) and
``cloudtasks`` (the real client over gRPC to the in-process emulator, tests/support/emulator.py,
started without its dispatcher so queued tasks stay put). Each test states behaviour Cloud
Tasks has. The emulator implements CreateQueue, GetQueue, ListQueues, PauseQueue,
ResumeQueue, PurgeQueue, DeleteQueue, ListTasks and RunTask; GetTask, DeleteTask and
UpdateQueue, and the answers where it departs from Cloud Tasks (NOT_FOUND, ALREADY_EXISTS,
the 7-day block on deleted names, paging and views), come from its servicer in
tests/support/emulator.py, which says the fact each stands on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from django.utils import timezone

import cloudtask
from cloudtask import (
    InvalidQueueConfig,
    ManagementNotSupported,
    QueueAlreadyExists,
    QueueDeletedRecently,
    QueueNotFound,
    TaskHandle,
    TaskNotFound,
)
from cloudtask.backends.management import REDACTED
from cloudtask.signing import SIGNATURE_HEADER
from tests import tasks
from tests.support.emulator import UNREACHABLE_URL

# The local backend needs the test database; pytest-django makes it only for marked tests.
pytestmark = pytest.mark.django_db

LOCAL = {"BACKEND": "cloudtask.backends.local.LocalBackend", "URL": UNREACHABLE_URL}


@pytest.fixture(params=[pytest.param("cloudtasks", marks=pytest.mark.slow), "local"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Configure one backend for the test; yield its name."""
    if request.param == "cloudtasks":
        config = request.getfixturevalue("quiet_emulator").settings()
    else:
        config = LOCAL
    with override_settings(CLOUDTASK=config):
        yield request.param


def new_queue() -> str:
    # Deleted names stay blocked (as on Cloud Tasks): never reuse one.
    return f"m-{uuid.uuid4().hex[:12]}"


def push_later(queue: str, count: int = 1) -> list[TaskHandle]:
    """Push ``count`` calls an hour (and one second more each) ahead, so they stay queued."""
    return [
        tasks.add.using(queue=queue)(a=i, b=1).schedule(countdown=3600 + i) for i in range(count)
    ]


def test_create_then_get_returns_the_config(backend: str) -> None:
    queue = new_queue()
    created = cloudtask.create_queue(
        queue, max_dispatches_per_second=5, max_attempts=7, min_backoff=2, max_backoff=60
    )
    got = cloudtask.get_queue(queue)
    for info in (created, got):
        assert info.name == queue
        assert info.path.endswith(f"/queues/{queue}")
        assert info.state == "running"
        assert info.config.max_dispatches_per_second == 5
        assert info.config.max_attempts == 7
        assert info.config.min_backoff == timedelta(seconds=2)
        assert info.config.max_backoff == timedelta(seconds=60)
        # What was not given keeps Cloud Tasks' defaults.
        assert info.config.max_concurrent_dispatches == 1000
        assert info.config.max_doublings == 16
    assert got.raw is not None


def test_creating_an_existing_queue_is_refused(backend: str) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue)
    with pytest.raises(QueueAlreadyExists) as excinfo:
        cloudtask.create_queue(queue, max_attempts=3)
    assert excinfo.value.queue == queue
    assert "update_queue" in str(excinfo.value)
    assert cloudtask.get_queue(queue).config.max_attempts == 100


@pytest.mark.parametrize(
    "call",
    [
        lambda q: cloudtask.get_queue(q),
        lambda q: cloudtask.update_queue(q, max_attempts=3),
        lambda q: cloudtask.pause_queue(q),
        lambda q: cloudtask.resume_queue(q),
        lambda q: cloudtask.purge_queue(q),
        lambda q: cloudtask.delete_queue(q),
        lambda q: list(cloudtask.list_tasks(q)),
        lambda q: cloudtask.get_task(q, "some-task"),
        lambda q: cloudtask.delete_task(q, "some-task"),
        lambda q: cloudtask.run_task(q, "some-task"),
    ],
    ids=[
        "get",
        "update",
        "pause",
        "resume",
        "purge",
        "delete",
        "list",
        "get_task",
        "delete_task",
        "run_task",
    ],
)
def test_a_missing_queue_is_queue_not_found(backend: str, call: Any) -> None:
    queue = new_queue()
    with pytest.raises(QueueNotFound) as excinfo:
        call(queue)
    assert excinfo.value.queue == queue
    assert f"/queues/{queue} does not exist" in str(excinfo.value)


def test_update_changes_only_the_given_options(backend: str) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue, max_attempts=7, max_dispatches_per_second=5)
    updated = cloudtask.update_queue(queue, max_attempts=3, max_retry_duration=timedelta(hours=1))
    got = cloudtask.get_queue(queue)
    for info in (updated, got):
        assert info.config.max_attempts == 3
        assert info.config.max_retry_duration == timedelta(hours=1)
        assert info.config.max_dispatches_per_second == 5  # kept


def test_update_validates_the_merged_config(backend: str) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue, min_backoff=10, max_backoff=20)
    with pytest.raises(InvalidQueueConfig, match=r"max_backoff'\] \(5 s\) must not be shorter"):
        cloudtask.update_queue(queue, max_backoff=5)
    assert cloudtask.get_queue(queue).config.max_backoff == timedelta(seconds=20)


def test_pause_and_resume(backend: str) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue)
    assert cloudtask.pause_queue(queue).state == "paused"
    assert cloudtask.get_queue(queue).state == "paused"
    assert cloudtask.resume_queue(queue).state == "running"
    assert cloudtask.get_queue(queue).state == "running"


def test_list_queues_is_sorted_and_includes_new_queues(backend: str) -> None:
    first, second = sorted([new_queue(), new_queue()])
    cloudtask.create_queue(second)
    cloudtask.create_queue(first)
    names = [info.name for info in cloudtask.list_queues()]
    assert names == sorted(names)
    assert names.index(first) < names.index(second)


def test_list_tasks_returns_each_task_once_across_pages(backend: str) -> None:
    queue = new_queue()
    handles = push_later(queue, 3)
    for page_size in (1, 2, 100):
        listed = list(cloudtask.list_tasks(queue, page_size=page_size))
        # Cloud Tasks promises no order (the local queue's is tested in test_manage_local).
        assert sorted(info.name for info in listed) == sorted(h.name for h in handles)
    (info,) = (info for info in listed if info.name == handles[0].name)
    assert info.queue == queue
    assert info.path.endswith(f"/queues/{queue}/tasks/{handles[0].name}")
    assert info.state == "queued"
    assert info.dispatch_count == 0
    assert info.response_count == 0
    assert info.first_attempt is None
    assert info.view == "basic"
    assert info.body is None
    assert info.headers is None


def test_get_task_basic_and_full(backend: str) -> None:
    queue = new_queue()
    (handle,) = push_later(queue)
    basic = handle.get()
    assert basic.name == handle.name
    assert basic.state == "queued"
    assert handle.eta is not None
    assert basic.schedule_time is not None
    assert abs(basic.schedule_time - handle.eta) < timedelta(milliseconds=1)
    assert basic.create_time is not None
    assert abs(basic.create_time - timezone.now()) < timedelta(minutes=1)
    assert basic.body is None
    full = cloudtask.get_task(queue, handle.name, view="full")
    assert full.view == "full"
    assert full.task == "tests.tasks.add"
    assert full.method == "POST"
    assert full.url == "http://127.0.0.1:9/_tasks/"  # both backends' settings push there
    assert full.body is not None
    envelope = json.loads(full.body)
    assert envelope["task"] == "tests.tasks.add"
    assert envelope["kwargs"] == {"a": 0, "b": 1}
    assert full.headers is not None
    # The signature would let anyone replay this body: it is never handed out.
    assert full.headers[SIGNATURE_HEADER] == REDACTED
    assert full.headers["Content-Type"] == "application/json"


def test_delete_task(backend: str) -> None:
    queue = new_queue()
    kept, deleted = push_later(queue, 2)
    assert deleted.delete() is True
    assert [info.name for info in cloudtask.list_tasks(queue)] == [kept.name]
    with pytest.raises(TaskNotFound) as excinfo:
        deleted.get()
    assert (excinfo.value.queue, excinfo.value.name) == (queue, deleted.name)
    with pytest.raises(TaskNotFound):
        cloudtask.delete_task(queue, deleted.name)
    assert cloudtask.delete_task(queue, deleted.name, not_found_ok=True) is False


def test_run_task_returns_the_task(backend: str) -> None:
    queue = new_queue()
    (handle,) = push_later(queue)
    info = handle.run()
    assert (info.name, info.queue) == (handle.name, queue)


def test_purge_empties_the_queue(backend: str) -> None:
    queue = new_queue()
    push_later(queue, 3)
    info = cloudtask.purge_queue(queue)
    assert info.name == queue
    assert list(cloudtask.list_tasks(queue)) == []
    assert cloudtask.get_queue(queue).name == queue  # the queue itself stays


def test_delete_queue_blocks_its_name(backend: str) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue)
    cloudtask.delete_queue(queue)
    with pytest.raises(QueueNotFound):
        cloudtask.get_queue(queue)
    assert queue not in [info.name for info in cloudtask.list_queues()]
    with pytest.raises(QueueDeletedRecently) as excinfo:
        cloudtask.create_queue(queue)
    assert excinfo.value.queue == queue


def test_sync_creates_updates_and_prunes(backend: str) -> None:
    declared, drifted, extra = new_queue(), new_queue(), new_queue()
    cloudtask.create_queue(drifted, max_attempts=9)
    cloudtask.create_queue(extra)
    queues = {
        declared: {"max_attempts": 4},
        drifted: {"max_attempts": 5, "min_backoff": 1},
        "reports": {},  # a queue other tests push to
    }
    settings = {**django_settings.CLOUDTASK, "QUEUES": queues}
    with override_settings(CLOUDTASK=settings):
        plan = {c.name: c for c in cloudtask.sync_queues(dry_run=True)}
        assert plan[declared].action == "create"
        assert plan[drifted].action == "update"
        assert plan[drifted].changes == {
            "max_attempts": (9, 5),
            "min_backoff": (timedelta(seconds=0.1), timedelta(seconds=1)),
        }
        assert extra not in plan  # undeclared queues are left alone without prune
        with pytest.raises(QueueNotFound):
            cloudtask.get_queue(declared)  # a dry run changes nothing

        done = {c.name: c.action for c in cloudtask.sync_queues()}
        assert (done[declared], done[drifted]) == ("create", "update")
        assert cloudtask.get_queue(declared).config.max_attempts == 4
        assert cloudtask.get_queue(drifted).config.min_backoff == timedelta(seconds=1)
        again = cloudtask.sync_queues(dry_run=True)
        assert {c.action for c in again} == {"unchanged"}

        pruned = {c.name: c.action for c in cloudtask.sync_queues(prune=True)}
        assert pruned[extra] == "delete"
        assert pruned["default"] == "unchanged"  # declared: the default queue
        assert pruned["emails"] == "unchanged"  # declared: tests.tasks.send_email's queue
    with pytest.raises(QueueNotFound):
        cloudtask.get_queue(extra)


# Input checks: the same on every backend, before anything is sent --------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: cloudtask.create_queue("bad name"),
            r"create_queue\(\): the queue name must be a Cloud Tasks queue id .* not 'bad name'",
        ),
        (lambda: cloudtask.create_queue("q", max_attempts=0), r"'max_attempts'\] must be -1"),
        (lambda: cloudtask.create_queue("q", retries=3), r"unknown option 'retries'; known"),
        (lambda: cloudtask.create_queue("q", min_backoff="1s"), r"number of seconds or a"),
        (lambda: cloudtask.create_queue("q", max_dispatches_per_second=501), r"at most 500"),
        (lambda: cloudtask.update_queue("q"), r"name at least one option"),
        (lambda: cloudtask.list_tasks("q", view="FULL"), r"view must be 'basic' or 'full'"),
        (lambda: cloudtask.list_tasks("q", page_size=0), r"page_size must be between 1 and"),
        (lambda: cloudtask.get_task("q", "bad/name"), r"not a valid Cloud Tasks id"),
    ],
)
def test_bad_input_is_refused_before_any_call(backend: str, call: Any, message: str) -> None:
    with pytest.raises(InvalidQueueConfig, match=message):
        call()


def test_backends_without_queues_say_so() -> None:
    with pytest.raises(ManagementNotSupported, match="ImmediateBackend keeps no queues"):
        cloudtask.list_queues()
