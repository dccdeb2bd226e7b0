"""cloudtask as a backend of Django's task framework: enqueue, run, results, signals, errors.

The transport is whatever CLOUDTASK["BACKEND"] is: ImmediateBackend (the test settings),
capture_tasks(), the local queue with its worker over HTTP, and the Cloud Tasks emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import django
import pytest
from django.core.checks import run_checks
from django.db import transaction
from django.test import override_settings
from django.utils import timezone as dj_timezone
from freezegun import freeze_time

from cloudtask import ConfigurationError, conf, registry, signing
from cloudtask.backends.local.worker import Worker
from cloudtask.django_tasks import TaskResult, TaskResultStatus
from cloudtask.django_tasks import task as django_task
from cloudtask.models import LocalTask
from cloudtask.models import TaskResult as Row
from cloudtask.testing import capture_tasks
from tests import dj_tasks
from tests.support.helpers import delivery_headers, post
from tests.support.worker import drain

try:
    from django.tasks import task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:
    from django_tasks import task_backends  # type: ignore[no-redef]
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        InvalidTaskError as InvalidTask,
    )
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django_tasks.signals import (  # type: ignore[no-redef]
        task_enqueued,
        task_finished,
        task_started,
    )

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    dj_tasks.calls.clear()
    yield
    dj_tasks.calls.clear()


@pytest.fixture
def sent() -> Iterator[list[tuple[str, Any]]]:
    """Django's task signals as they are sent: (signal, status)."""
    found: list[tuple[str, Any]] = []
    receivers = []
    for name, signal in (
        ("enqueued", task_enqueued),
        ("started", task_started),
        ("finished", task_finished),
    ):

        def receiver(sender: Any, task_result: Any, _name: str = name, **kwargs: Any) -> None:
            found.append((_name, task_result.status))

        signal.connect(receiver)
        receivers.append((signal, receiver))
    yield found
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def deliver(captured: Any, retry_count: int = 0) -> Any:
    """POST a captured task as Cloud Tasks' delivery number ``retry_count + 1``."""
    headers = {
        **captured.http_request.headers,
        **delivery_headers(
            queue=captured.queue,
            name=captured.name,
            retry_count=retry_count,
            execution_count=retry_count,
        ),
    }
    return post(captured.http_request.body, signature=None, headers=headers)


# Immediate: the task runs as it is enqueued ------------------------------------------------


def test_enqueue_runs_at_once_on_immediate_and_the_result_is_stored(
    sent: list[tuple[str, Any]],
) -> None:
    result = dj_tasks.add.enqueue(1, b=5)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 6
    assert (result.args, result.kwargs, result.attempts) == ([1], {"b": 5}, 1)
    assert result.enqueued_at is not None
    assert result.started_at is not None
    assert result.finished_at is not None
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert [name for name, _ in sent] == ["enqueued", "started", "finished"]
    assert dj_tasks.add.get_result(result.id) == result
    row = Row.objects.get(call_id=result.id)
    assert (row.task, row.status, row.backend, row.result) == (
        "tests.dj_tasks.add",
        "succeeded",
        "default",
        6,
    )


def test_a_task_whose_runner_left_the_registry_is_registered_again() -> None:
    # As when a test's registry.isolated() block registered it first and has ended.
    with registry.isolated():
        assert dj_tasks.add.enqueue(1, b=1).return_value == 2
        registry.unregister(dj_tasks.add.module_path)
        assert dj_tasks.add.enqueue(2, b=2).return_value == 4
        assert dj_tasks.add.module_path in registry


def test_a_failure_on_immediate_is_a_failed_result_not_an_exception() -> None:
    result = dj_tasks.fails.enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class is ValueError
    assert result.errors[-1].traceback.endswith("ValueError: This task failed\n")
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert dj_tasks.fails.get_result(result.id) == result


def test_async_tasks_run() -> None:
    result = dj_tasks.add_async.enqueue(2, 3)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


# Over HTTP: capture_tasks() and the real view ------------------------------------------------


