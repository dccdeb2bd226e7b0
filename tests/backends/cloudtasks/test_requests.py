"""The exact CreateTaskRequest the Cloud Tasks backend sends for each option.

Requests go through the real google-cloud-tasks client and a real gRPC server (the
gcloud-tasks-emulator servicer, recording what it receives), and are compared field by
field with a request built here from the client's own types.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.test import override_settings
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, timestamp_pb2

from cloudtask import ConfigurationError, PayloadTooLarge, TaskCall, TaskHandle, envelope, signing
from cloudtask.message import route
from cloudtask.task_ids import arguments_task_id, make_task_id
from tests import tasks
from tests.support.emulator import UNREACHABLE_URL, Emulator, queue_path

pytestmark = pytest.mark.slow

SAE = "invoker@test-project.iam.gserviceaccount.com"
SIGNED = {"Content-Type": "application/json"}


def pushed(emulator: Emulator, call: TaskCall[Any], **settings: Any) -> tuple[TaskHandle, Any]:
    """Push ``call`` with the emulator's settings; return the handle and the request sent."""
    with override_settings(CLOUDTASK=emulator.settings(**settings)):
        handle = call.delay()
    (request,) = emulator.created()
    return handle, request


def signed_body(call: TaskCall[Any], handle: TaskHandle) -> bytes:
    """Return the body the push carries: the envelope, with the call's route if it has one."""
    delivery = route(call)
    extra = {"route": delivery} if delivery else None
    return envelope.encode(call.task.name, handle.call_id, call.arguments_json, extra)


def http_task(
    call: TaskCall[Any], handle: TaskHandle, url: str = UNREACHABLE_URL, **fields: Any
) -> Any:
    body = signed_body(call, handle)
    path = url.split("127.0.0.1:9", 1)[-1].split("?")[0]
    request_fields: dict[str, Any] = {
        "url": url,
        "http_method": fields.pop("method", tasks_v2.HttpMethod.POST),
        "headers": {
            **fields.pop("headers", {}),
            **SIGNED,
            "X-CloudTask-Signature": signing.sign(path, body),
        },
        "body": body,
        **{k: fields.pop(k) for k in ("oidc_token", "oauth_token") if k in fields},
    }
    return tasks_v2.Task(http_request=tasks_v2.HttpRequest(**request_fields), **fields)


def test_default_push_is_a_signed_post_without_name_token_or_schedule(emulator: Emulator) -> None:
    call = tasks.add(a=1, b=2)
    handle, request = pushed(emulator, call)
    assert request == tasks_v2.CreateTaskRequest(
        parent=queue_path("default"), task=http_task(call, handle)
    )
    assert handle.queue == "default"
    assert handle.eta is None
    assert handle.name.isdigit()  # chosen by the server, returned without the queue path


def test_sae_adds_an_oidc_token_for_the_url(emulator: Emulator) -> None:
    call = tasks.add(a=1, b=2)
    handle, request = pushed(emulator, call, SAE=SAE)
    token = tasks_v2.OidcToken(service_account_email=SAE, audience=UNREACHABLE_URL)
    assert request.task == http_task(call, handle, oidc_token=token)


def test_oidc_audience_setting_wins_over_the_url(emulator: Emulator) -> None:
    call = tasks.add(a=1, b=2)
    audience = "https://app.example.com/_tasks/"
    handle, request = pushed(emulator, call, SAE=SAE, OIDC={"AUDIENCE": audience})
    token = tasks_v2.OidcToken(service_account_email=SAE, audience=audience)
    assert request.task == http_task(call, handle, oidc_token=token)


def test_auth_none_sends_no_token_even_with_sae(emulator: Emulator) -> None:
    call = tasks.without_token()
    handle, request = pushed(emulator, call, SAE=SAE)
    assert request.task == http_task(call, handle)


def test_auth_oauth_sends_an_oauth_token_with_the_scope(emulator: Emulator) -> None:
    call = tasks.with_oauth_token()
    handle, request = pushed(emulator, call, SAE=SAE)
    token = tasks_v2.OAuthToken(
        service_account_email=SAE, scope="https://www.googleapis.com/auth/cloud-tasks"
    )
    assert request.task == http_task(call, handle, oauth_token=token)


def test_auth_oauth_without_sae_is_refused_before_any_request(emulator: Emulator) -> None:
    with (
        override_settings(CLOUDTASK=emulator.settings()),
        pytest.raises(ConfigurationError, match=r"auth='oauth', which needs CLOUDTASK\['SAE'\]"),
    ):
        tasks.with_oauth_token().delay()
    assert emulator.created() == []


def test_method_option_and_task_url(emulator: Emulator) -> None:
    call = tasks.put_to_partner(n=3)
    handle, request = pushed(emulator, call)
    url = "http://127.0.0.1:9/partner/tasks/"
    assert request.task == http_task(call, handle, url=url, method=tasks_v2.HttpMethod.PUT)


