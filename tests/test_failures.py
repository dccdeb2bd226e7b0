"""Retries, Reject, request.retry(), on_failure and signals, through the real view."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from freezegun import freeze_time

from cloudtask import Reject, Retry, TaskDefinitionError, registry, signals, task
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.helpers import delivery_headers, post


def body_for(name: str, kwargs: dict[str, Any] | None = None, **extra: Any) -> bytes:
    data = {"v": 1, "task": name, "id": "call-7", "args": [], "kwargs": kwargs or {}, **extra}
    return json.dumps(data).encode()


def deliver(
    name: str, kwargs: dict[str, Any] | None = None, retry_count: int = 0, **extra: Any
) -> Any:
    headers = delivery_headers(retry_count=retry_count, execution_count=retry_count)
    return post(body_for(name, kwargs, **extra), headers=headers)


def handler_calls() -> list[dict[str, Any]]:
    return [payload for name, payload in tasks.calls if name == "record_failure"]


# max_retries -----------------------------------------------------------------------------------


def test_failure_below_max_retries_answers_500_for_a_retry() -> None:
    with capture_tasks() as captured:
        response = deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=1)
    assert response.status_code == 500
    assert response.json() == {"status": "failed", "error": "ValueError"}
    assert captured == []


def test_failure_at_max_retries_gives_up_with_200_and_pushes_on_failure() -> None:
    with capture_tasks() as captured:
        response = deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=2)
        assert response.status_code == 200
        assert response.json() == {
            "status": "failed",
            "error": "ValueError",
            "reason": "max-retries",
            "id": "call-7",
        }
        assert [c.task for c in captured] == [tasks.record_failure]
        captured.run_all()
    [payload] = handler_calls()
    assert payload["task"] == "tests.tasks.fails_twice_allowed"
    assert payload["id"] == "call-7"
    assert (payload["args"], payload["kwargs"]) == ([], {"n": 1})
    assert payload["error"]["type"] == "builtins.ValueError"
    assert payload["error"]["message"] == "attempt 2 of 1"
    assert payload["error"]["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"attempt {request.retries} of {n}")' in payload["error"]["traceback"]


def test_is_last_attempt_follows_max_retries() -> None:
    assert deliver("tests.tasks.reports_last_attempt", retry_count=0).json()["result"] is False
    assert deliver("tests.tasks.reports_last_attempt", retry_count=1).json()["result"] is True
    assert tasks.reports_last_attempt()() is True


@override_settings(
    CLOUDTASK={
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "QUEUES": {"default": {"max_attempts": 3}},
    }
)
def test_is_last_attempt_follows_the_queue_max_attempts() -> None:
    assert deliver("tests.tasks.record_request", retry_count=1).status_code == 200
    request = tasks.calls[-1][1]
    assert request.is_last_attempt is False
    deliver("tests.tasks.record_request", retry_count=2)
    assert tasks.calls[-1][1].is_last_attempt is True


@override_settings(
    CLOUDTASK={
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "QUEUES": {"default": {"max_attempts": 2}},
    }
)
def test_failure_on_the_queues_last_attempt_is_final() -> None:
    with capture_tasks():
        assert deliver("tests.tasks.fails_with_value_error", retry_count=0).status_code == 500
        response = deliver("tests.tasks.fails_with_value_error", retry_count=1)
    # Cloud Tasks stops after its last attempt whatever the answer; 500 shows it as failed.
    assert response.status_code == 500
    assert response.json()["reason"] == "max-attempts"


# retry_for and Reject -------------------------------------------------------------------------


def test_retry_for_retries_listed_exceptions_only() -> None:
    with capture_tasks() as captured:
        listed = deliver("tests.tasks.retries_connection_errors_only", {"kind": "connection"})
        other = deliver("tests.tasks.retries_connection_errors_only", {"kind": "other"})
        captured.run_all()
    assert listed.status_code == 500
    assert other.status_code == 200
    assert other.json()["reason"] == "not-retryable"
    assert other.json()["error"] == "KeyError"
    [payload] = handler_calls()
    assert payload["error"]["type"] == "builtins.KeyError"


def test_reject_fails_for_good_without_retry() -> None:
    with capture_tasks() as captured:
        response = deliver("tests.tasks.rejects")
        captured.run_all()
    assert response.status_code == 200
    assert response.json() == {
        "status": "failed",
        "error": "Reject",
        "reason": "rejected",
        "id": "call-7",
    }
    [payload] = handler_calls()
    assert payload["error"]["type"] == "cloudtask.exceptions.Reject"
    assert payload["error"]["message"] == "order 42 no longer exists"


def test_a_missing_on_failure_handler_never_breaks_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cloudtask"):
        response = deliver("tests.tasks.fails_with_missing_handler")
    assert response.status_code == 500  # the task itself still retries
    with caplog.at_level(logging.ERROR, logger="cloudtask"), capture_tasks():
        response = deliver("tests.tasks.fails_with_missing_handler", retry_count=0, retries=0)
    assert response.status_code == 500


@override_settings(
    CLOUDTASK={
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "QUEUES": {"default": {"max_attempts": 1}},
    }
)
def test_a_failing_on_failure_push_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cloudtask"):
        response = deliver("tests.tasks.fails_with_missing_handler")
    assert response.status_code == 500
    assert response.json()["reason"] == "max-attempts"
    assert "on_failure_push_failed=tests.tasks.no_such_handler" in caplog.text


# request.retry() ------------------------------------------------------------------------------


@freeze_time("2026-03-01 12:00:00")
def test_request_retry_pushes_a_later_copy_and_answers_200() -> None:
    with capture_tasks() as captured:
        response = deliver("tests.tasks.retries_itself", {"countdown": 90})
    assert response.status_code == 200
    assert response.json() == {"status": "retrying", "id": "call-7", "countdown": 90.0}
    [copy] = captured
    assert copy.task is tasks.retries_itself
    assert copy.kwargs == {"countdown": 90}
    assert copy.call_id == "call-7"
    assert copy.eta == timezone.now() + timedelta(seconds=90)
    assert json.loads(copy.http_request.body)["retries"] == 1


def test_request_retry_counts_towards_max_retries() -> None:
    with capture_tasks() as captured:
        deliver("tests.tasks.retries_itself")
        captured.run_all()
    # First run + two copies (max_retries=2); the third retry() gives up and calls on_failure.
    assert [c for c in tasks.calls if c[0] == "retries_itself"] == [
        ("retries_itself", 0),
        ("retries_itself", 1),
        ("retries_itself", 2),
    ]
    [payload] = handler_calls()
    assert payload["error"]["type"] == "builtins.TimeoutError"
    assert payload["error"]["message"] == "upstream slow"
    assert [c.task for c in captured] == [
        tasks.retries_itself,
        tasks.retries_itself,
        tasks.record_failure,
    ]


def test_retry_count_from_headers_and_envelope_add_up() -> None:
    with capture_tasks():
        response = deliver("tests.tasks.retries_itself", retry_count=1, retries=1)
    assert response.json()["reason"] == "max-retries"


def test_request_retry_validates_countdown() -> None:
    from cloudtask import CloudTaskRequest

    with pytest.raises(ValueError, match="between 0 and 30 days"):
        CloudTaskRequest().retry(countdown=-5)
    with pytest.raises(Retry) as excinfo:
        CloudTaskRequest().retry(countdown=timedelta(minutes=2))
    assert excinfo.value.countdown == timedelta(minutes=2)


def test_immediate_backend_raises_reject_and_retry_to_the_caller() -> None:
    with pytest.raises(Reject):
        tasks.rejects().delay()
    with pytest.raises(Retry):
        tasks.retries_itself().delay()


# Option validation ---------------------------------------------------------------------------


def plain(request: Any) -> None: ...


def no_failure_kwargs(request: Any, x: int) -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be a whole number >= 0"),
        ({"max_retries": True}, "max_retries must be a whole number >= 0"),
        ({"retry_for": "ValueError"}, "retry_for must be an exception class"),
        ({"retry_for": (ValueError, int)}, "retry_for must be an exception class"),
        ({"on_failure": print}, "on_failure must be a task"),
    ],
)
def test_bad_failure_options_are_refused(options: dict[str, Any], message: str) -> None:
    with registry.isolated(), pytest.raises(TaskDefinitionError, match=message):
        task(name="bad.options", **options)(plain)


def test_on_failure_task_must_accept_the_failure_arguments() -> None:
    with registry.isolated():
        handler = task(name="bad.handler")(no_failure_kwargs)
        with pytest.raises(
            TaskDefinitionError,
            match="must accept the keyword arguments task, id, args, kwargs, error",
        ):
            task(name="uses.bad.handler", on_failure=handler)(plain)


# Signals --------------------------------------------------------------------------------------


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    names = ["task_pushed", "task_started", "task_succeeded", "task_retrying", "task_failed"]
    receivers = {}
    for name in names:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            events.append((_name, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield events
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_signal_order_for_success(received: list[tuple[str, dict[str, Any]]]) -> None:
    with capture_tasks() as captured:
        handle = tasks.add(a=1, b=2).delay()
        captured.run_all()
    assert [name for name, _ in received] == ["task_pushed", "task_started", "task_succeeded"]
    pushed, started, succeeded = (kwargs for _, kwargs in received)
    assert pushed["task"] is tasks.add
    assert pushed["handle"] == handle
    assert pushed["call_id"] == started["call_id"] == succeeded["call_id"] == handle.call_id
    assert succeeded["result"] == 3
    assert succeeded["duration_ms"] >= 0


def test_signal_order_for_retry_and_give_up(received: list[tuple[str, dict[str, Any]]]) -> None:
    with capture_tasks():
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=0)
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=2)
    names = [name for name, _ in received]
    assert names == ["task_started", "task_retrying", "task_started", "task_failed", "task_pushed"]
    failed = received[3][1]
    assert failed["reason"] == "max-retries"
    assert isinstance(failed["error"], ValueError)
    assert received[1][1]["countdown"] is None


def test_a_raising_receiver_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.task_started.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="cloudtask"):
            response = deliver("tests.tasks.add", {"a": 1, "b": 1})
    finally:
        signals.task_started.disconnect(broken)
    assert response.status_code == 200
    assert response.json()["result"] == 2
    assert (
        "signal_receiver_failed=test_a_raising_receiver_is_logged_not_fatal.<locals>.broken"
        in caplog.text
    )
