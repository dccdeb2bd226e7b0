"""Retries, Reject, request.retry(), on_failure and signals, through the real view."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from freezegun import freeze_time

from cloudtask import CloudTaskRequest, Reject, Retry, TaskDefinitionError, registry, signals, task
from cloudtask.models import LocalTask
from cloudtask.request import cloud_tasks_headers
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import delivery_headers, post

IMMEDIATE = "cloudtask.backends.immediate.ImmediateBackend"


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


@pytest.mark.parametrize(("duration", "last"), [(600, False), (0, True)])
def test_max_attempts_decides_the_last_attempt_only_without_a_max_retry_duration(
    duration: int, last: bool, received: list[tuple[str, dict[str, Any]]]
) -> None:
    # Cloud Tasks stops once both max_attempts and max_retry_duration (when set) are reached.
    queue = {"max_attempts": 2, "max_retry_duration": duration}
    with override_settings(CLOUDTASK={"BACKEND": IMMEDIATE, "QUEUES": {"default": queue}}):
        deliver("tests.tasks.record_request", retry_count=3)
        assert tasks.calls[-1][1].is_last_attempt is last
        with capture_tasks() as captured:
            response = deliver(
                "tests.tasks.retries_connection_errors_only", {"kind": "connection"}, retry_count=3
            )
    failed = [kwargs for name, kwargs in received if name == "task_failed"]
    assert response.status_code == 500
    if last:
        assert response.json()["reason"] == "max-attempts"
        assert [f["reason"] for f in failed] == ["max-attempts"]
        assert [c.task for c in captured] == [tasks.record_failure]
    else:
        assert response.json() == {"status": "failed", "error": "ConnectionError"}
        assert failed == []
        assert captured == []


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


@task(name="tests.failures.rejects_with_missing_handler", on_failure="tests.tasks.no_such_handler")
def rejects_with_missing_handler(request: CloudTaskRequest) -> None:
    raise Reject("gone")


def test_a_missing_on_failure_handler_never_breaks_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cloudtask"), capture_tasks() as captured:
        response = deliver("tests.failures.rejects_with_missing_handler")
    # The same answer as without a handler: the call failed for good, Cloud Tasks stops.
    assert response.status_code == 200
    assert response.json() == {
        "status": "failed",
        "error": "Reject",
        "reason": "rejected",
        "id": "call-7",
    }
    assert captured == []
    assert (
        "task=tests.failures.rejects_with_missing_handler id=call-7 "
        "on_failure_push_failed=tests.tasks.no_such_handler"
    ) in caplog.text


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


LOCAL = {"BACKEND": "cloudtask.backends.local.LocalBackend", "URL": "http://testserver/_tasks/"}


def deliver_stored(row: LocalTask, **header_values: str) -> Any:
    """POST a stored local task through the real view, with the headers Cloud Tasks adds."""
    headers = {k: v for k, v in row.headers.items() if k != "Content-Type"}
    headers.update(header_values)
    headers.update(cloud_tasks_headers(queue=row.queue, name=row.name, eta=None))
    return Client(enforce_csrf_checks=True, raise_request_exception=False).post(
        urlsplit(row.url).path, bytes(row.body), content_type="application/json", headers=headers
    )


@pytest.mark.django_db
def test_request_retry_copy_goes_where_the_retried_delivery_went() -> None:
    with override_settings(CLOUDTASK=LOCAL):
        call = tasks.retries_itself.using(queue="jobs", timeout=30)(countdown=5)
        call.url = "http://localhost/_tasks/"
        call.headers = {"X-Tenant": "t1"}
        call.delay()
        for _ in range(2):
            last = LocalTask.objects.order_by("id").last()
            assert last is not None
            assert deliver_stored(last).json()["status"] == "retrying"
        rows = list(LocalTask.objects.order_by("id"))
    assert [(r.queue, r.url, r.dispatch_deadline) for r in rows] == [
        ("jobs", "http://localhost/_tasks/", timedelta(seconds=30))
    ] * 3
    assert [r.headers.get("X-Tenant") for r in rows] == ["t1"] * 3
    assert [json.loads(bytes(r.body)).get("retries") for r in rows] == [None, 1, 2]


@pytest.mark.django_db
def test_request_retry_copy_takes_header_values_from_the_delivery() -> None:
    with override_settings(CLOUDTASK=LOCAL):
        call = tasks.retries_itself(countdown=5)
        call.headers = {"X-Api-Key": "k-1"}
        call.delay()
        [first] = LocalTask.objects.all()
        assert b"k-1" not in bytes(first.body)  # only the header's name is in the body
        deliver_stored(first, **{"X-Api-Key": "k-2"})
        copy = LocalTask.objects.order_by("id").last()
    assert copy is not None
    assert (copy.queue, copy.headers["X-Api-Key"]) == ("default", "k-2")


def test_only_a_call_that_differs_from_its_task_carries_a_route() -> None:
    with capture_tasks() as captured:
        tasks.send_email(to="a@example.com").delay()
        call = tasks.send_email.using(timeout=60)(to="b@example.com")
        call.headers = {"X-Tenant": "s3cret-tenant"}
        call.delay()
    plain, variant = (json.loads(c.http_request.body) for c in captured)
    # The wire format of an ordinary call is unchanged; receivers ignore keys they do not know.
    assert set(plain) == {"v", "task", "id", "args", "kwargs"}
    assert variant["route"] == {"timeout": 60.0, "headers": ["X-Tenant"]}
    assert b"s3cret-tenant" not in captured[1].http_request.body


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


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_retries", 1),
        ("retry_for", ValueError),
        ("on_failure", tasks.record_failure),
        ("name", "tests.tasks.other"),
        ("func", print),
    ],
)
def test_using_refuses_options_the_endpoint_takes_from_the_registry(
    option: str, value: Any
) -> None:
    with pytest.raises(TypeError) as excinfo:
        tasks.add.using(**{option: value})
    assert str(excinfo.value) == (
        f"tests.tasks.add.using() cannot change {option}: the endpoint runs the registered "
        "task, so the copy's value would be ignored. Set it in @task(...), or register another "
        "task."
    )


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


@freeze_time("2026-03-01 12:00:00")
def test_task_started_carries_the_delay_since_the_eta(
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    eta = timezone.now() - timedelta(seconds=2.5)
    post(body_for("tests.tasks.add"), headers=delivery_headers(eta=eta))
    post(body_for("tests.tasks.add"))  # no X-CloudTasks-TaskETA
    started = [kwargs for name, kwargs in received if name == "task_started"]
    assert started[0]["delay_ms"] == pytest.approx(2500.0)
    assert started[1]["delay_ms"] is None


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


# Refusal log lines ----------------------------------------------------------------------------


def test_a_refusal_after_decoding_logs_the_task_and_call_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cloudtask"):
        missing = deliver("tests.tasks.no_such_task")
        unbound = deliver("tests.tasks.add", {"c": 1})
        forged = post(body_for("tests.tasks.add"), signature="v1=" + "0" * 64)
    assert (missing.status_code, unbound.status_code, forged.status_code) == (404, 400, 403)
    lines = [r.getMessage() for r in caplog.records if r.name == "cloudtask"]
    assert lines[0].startswith("task=tests.tasks.no_such_task id=call-7 status=refused")
    assert "code=unknown-task" in lines[0]
    assert lines[1].startswith("task=tests.tasks.add id=call-7 status=refused code=bad-arguments")
    # A body whose signature does not verify is not trusted, not even for a log line.
    assert lines[2].startswith("task=- id=- status=refused code=forbidden")


def test_a_replayed_last_attempt_pushes_on_failure_once_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The X-CloudTasks-* counters are not signed: a replay (or a duplicate delivery) of the
    # last attempt gives up again, but the on_failure push is named after the call.
    caplog.set_level(logging.INFO, "cloudtask")
    with capture_tasks() as captured:
        for _ in range(3):
            response = deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=2)
            assert response.json()["reason"] == "max-retries"
    assert [c.task for c in captured] == [tasks.record_failure]
    assert caplog.text.count("on_failure_already_pushed=true") == 2


def test_another_call_of_the_same_task_gets_its_own_on_failure() -> None:
    with capture_tasks() as captured:
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=2)
        deliver("tests.tasks.fails_twice_allowed", {"n": 1}, retry_count=2, id="call-8")
    assert [c.kwargs["id"] for c in captured] == ["call-7", "call-8"]
