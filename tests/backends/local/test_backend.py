"""LocalBackend: what a push stores, named-task de-duplication, and queue operations."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.test import override_settings
from freezegun import freeze_time

import cloudtask
from cloudtask import TaskAlreadyExists, conf, signing
from cloudtask.backends.loading import get_backend
from cloudtask.backends.local import LocalBackend, store
from cloudtask.models import LocalQueue, LocalTask
from tests import tasks
from tests.support.helpers import delivery_headers, post

pytestmark = pytest.mark.django_db

URL = "https://app.example.com/_tasks/"


@pytest.fixture(autouse=True)
def _local_backend() -> Iterator[None]:
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": URL}):
        yield


def test_backend_is_the_default_without_project() -> None:
    with override_settings(CLOUDTASK={}):
        assert isinstance(get_backend(), LocalBackend)


def test_push_stores_the_exact_http_request() -> None:
    before = datetime.now(timezone.utc)
    handle = tasks.send_email(to="a@example.com").delay()
    task = LocalTask.objects.get()
    body = bytes(task.body)
    assert (handle.queue, handle.name, handle.eta) == ("emails", task.name, None)
    assert re.fullmatch(r"[0-9]{19}", task.name)
    assert (task.queue, task.task, task.method, task.url) == (
        "emails",
        "tests.tasks.send_email",
        "POST",
        URL,
    )
    assert task.headers == {
        "X-Tenant": "acme",
        "Content-Type": "application/json",
        "X-CloudTask-Signature": signing.sign("/_tasks/", body),
    }
    assert b'"task":"tests.tasks.send_email"' in body
    assert b'"kwargs":{"to":"a@example.com"}' in body
    assert task.status == "queued"
    assert before <= task.schedule_time <= datetime.now(timezone.utc)
    assert task.dispatch_deadline == timedelta(minutes=10)
    assert (task.dispatch_count, task.response_count, task.execution_count) == (0, 0, 0)
    assert task.first_attempt_at is None
    assert LocalQueue.objects.filter(name="emails", paused=False).exists()


def test_schedule_stores_the_eta_and_timeout_the_deadline() -> None:
    at = datetime.now(timezone.utc) + timedelta(hours=2)
    handle = tasks.add.using(timeout=30)(a=1, b=2).schedule(at=at)
    task = LocalTask.objects.get(name=handle.name)
    assert task.schedule_time == at
    assert handle.eta == at
    assert task.dispatch_deadline == timedelta(seconds=30)


def test_explicit_name_is_kept() -> None:
    handle = tasks.add(a=1, b=2).delay(name="invoice-42")
    assert handle.name == "invoice-42"
    assert LocalTask.objects.get().name == "invoice-42"


def test_default_url_is_runserver_plus_the_endpoint_path() -> None:
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND}):
        assert LocalBackend().default_url() == "http://127.0.0.1:8000/_tasks/"
        tasks.noop().delay()
    assert LocalTask.objects.get().url == "http://127.0.0.1:8000/_tasks/"


def test_named_task_refused_while_queued() -> None:
    first = tasks.named_refresh().delay()
    with pytest.raises(TaskAlreadyExists) as excinfo:
        tasks.named_refresh().delay()
    assert excinfo.value.name == first.name
    assert excinfo.value.queue == "default"
    assert str(excinfo.value) == (
        f"A task named {first.name!r} already exists in queue 'default'; Cloud Tasks refuses "
        "a name while the task is queued and for a while after it ran or was deleted."
    )
    assert LocalTask.objects.count() == 1


def test_same_name_in_another_queue_is_allowed() -> None:
    tasks.noop().delay(name="same")
    tasks.send_email(to="x").delay(name="same")
    assert sorted(LocalTask.objects.values_list("queue", flat=True)) == ["default", "emails"]


def test_refused_name_leaves_the_callers_transaction_usable() -> None:
    with transaction.atomic():
        tasks.named_refresh().delay()
        with pytest.raises(TaskAlreadyExists):
            tasks.named_refresh().delay()
        tasks.noop().delay()
    assert LocalTask.objects.count() == 2


def test_push_rolls_back_with_the_callers_transaction() -> None:
    def push_then_fail() -> None:
        with transaction.atomic():
            tasks.noop().delay()
            raise RuntimeError

    with pytest.raises(RuntimeError):
        push_then_fail()
    assert LocalTask.objects.count() == 0


@pytest.mark.parametrize("finish", ["succeeded", "failed", "deleted"])
def test_name_stays_taken_for_the_window_after_the_task_finished(finish: str) -> None:
    with freeze_time("2030-01-01 12:00:00"):
        handle = tasks.named_refresh().delay()
        LocalTask.objects.update(status=finish, finished_at=datetime.now(timezone.utc))
    with freeze_time("2030-01-01 12:59:59"), pytest.raises(TaskAlreadyExists):
        tasks.named_refresh().delay()
    with freeze_time("2030-01-01 13:00:00"):
        again = tasks.named_refresh().delay()
    assert again.name == handle.name
    assert list(LocalTask.objects.values_list("status", flat=True)) == ["queued"]


def test_window_is_configurable() -> None:
    settings = {"BACKEND": conf.LOCAL_BACKEND, "URL": URL, "LOCAL_DEDUP_WINDOW": 60}
    with override_settings(CLOUDTASK=settings):
        with freeze_time("2030-01-01 12:00:00"):
            tasks.named_refresh().delay()
            LocalTask.objects.update(status="succeeded", finished_at=datetime.now(timezone.utc))
        with freeze_time("2030-01-01 12:00:59"), pytest.raises(TaskAlreadyExists):
            tasks.named_refresh().delay()
        with freeze_time("2030-01-01 12:01:00"):
            tasks.named_refresh().delay()


def test_prune_removes_finished_tasks_past_the_window_but_keeps_failed() -> None:
    now = datetime.now(timezone.utc)
    for status in ("succeeded", "deleted", "failed"):
        tasks.noop().delay(name=status)
        LocalTask.objects.filter(name=status).update(
            status=status, finished_at=now - timedelta(hours=2)
        )
    tasks.noop().delay(name="recent")
    LocalTask.objects.filter(name="recent").update(status="succeeded", finished_at=now)
    assert store.prune(now) == 2
    assert sorted(LocalTask.objects.values_list("name", flat=True)) == ["failed", "recent"]


def test_queue_operations() -> None:
    a = tasks.noop().schedule(countdown=3600)
    b = tasks.noop().delay()
    LocalTask.objects.filter(name=b.name).update(status="failed", dispatch_count=5)
    e = tasks.send_email(to="x").delay()

    assert store.run_now(Q(name=a.name)) == 1
    assert LocalTask.objects.get(name=a.name).schedule_time <= datetime.now(timezone.utc)

    assert store.retry(Q(pk__in=LocalTask.objects.values("pk"))) == 1
    retried = LocalTask.objects.get(name=b.name)
    assert (retried.status, retried.dispatch_count) == ("queued", 0)

    store.pause("emails")
    assert LocalQueue.objects.get(name="emails").paused
    store.pause("emails", paused=False)
    assert not LocalQueue.objects.get(name="emails").paused

    assert store.purge("default") == 2
    assert LocalTask.objects.get(name=e.name).status == "queued"
    assert store.delete_tasks(Q(name=e.name)) == 1
    assert set(LocalTask.objects.values_list("status", flat=True)) == {"deleted"}


def test_the_endpoint_knows_the_last_attempt_of_a_local_queue_not_declared() -> None:
    cloudtask.create_queue("twice", max_attempts=2)
    body = json.dumps({"v": 1, "task": "tests.tasks.fails_on_queue", "id": "c-1"}).encode()
    headers = delivery_headers(queue="twice", retry_count=1, execution_count=1)
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": URL}):
        response = post(body, headers=headers)
    assert response.json()["reason"] == "max-attempts"
    assert [name for name, _ in tasks.calls] == ["fails_on_queue"]
    assert LocalTask.objects.get().task == "tests.tasks.record_failure"


class _SerializationFailure(Exception):
    """What psycopg raises when PostgreSQL cancels a transaction for a conflict."""

    sqlstate = "40001"


def _conflict() -> DatabaseError:
    error = DatabaseError("could not serialize access due to read/write dependencies")
    error.__cause__ = _SerializationFailure()
    return error


@pytest.mark.django_db(transaction=True)
def test_a_push_that_loses_to_a_worker_is_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # PostgreSQL under SERIALIZABLE cancels one of two conflicting transactions at COMMIT
    # (SQLSTATE 40001); the first add() stands for that one, the second is the real one.
    real, calls = store.add, []

    def loses_once(*args: object) -> str:
        calls.append(args)
        if len(calls) == 1:
            raise _conflict()
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "add", loses_once)
    handle = tasks.noop().delay()
    assert len(calls) == 2
    assert LocalTask.objects.get().name == handle.name
    # Inside a transaction of the caller's, that transaction is lost: the error is raised.
    calls.clear()
    with pytest.raises(DatabaseError), transaction.atomic():
        tasks.noop().delay()
    assert len(calls) == 1
