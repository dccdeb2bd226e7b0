"""HTTP tasks to any URL (push_http): checked at the call, recorded, delivered byte-exact."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from django.test import override_settings

import cloudtask
from cloudtask import (
    HttpCall,
    PushError,
    PushManyError,
    TaskAlreadyExists,
    conf,
    push_http,
    push_many,
)
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalTask
from cloudtask.testing import capture_tasks
from tests import tasks, urls
from tests.support.emulator import Emulator
from tests.support.worker import T0, FakeClock, ScriptedServer, drain

SAE = "pusher@my-project.iam.gserviceaccount.com"
HOOK = "https://hooks.example.com/order?tenant=acme"


def claims(header: str) -> dict[str, Any]:
    payload = header.removeprefix("Bearer ").split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


def deliver() -> None:
    LocalTask.objects.update(schedule_time=T0)
    drain(Worker(clock=FakeClock(), log=lambda line: None))


# Bad input: a clear error, and nothing pushed.


@pytest.mark.parametrize(
    ("url", "options", "error", "message"),
    [
        ("/hooks/order/", {}, ValueError, "absolute http"),
        ("ftp://files.example.com/x", {}, ValueError, "absolute http"),
        (HOOK, {"method": "FETCH"}, ValueError, "must be one of POST, GET, HEAD"),
        (HOOK, {"method": "GET", "json": {"a": 1}}, ValueError, "GET.*cannot carry a body"),
        (HOOK, {"method": "HEAD", "body": b"x"}, ValueError, "HEAD.*cannot carry a body"),
        (HOOK, {"json": {}, "body": b"{}"}, TypeError, "json= or body=, not both"),
        (HOOK, {"body": "text"}, TypeError, r"must be bytes, not str; encode text"),
        (HOOK, {"json": {1, 2}}, TypeError, "not JSON-serialisable"),
        (HOOK, {"headers": {"X-CloudTask-Signature": "v1=0"}}, ValueError, "cannot be overridden"),
        (HOOK, {"headers": {"Authorization": "Bearer x"}}, ValueError, "choose it with auth="),
        (HOOK, {"headers": {"Content-Type": "a/b"}}, ValueError, "cannot be overridden"),
        (HOOK, {"audience": 7}, TypeError, "audience=...\\) must be a non-empty string"),
        (HOOK, {"audience": "x", "auth": None}, ValueError, "only applies with auth='oidc'"),
        (HOOK, {"auth": "basic"}, ValueError, "'oidc', 'oauth' or None"),
        (HOOK, {"content_type": "text/plain"}, ValueError, "applies to a body"),
        (HOOK, {"unique": True}, TypeError, "unique=True\\) needs name="),
        (HOOK, {"name": "has space"}, ValueError, "not a valid Cloud Tasks id"),
        (HOOK, {"timeout": 5}, ValueError, "between 15 seconds and 30 minutes"),
        (HOOK, {"countdown": -1}, ValueError, "must not be negative"),
        (HOOK, {"countdown": 40 * 86400}, ValueError, "at most 30 days"),
        (HOOK, {"queue": "no spaces"}, ValueError, "queue id"),
    ],
)
def test_bad_input_is_refused_before_anything_is_pushed(
    url: str, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with capture_tasks() as captured:
        with pytest.raises(error, match=message):
            push_http(url, **options)
        with pytest.raises(error, match=message):
            HttpCall(url, **options)
    assert captured == []


# What is recorded: exactly the request Cloud Tasks would send.


def test_capture_records_the_exact_request_without_a_signature() -> None:
    with override_settings(CLOUDTASK={"SAE": SAE}), capture_tasks() as captured:
        handle = push_http(
            HOOK, json={"id": 7}, headers={"X-Tenant": "acme"}, queue="webhooks", name="order-7"
        )
    [pushed] = captured
    assert (handle.name, handle.queue, handle.task, handle.call_id) == (
        "order-7",
        "webhooks",
        "",
        "",
    )
    assert pushed.is_http_task
    assert pushed.task is None
    assert pushed.http_request.method == "POST"
    assert pushed.http_request.url == HOOK
    assert pushed.http_request.body == b'{"id":7}'
    assert pushed.http_request.headers == {"X-Tenant": "acme", "Content-Type": "application/json"}
    # The audience is the URL unless given, as Cloud Tasks does.
    assert pushed.oidc_token == {"service_account_email": SAE, "audience": HOOK}


def test_raw_body_methods_audience_and_no_token() -> None:
    with override_settings(CLOUDTASK={"SAE": SAE}), capture_tasks() as captured:
        push_http(HOOK, body=b"\x00\xff", content_type="text/x-raw", method="put", audience="aud-1")
        push_http(HOOK, method="DELETE", auth=None)
        push_http(HOOK, method="GET", timeout=30)
    put, delete, get = captured
    assert (put.http_request.method, put.http_request.body) == ("PUT", b"\x00\xff")
    assert put.http_request.headers == {"Content-Type": "text/x-raw"}
    assert put.oidc_token == {"service_account_email": SAE, "audience": "aud-1"}
    assert (delete.http_request.body, delete.http_request.headers, delete.oidc_token) == (
        b"",
        {},
        None,
    )
    assert get.http_request.method == "GET"


def test_a_named_http_task_is_refused_while_its_name_is_taken() -> None:
    with capture_tasks() as captured:
        push_http(HOOK, name="order-7")
        with pytest.raises(TaskAlreadyExists):
            push_http(HOOK, name="order-7")
        first = push_http(HOOK, name="order-7", unique=True)
        second = push_http(HOOK, name="order-7", unique=True)
    assert first.name != second.name
    assert first.name.startswith("order-7-")
    assert len(captured) == 3


def test_run_all_sends_own_origin_http_tasks_through_django_and_keeps_the_others() -> None:
    urls.received.clear()
    sent: list[Any] = []
    with capture_tasks() as captured:
        push_http("http://testserver/hooks/order/?n=1", body=b"ping", content_type="text/plain")
        push_http(HOOK, json={"id": 7})
        tasks.add(a=1, b=2).delay()
    responses = captured.run_all()
    assert [r.status_code for r in responses] == [200, 200]
    assert urls.received == [("POST", "n=1", "text/plain", b"ping")]
    assert tasks.calls == [("add", (1, 2))]
    # A request to another host never leaves the process without a transport.
    [elsewhere] = captured.undelivered()
    assert elsewhere.url == HOOK
    assert captured.run_all(transport=sent.append) == [None]
    assert sent == [elsewhere.http_request]
    assert captured.undelivered() == []


def test_push_many_takes_http_tasks_with_task_calls() -> None:
    with capture_tasks() as captured:
        handles = push_many(
            [HttpCall(HOOK, json=[1]), tasks.add(a=1), HttpCall(HOOK, method="GET")]
        )
    assert [h.task for h in handles] == ["", "tests.tasks.add", ""]
    assert [c.http_request.method for c in captured] == ["POST", "POST", "GET"]
    with capture_tasks(), pytest.raises(PushManyError) as failed:
        push_many([HttpCall(HOOK, name="same"), HttpCall(HOOK, name="same")])
    assert isinstance(failed.value.errors[1], TaskAlreadyExists)


def test_push_http_is_public() -> None:
    assert {"push_http", "HttpCall"} <= set(cloudtask.__all__)


# The local worker: the same request, headers, retries as Cloud Tasks.


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "GET", "HEAD", "DELETE", "OPTIONS"])
def test_the_worker_delivers_every_method_byte_exact(scripted: ScriptedServer, method: str) -> None:
    body = bytes(range(256)) if method in ("POST", "PUT", "PATCH") else None
    content_type = "application/x-bytes" if body else None
    url = scripted.url + "hook?x=1"
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "SAE": SAE}):
        handle = push_http(
            url, method=method, body=body, content_type=content_type, headers={"X-Tenant": "a"}
        )
        deliver()
    [request] = scripted.requests
    assert (request["method"], request["path"]) == (method, "/_tasks/hook?x=1")
    assert request["body"] == (body or b"")
    headers = request["headers"]
    assert headers.get("Content-Type") == content_type
    assert headers["X-Tenant"] == "a"
    assert "X-CloudTask-Signature" not in headers
    assert headers["X-CloudTasks-TaskName"] == handle.name
    assert claims(headers["Authorization"])["aud"] == url
    assert LocalTask.objects.get(name=handle.name).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_the_worker_retries_an_http_task_on_500(scripted: ScriptedServer) -> None:
    scripted.answers = [(500, {}), (200, {})]
    handle = push_http(scripted.url, json={"n": 1})
    clock = FakeClock()
    worker = Worker(clock=clock, log=lambda line: None)
    LocalTask.objects.update(schedule_time=T0)
    drain(worker)
    clock.advance(60)
    drain(Worker(clock=clock, log=lambda line: None))
    assert len(scripted.requests) == 2
    assert scripted.requests[1]["headers"]["X-CloudTasks-TaskRetryCount"] == "1"
    assert scripted.requests[1]["body"] == b'{"n":1}'
    task = LocalTask.objects.get(name=handle.name)
    assert (task.status, task.dispatch_count, task.task) == ("succeeded", 2, "")


# Cloud Tasks (the emulator, with the real client).


@pytest.mark.slow
def test_the_created_cloud_task_is_the_raw_http_request(emulator: Emulator) -> None:
    with override_settings(CLOUDTASK=emulator.settings(SAE=SAE)):
        handle = push_http(
            HOOK, body=b"a,b\n", content_type="text/csv", method="PATCH", name="csv-1", timeout=60
        )
        # The emulator does not keep names; Cloud Tasks answers ALREADY_EXISTS for one in use.
        emulator.servicer.fail_next("CreateTask", grpc.StatusCode.ALREADY_EXISTS, "exists")
        with pytest.raises(TaskAlreadyExists):
            push_http(HOOK, name="csv-1")
        push_http("https://api.example.com/ping", method="GET", auth="oauth")
    created, _, oauth = emulator.created()
    request = created.task.http_request
    assert created.task.name.endswith("/tasks/csv-1")
    assert handle.name == "csv-1"
    assert request.url == HOOK
    assert request.http_method.name == "PATCH"
    assert request.body == b"a,b\n"
    assert dict(request.headers) == {"Content-Type": "text/csv"}
    assert request.oidc_token.service_account_email == SAE
    assert request.oidc_token.audience == HOOK
    assert created.task.dispatch_deadline.total_seconds() == 60
    assert oauth.task.http_request.http_method.name == "GET"
    assert oauth.task.http_request.oauth_token.scope == conf.CLOUD_PLATFORM_SCOPE


# ImmediateBackend: sent at once, once.


def test_the_immediate_backend_sends_an_http_task_at_once(scripted: ScriptedServer) -> None:
    scripted.answers = [(200, {}), (500, {}, b"upstream broke")]
    with override_settings(CLOUDTASK={"BACKEND": conf.IMMEDIATE_BACKEND, "SAE": SAE}):
        handle = push_http(scripted.url, body=b"hello", content_type="text/plain", name="n-1")
        with pytest.raises(PushError, match=r"answered 500: upstream broke"):
            push_http(scripted.url, method="DELETE")
        with pytest.raises(PushError, match=r"could not be sent: ConnectionRefusedError"):
            push_http("http://127.0.0.1:9/hook")
    first, second = scripted.requests
    assert (first["method"], first["body"], handle.name) == ("POST", b"hello", "n-1")
    assert first["headers"]["X-CloudTasks-TaskName"] == "n-1"
    assert "Authorization" not in first["headers"]  # nothing in-process mints tokens
    assert second["method"] == "DELETE"