def test_enqueue_is_an_ordinary_push_through_the_real_view(sent: list[tuple[str, Any]]) -> None:
    with capture_tasks() as captured:
        result = dj_tasks.send_welcome.enqueue(user_id=7)
        assert result.status == TaskResultStatus.READY
        assert sent == [("enqueued", TaskResultStatus.READY)]
        [task] = captured
        assert task.queue == "emails"  # "Mail Queue" through OPTIONS["QUEUE_MAP"]
        assert task.call_id == result.id
        assert json.loads(task.http_request.body)["task"] == "tests.dj_tasks.send_welcome"
        [response] = captured.run_all()
    assert response.status_code == 200
    assert dj_tasks.calls == [("send_welcome", 7)]
    result.refresh()
    assert (result.status, result.return_value, result.attempts) == (
        TaskResultStatus.SUCCESSFUL,
        "welcome 7",
        1,
    )
    assert [name for name, _ in sent] == ["enqueued", "started", "finished"]


def test_a_tampered_request_is_refused_and_nothing_runs() -> None:
    with capture_tasks() as captured:
        dj_tasks.add.enqueue(1)
    [task] = captured
    body = task.http_request.body.replace(b"[1]", b"[1000]")
    headers = {**task.http_request.headers, **delivery_headers()}
    assert post(body, signature=None, headers=headers).status_code == 403
    assert dj_tasks.calls == []


def test_a_retried_attempt_stays_ready_then_the_context_counts_deliveries() -> None:
    with capture_tasks() as captured:
        result = dj_tasks.knows_its_attempt.enqueue(fail_until=2)
    [task] = captured
    first = deliver(task, retry_count=0)
    assert first.status_code == 500  # Cloud Tasks retries it
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.errors[-1].exception_class is ValueError
    second = deliver(task, retry_count=1)
    assert second.status_code == 200
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 2, "id": result.id}
    assert result.attempts == 2
    assert dj_tasks.calls == [("knows_its_attempt", 1), ("knows_its_attempt", 2)]


@override_settings(
    CLOUDTASK={
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "QUEUES": {"default": {"max_attempts": 2}},
    }
)
def test_the_last_attempt_fails_for_good() -> None:
    with capture_tasks() as captured:
        result = dj_tasks.fails.enqueue()
    assert deliver(captured[0], retry_count=1).status_code == 500
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.finished_at is not None


@pytest.mark.parametrize(
    ("task", "error", "message"),
    [
        (dj_tasks.exits, SystemExit, "SystemExit: exit now"),
        (dj_tasks.returns_a_lambda, TypeError, "Unsupported type"),
    ],
)
def test_system_exit_and_a_non_json_result_fail_for_good(
    task: Any, error: type, message: str
) -> None:
    with capture_tasks() as captured:
        result = task.enqueue()
        [response] = captured.run_all()
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class is error
    assert message in result.errors[-1].traceback


# Scheduling ----------------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@freeze_time(NOW)
@pytest.mark.parametrize(
    ("run_after", "eta"),
    [
        (timedelta(minutes=5), NOW + timedelta(minutes=5)),
        (NOW + timedelta(hours=1), NOW + timedelta(hours=1)),
        (NOW - timedelta(hours=1), None),  # past: now
    ],
)
def test_run_after_becomes_the_schedule_time(run_after: Any, eta: datetime | None) -> None:
    with capture_tasks() as captured:
        result = dj_tasks.add.using(run_after=run_after).enqueue(1)
    assert captured[0].eta == eta
    assert dj_tasks.add.get_result(result.id) == result


@pytest.mark.parametrize(
    ("run_after", "message"),
    [
        (timedelta(days=31), "more than 30 days ahead"),
        (datetime.now(timezone.utc) + timedelta(days=31), "at most 30 days ahead"),
        (datetime(2030, 1, 1), "run_after must be an aware datetime"),
        (timedelta(seconds=-1), "must not be a negative timedelta"),
    ],
)
def test_a_bad_run_after_is_refused_before_anything_is_pushed(run_after: Any, message: str) -> None:
    with capture_tasks() as captured, pytest.raises(InvalidTask, match=message):
        dj_tasks.add.using(run_after=run_after).enqueue(1)
    assert captured == []