def test_call_url_and_headers_override_the_task_s(emulator: Emulator) -> None:
    call = tasks.send_email(to="a@example.com")
    call.url = "http://127.0.0.1:9/other/_tasks/"
    call.headers = {"X-Tenant": "globex", "X-Trace": "t-1"}
    handle, request = pushed(emulator, call)
    assert request.parent == queue_path("emails")
    assert request.task == http_task(
        call, handle, url=call.url, headers={"X-Tenant": "globex", "X-Trace": "t-1"}
    )


def test_task_headers_are_sent_next_to_the_signature(emulator: Emulator) -> None:
    call = tasks.send_email(to="a@example.com")
    handle, request = pushed(emulator, call)
    assert request.task == http_task(call, handle, headers={"X-Tenant": "acme"})


def test_app_engine_target(emulator: Emulator) -> None:
    call = tasks.on_app_engine()
    handle, request = pushed(emulator, call, SAE=SAE)
    body = signed_body(call, handle)
    assert request.task == tasks_v2.Task(
        app_engine_http_request=tasks_v2.AppEngineHttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            app_engine_routing=tasks_v2.AppEngineRouting(
                service="worker", version="v2", instance="1"
            ),
            relative_uri="/_tasks/?via=gae",
            headers={**SIGNED, "X-CloudTask-Signature": signing.sign("/_tasks/", body)},
            body=body,
        )
    )


def test_app_engine_target_needs_no_url(emulator: Emulator) -> None:
    # App Engine routes by service and version: no host is sent, so no URL is needed.
    call = tasks.on_app_engine()
    handle, request = pushed(emulator, call, URL=None)
    body = signed_body(call, handle)
    http = request.task.app_engine_http_request
    assert http.relative_uri == "/_tasks/?via=gae"
    assert http.headers["X-CloudTask-Signature"] == signing.sign("/_tasks/", body)


def test_schedule_time_and_dispatch_deadline(emulator: Emulator) -> None:
    at = datetime(2099, 1, 1, tzinfo=dt_timezone.utc)
    call = tasks.with_deadline()
    eta = datetime.now(dt_timezone.utc).replace(microsecond=123456) + timedelta(hours=2)
    with override_settings(CLOUDTASK=emulator.settings()):
        handle = call.schedule(at=eta)
    (request,) = emulator.created()
    assert at > eta
    assert handle.eta == eta
    assert request.parent == queue_path("reports")
    assert request.task == http_task(
        call,
        handle,
        schedule_time=timestamp_pb2.Timestamp(seconds=int(eta.timestamp()), nanos=123456000),
        dispatch_deadline=duration_pb2.Duration(seconds=120),
    )


def test_timeout_setting_is_the_default_dispatch_deadline(emulator: Emulator) -> None:
    call = tasks.add()
    _, request = pushed(emulator, call, TIMEOUT=timedelta(seconds=45.5))
    assert request.task.dispatch_deadline == timedelta(seconds=45.5)


def test_named_task_sends_its_derived_id(emulator: Emulator) -> None:
    call = tasks.named_refresh()
    handle, request = pushed(emulator, call)
    task_id = make_task_id("tests.tasks.named_refresh")
    assert request.task.name == f"{queue_path('default')}/tasks/{task_id}"
    assert handle.name == task_id


def test_named_by_arguments_sends_the_same_id_for_the_same_call(emulator: Emulator) -> None:
    with override_settings(CLOUDTASK=emulator.settings()):
        first = tasks.deduplicated(1).delay()
        same = tasks.deduplicated(b=2, a=1).delay()
        other = tasks.deduplicated(1, 3).delay()
    assert first.name == same.name == arguments_task_id(tasks.deduplicated, [1], {})
    assert other.name != first.name
    names = [r.task.name.rsplit("/", 1)[-1] for r in emulator.created()]
    assert names == [first.name, first.name, other.name]


def test_custom_and_unique_names(emulator: Emulator) -> None:
    with override_settings(CLOUDTASK=emulator.settings()):
        custom = tasks.add().push(name="invoice-42")
        unique = tasks.add().push(name="invoice-42", unique=True)
    assert custom.name == "invoice-42"
    assert unique.name.startswith("invoice-42-")
    assert len(unique.name) == len("invoice-42-") + 32
    sent = [r.task.name for r in emulator.created()]
    assert sent == [f"{queue_path('default')}/tasks/{n}" for n in (custom.name, unique.name)]


def test_task_over_cloud_tasks_size_limit_is_refused_before_any_request(
    emulator: Emulator,
) -> None:
    # Under MAX_BODY_SIZE (1 MiB), over Cloud Tasks' 1 MB for the whole task.
    with (
        override_settings(CLOUDTASK=emulator.settings()),
        pytest.raises(PayloadTooLarge) as excinfo,
    ):
        tasks.send_email(to="x" * 1_000_000).delay()
    assert excinfo.value.limit == 1_000_000
    assert 1_000_000 < excinfo.value.size < 1024 * 1024
    assert "encoded task (body, headers, URL) is" in str(excinfo.value)
    assert emulator.created() == []
