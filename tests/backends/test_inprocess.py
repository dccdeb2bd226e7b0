"""ImmediateBackend and capture_tasks(): the in-process ways a push is delivered."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from cloudtask import TaskHandle, signing
from cloudtask.backends import get_backend
from cloudtask.backends.immediate import ImmediateBackend
from cloudtask.message import build_message
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import post


def test_immediate_runs_through_the_signed_path_and_returns_a_handle() -> None:
    handle = tasks.add(a=2, b=2).delay()
    assert tasks.calls == [("add", (2, 2))]
    assert isinstance(handle, TaskHandle)
    assert handle.queue == "default"
    assert handle.name.isdigit()


def test_immediate_passes_cloud_tasks_headers_to_the_request() -> None:
    tasks.record_request().delay()
    request = tasks.calls[0][1]
    assert request.queue_name == "default"
    assert request.task_name.isdigit()
    assert request.retry_count == 0
    assert request.eta is not None
    assert request.http_request is None


def test_immediate_propagates_the_task_exception() -> None:
    with pytest.raises(ValueError, match="boom"):
        tasks.fails_with_value_error().delay()


def test_immediate_runs_scheduled_calls_at_once() -> None:
    handle = tasks.add(a=1, b=1).schedule(countdown=600)
    assert tasks.calls == [("add", (1, 1))]
    assert handle.eta is not None


def test_immediate_verifies_the_signature_like_the_view() -> None:
    backend = ImmediateBackend()
    call = tasks.add(a=1, b=1)
    call.consume()  # the test pushes a forged copy of its message by hand
    message = build_message(call, backend, eta=None, task_id=None)
    forged = type(message)(
        **{
            **message.__dict__,
            "headers": {**message.headers, signing.SIGNATURE_HEADER: "v1=" + "0" * 64},
        }
    )
    from cloudtask import PushError

    with pytest.raises(PushError, match=r"refused by the endpoint path \(403\)"):
        backend.push(forged)
    assert tasks.calls == []


def test_capture_records_exactly_what_cloud_tasks_would_send() -> None:
    eta = timezone.now() + timedelta(hours=1)
    with capture_tasks() as captured:
        handle = tasks.send_email(to="a@example.com").schedule(at=eta)
    assert len(captured) == 1
    c = captured[0]
    assert c.task is tasks.send_email
    assert (c.args, c.kwargs) == ([], {"to": "a@example.com"})
    assert c.queue == "emails"
    assert c.name == handle.name
    assert c.eta == handle.eta == eta
    assert c.url == "http://testserver/_tasks/"
    assert c.http_request.method == "POST"
    assert c.http_request.url == c.url
    assert c.http_request.headers == {
        "X-Tenant": "acme",
        "Content-Type": "application/json",
        "X-CloudTask-Signature": signing.sign("/_tasks/", c.http_request.body),
    }
    assert json.loads(c.http_request.body) == {
        "v": 1,
        "task": "tests.tasks.send_email",
        "id": c.call_id,
        "args": [],
        "kwargs": {"to": "a@example.com"},
    }
    assert tasks.calls == []


def test_run_all_posts_each_through_the_view() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        tasks.fails_with_value_error().delay()
        tasks.record_request().delay()
    responses = captured.run_all()
    assert [r.status_code for r in responses] == [200, 500, 200]
    assert responses[0].json()["result"] == 3
    assert responses[2].json()["result"]["task_name"] == captured[2].name
    assert responses[2].json()["result"]["has_http_request"] is True
    assert captured.run_all() == []


def test_run_all_runs_tasks_pushed_by_tasks() -> None:
    with capture_tasks() as captured:
        tasks.pushes_add().delay()
        responses = captured.run_all()
    assert [c.task for c in captured] == [tasks.pushes_add, tasks.add]
    assert [r.status_code for r in responses] == [200, 200]
    assert tasks.calls == [("add", (1, 1))]


def test_a_test_can_tamper_with_the_captured_request() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
    request = captured[0].http_request
    tampered = request.body.replace(b'"a":1', b'"a":100')
    signature = request.headers[signing.SIGNATURE_HEADER]
    assert post(tampered, signature=signature).status_code == 403
    assert post(request.body, signature=signature).status_code == 200


def test_capture_sees_pushes_from_other_threads() -> None:
    with capture_tasks() as captured:
        thread = threading.Thread(target=lambda: tasks.noop().delay())
        thread.start()
        thread.join()
    assert [c.task for c in captured] == [tasks.noop]


def test_capture_blocks_nest_and_restore_the_backend() -> None:
    with capture_tasks() as outer:
        tasks.noop().delay()
        with capture_tasks() as inner:
            tasks.add().delay()
        tasks.noop().delay()
    assert [c.task for c in outer] == [tasks.noop, tasks.noop]
    assert [c.task for c in inner] == [tasks.add]
    assert isinstance(get_backend(), ImmediateBackend)


@override_settings(
    CLOUDTASK={"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"},
    ROOT_URLCONF="tests.urls_without_endpoint",
)
def test_in_process_backends_need_the_endpoint_or_a_url() -> None:
    from cloudtask import ConfigurationError

    with pytest.raises(ConfigurationError, match=r'include\("cloudtask\.urls"\)'):
        tasks.noop().delay()


@override_settings(
    CLOUDTASK={
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "URL": "https://app.example.com/_tasks/",
    },
    ALLOWED_HOSTS=["app.example.com"],
)
def test_run_all_sends_the_host_and_scheme_of_the_task_url() -> None:
    with capture_tasks() as captured:
        tasks.record_request().delay()
        call = tasks.record_request()
        call.url = "https://elsewhere.example.com/_tasks/"
        call.push()
        responses = captured.run_all()
    assert [r.status_code for r in responses] == [200, 400]
    request = tasks.calls[0][1].http_request
    assert request.get_host() == "app.example.com"
    assert request.is_secure()