# Bad input -----------------------------------------------------------------------------------


def test_arguments_are_checked_before_anything_is_pushed() -> None:
    with capture_tasks() as captured:
        with pytest.raises(TypeError, match=r"tests.dj_tasks.add\(\): arguments are not JSON"):
            dj_tasks.add.enqueue({1, 2})
        with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
            dj_tasks.add.enqueue(1, c=3)
    assert captured == []
    assert not Row.objects.exists()


def test_what_cloud_tasks_cannot_do_is_refused() -> None:
    with pytest.raises(InvalidTask, match=r"priority of tasks\. Cloud Tasks has no priorities"):
        dj_tasks.add.using(priority=10)
    with pytest.raises(InvalidTask, match="Queue 'other' is not valid") as refused:
        dj_tasks.add.using(queue_name="other")
    assert "['QUEUES'] lists 'Mail Queue', 'default', 'emails': add" in str(refused.value)

    def nested() -> None:
        pass

    with pytest.raises(InvalidTask, match="module level"):
        django_task(nested)


@override_settings(
    TASKS={
        "default": {
            "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
            "QUEUES": ["default", "bad queue!"],
            "OPTIONS": {"QUEUE_MAP": {"x": 1}, "RESULTS": "yes", "SPEED": 1},
        }
    }
)
def test_bad_options_are_reported_by_the_checks() -> None:
    found = {(m.id, m.msg) for m in run_checks() if m.id.startswith("cloudtask.E04")}
    ids = sorted(check_id for check_id, _ in found)
    assert ids == ["cloudtask.E040", "cloudtask.E041"]
    with override_settings(
        TASKS={
            "default": {
                "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
                "QUEUES": ["default", "bad queue!"],
                "OPTIONS": {"RESULTS": "yes"},
            }
        }
    ):
        messages = {m.id: m.msg for m in run_checks() if m.id.startswith("cloudtask.E04")}
    assert set(messages) == {"cloudtask.E042", "cloudtask.E043"}
    assert "'bad queue!'" in messages["cloudtask.E043"]
    assert "QUEUE_MAP" in messages["cloudtask.E043"]


# Results -------------------------------------------------------------------------------------


@pytest.mark.parametrize("result_id", ["0" * 32, "../etc/passwd", "x" * 500, ""])
def test_unknown_or_malformed_ids_do_not_exist(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        dj_tasks.add.get_result(result_id)


def test_another_task_s_result_is_a_mismatch() -> None:
    result = dj_tasks.add.enqueue(1)
    with pytest.raises(TaskResultMismatch):
        dj_tasks.fails.get_result(result.id)


def test_a_cloudtask_call_id_is_not_a_django_result() -> None:
    from tests import tasks

    with override_settings(CLOUDTASK={"BACKEND": conf.IMMEDIATE_BACKEND, "RESULTS": True}):
        handle = tasks.add(1, 2).delay()
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(handle.call_id)


@pytest.mark.django_db(transaction=True)
@override_settings(
    TASKS={
        "default": {
            "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"ENQUEUE_ON_COMMIT": True},
        }
    }
)
def test_enqueue_on_commit_pushes_nothing_on_rollback() -> None:
    def rolled_back() -> None:
        with transaction.atomic():
            dj_tasks.add.enqueue(1)
            raise RuntimeError("rolled back")

    with capture_tasks() as captured:
        with pytest.raises(RuntimeError):
            rolled_back()
        assert captured == []
        with transaction.atomic():
            result = dj_tasks.add.enqueue(2)
            assert captured == []
        assert [c.call_id for c in captured] == [result.id]
    assert not Row.objects.exclude(call_id=result.id).exists()


def test_both_decorators_share_one_registry_and_endpoint() -> None:
    from tests import tasks

    assert "tests.dj_tasks.add" in registry
    assert "tests.tasks.add" in registry
    with capture_tasks() as captured:
        dj_tasks.add.enqueue(1)
        tasks.add(1, 2).delay()
        responses = captured.run_all()
    assert [r.status_code for r in responses] == [200, 200]
    assert {c.url for c in captured} == {"http://testserver/_tasks/"}


# The local queue over real HTTP ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_local_worker_delivers_a_django_task(static_url: None, live_server: Any) -> None:
    local = {"BACKEND": conf.LOCAL_BACKEND, "URL": live_server.url + "/_tasks/"}
    with override_settings(CLOUDTASK=local):
        result = dj_tasks.add.enqueue(20, b=22)
        assert LocalTask.objects.get().task == "tests.dj_tasks.add"
        drain(Worker())
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
    assert isinstance(result, TaskResult)
    assert dj_timezone.is_aware(result.finished_at)


def test_signatures_cover_django_tasks_like_any_other() -> None:
    with capture_tasks() as captured:
        dj_tasks.add.enqueue(1)
    [task] = captured
    header = task.http_request.headers[signing.SIGNATURE_HEADER]
    signing.verify("/_tasks/", task.http_request.body, header)


def test_a_delivery_naming_a_task_this_side_does_not_have_is_404() -> None:
    body = json.dumps({"v": 1, "task": "tests.dj_tasks.missing", "id": "c1"}).encode()
    response = post(body)
    assert response.status_code == 404
    assert response.json()["error"] == "unknown-task"


@pytest.mark.slow
def test_enqueue_creates_a_cloud_tasks_task_with_the_real_client(quiet_emulator: Any) -> None:
    with override_settings(CLOUDTASK=quiet_emulator.settings()):
        result = dj_tasks.send_welcome.enqueue(user_id=3)
    [request] = quiet_emulator.created("CreateTask")
    assert request.parent.endswith("/queues/emails")
    body = request.task.http_request.body
    assert json.loads(body) == {
        "v": 1,
        "task": "tests.dj_tasks.send_welcome",
        "id": result.id,
        "args": [],
        "kwargs": {"user_id": 3},
    }
    header = request.task.http_request.headers[signing.SIGNATURE_HEADER]
    signing.verify("/_tasks/", body, header)
    row = Row.objects.get(call_id=result.id)
    assert row.task_name  # the id Cloud Tasks gave the task


@pytest.mark.skipif(django.VERSION < (6, 1), reason="@task(**options) needs Django 6.1")
def test_cloudtask_options_pass_through_the_task_class() -> None:
    task = dj_tasks.with_options  # type: ignore[attr-defined]
    assert task.timeout == 30
    adapter = registry.get(task.module_path)
    assert adapter.timeout == timedelta(seconds=30)
    assert adapter.max_retries == 3
    with capture_tasks() as captured:
        task.enqueue()
    assert captured[0].http_request.headers["X-Tenant"] == "a"


@override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"])
def test_without_cloudtask_installed_the_check_and_enqueue_say_so() -> None:
    backend = task_backends["default"]
    [error] = [m for m in backend.check() if m.id == "cloudtask.E044"]
    assert 'add "cloudtask" to INSTALLED_APPS' in error.msg
    with pytest.raises(ConfigurationError, match='add "cloudtask" to INSTALLED_APPS'):
        dj_tasks.add.enqueue(1)


def test_a_delivery_follows_the_backend_configured_now() -> None:
    with override_settings(
        TASKS={
            "default": {
                "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
                "QUEUES": ["default"],
                "OPTIONS": {"RESULTS": False},
            }
        }
    ):
        result = dj_tasks.add.enqueue(1)
        assert result.status == TaskResultStatus.SUCCESSFUL
    assert not Row.objects.filter(call_id=result.id).exists()
    # Back to the project's TASKS, which keeps results: deliveries follow it again.
    again = dj_tasks.add.enqueue(1)
    assert Row.objects.get(call_id=again.id).status == "succeeded"
