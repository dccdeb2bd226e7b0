"""The endpoint: DESIGN.md section 5, every refusal, and what it never leaks."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import Client, override_settings

from cloudtask import signing
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import ENDPOINT, delivery_headers, post


def envelope(task: str = "tests.tasks.add", **fields: Any) -> bytes:
    data = {"v": 1, "task": task, "id": "call-1", "args": [], "kwargs": {"a": 2, "b": 3}}
    data.update(fields)
    return json.dumps(data).encode()


def test_valid_request_runs_the_function_and_answers_200() -> None:
    response = post(envelope())
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "success", "id": "call-1", "result": 5}
    assert tasks.calls == [("add", (2, 3))]


@pytest.mark.parametrize(
    ("body", "signature", "status", "outcome"),
    [
        (envelope(), "auto", 200, "success"),
        (envelope(task="tests.tasks.fails_with_value_error", kwargs={}), "auto", 500, "failed"),
        (envelope(task="tests.tasks.rejects", kwargs={}), "auto", 200, "failed"),
        (envelope(task="tests.tasks.retries_itself", kwargs={}), "auto", 200, "retrying"),
        (envelope(), "v1=" + "0" * 64, 403, "error"),
        (b"{", "auto", 400, "error"),
    ],
)
def test_every_answer_names_its_outcome_in_a_header(
    body: bytes, signature: str, status: int, outcome: str
) -> None:
    with capture_tasks():  # where the retry copy and the on_failure call go
        response = post(body, signature=signature)
    assert response.status_code == status
    # The header says what the body's "status" says, so a client need not parse the body.
    assert response["X-CloudTask-Outcome"] == response.json()["status"] == outcome


@override_settings(MIDDLEWARE=[])  # no CommonMiddleware to add the length
@pytest.mark.parametrize(
    ("body", "signature", "method"),
    [(envelope(), "auto", "POST"), (envelope(), "v1=" + "0" * 64, "POST"), (b"", "", "GET")],
)
def test_every_answer_says_its_length(body: bytes, signature: str, method: str) -> None:
    # Without it a server such as runserver closes the connection after the answer, and a
    # client that keeps connections alive (the local worker) must open a new one each time.
    response = post(body, signature=signature, method=method)
    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405(method: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cloudtask"):
        response = post(envelope(), method=method)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "error",
        "error": "method-not-allowed",
        "detail": f"method '{method}' is not allowed; use POST",
    }
    assert [r.getMessage() for r in caplog.records if r.name == "cloudtask"] == [
        "task=- id=- status=refused code=method-not-allowed "
        f"reason=method '{method}' is not allowed; use POST"
    ]
    assert tasks.calls == []


def test_csrf_is_not_required() -> None:
    # The client enforces CSRF checks; the signature is what authenticates.
    assert post(envelope()).status_code == 200


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "body is not valid JSON (JSONDecodeError)"),
        (b"not json", "body is not valid JSON (JSONDecodeError)"),
        (b"\xff\xfe\x00", "body is not valid JSON (UnicodeDecodeError)"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'"text"', "body must be a JSON object"),
        (b"[" * 100_000, "body is not valid JSON (RecursionError)"),
        (
            json.dumps({"task": "tests.tasks.add"}).encode(),
            "unsupported envelope version None; expected 1",
        ),
        (envelope(v=2), "unsupported envelope version 2; expected 1"),
        (envelope(v=True), "unsupported envelope version True; expected 1"),
        (envelope(task=""), "'task' must be a non-empty string"),
        (envelope(task=5), "'task' must be a non-empty string"),
        (envelope(id=None), "'id' must be 1 to 128 letters, digits or '_.:-'"),
        (envelope(args={"a": 1}), "'args' must be a list"),
        (envelope(kwargs=[1]), "'kwargs' must be an object"),
    ],
)
def test_malformed_envelopes_get_400(body: bytes, detail: str) -> None:
    response = post(body)
    assert response.status_code == 400
    assert response.json() == {"status": "error", "error": "bad-envelope", "detail": detail}
    assert tasks.calls == []


def test_unknown_task_gets_404() -> None:
    response = post(envelope(task="tests.tasks.gone"))
    assert response.status_code == 404
    assert response.json() == {
        "status": "error",
        "error": "unknown-task",
        "detail": "no task is registered under 'tests.tasks.gone'",
    }


def test_a_dotted_path_is_never_imported() -> None:
    response = post(envelope(task="os.system", args=["true"], kwargs={}))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("args", "kwargs", "detail"),
    [
        ([], {"c": 1}, "got an unexpected keyword argument 'c'"),
        ([1, 2, 3], {}, "too many positional arguments"),
    ],
)
def test_arguments_that_no_longer_bind_get_400(
    args: list[Any], kwargs: dict[str, Any], detail: str
) -> None:
    response = post(envelope(args=args, kwargs=kwargs))
    assert response.status_code == 400
    assert response.json()["error"] == "bad-arguments"
    assert response.json()["detail"] == f"arguments do not fit tests.tasks.add(): {detail}"
    assert tasks.calls == []


def test_function_exception_gets_500_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cloudtask"):
        response = post(envelope(task="tests.tasks.fails_with_value_error", kwargs={}))
    assert response.status_code == 500
    assert response.json() == {"status": "failed", "error": "ValueError"}
    assert b"boom" not in response.content
    assert b"Traceback" not in response.content
    assert tasks.calls == [("fails_with_value_error", None)]
    # Only cloudtask's own lines: the session's emulator may log about its deliveries meanwhile.
    ours = [r for r in caplog.records if r.name == "cloudtask"]
    [record] = [r for r in ours if r.levelno >= logging.WARNING]
    assert record.getMessage().startswith(
        "task=tests.tasks.fails_with_value_error id=call-1 status=failed"
    )
    assert record.exc_info is not None


def test_unserialisable_result_still_answers_200() -> None:
    response = post(envelope(task="tests.tasks.returns_set", kwargs={}))
    assert response.status_code == 200
    assert response.json() == {"status": "success", "id": "call-1", "result": None}


# Signatures ---------------------------------------------------------------------------------


def test_missing_signature_gets_403() -> None:
    response = post(envelope(), signature=None)
    assert response.status_code == 403
    assert response.json() == {
        "status": "error",
        "error": "forbidden",
        "detail": "missing X-CloudTask-Signature header",
    }
    assert tasks.calls == []


@pytest.mark.parametrize(
    "signature",
    [
        "garbage",
        "v1=",
        "v1=xyz",
        "v2=" + "0" * 64,
        "v1=" + "A" * 64,
        "v1=" + "0" * 63,
        "v1=" + "0" * 65,
        " v1=" + "0" * 64,
    ],
)
def test_malformed_signature_gets_403(signature: str) -> None:
    response = post(envelope(), signature=signature)
    assert response.status_code == 403
    assert response.json()["detail"] == "malformed X-CloudTask-Signature header"
    assert tasks.calls == []


def test_truncated_and_wrong_key_signatures_get_403() -> None:
    body = envelope()
    good = signing.sign(ENDPOINT, body)
    assert post(body, signature=good[:-2]).status_code == 403
    with override_settings(CLOUDTASK={"SECRET": "another-secret-of-sufficient-length-000"}):
        foreign = signing.sign(ENDPOINT, body)
    response = post(body, signature=foreign)
    assert response.status_code == 403
    assert response.json()["detail"] == "signature does not match"
    assert tasks.calls == []


def test_signature_replayed_onto_another_task_or_arguments_gets_403() -> None:
    signature = signing.sign(ENDPOINT, envelope())
    for tampered in (
        envelope(task="tests.tasks.noop", kwargs={}),
        envelope(kwargs={"a": 200, "b": 3}),
        envelope() + b" ",
    ):
        assert post(tampered, signature=signature).status_code == 403
    assert tasks.calls == []


def test_signature_for_another_path_gets_403() -> None:
    body = envelope()
    response = post(body, signature=signing.sign("/other/_tasks/", body))
    assert response.status_code == 403


def test_authentication_happens_before_parsing() -> None:
    # Unsigned garbage is a 403, not a 400: nothing about the body is looked at first.
    assert post(b"not json", signature=None).status_code == 403


def test_oversized_body_gets_413_before_verification() -> None:
    body = b"x" * (1024 * 1024 + 1)
    response = post(body, signature="v1=" + "0" * 64)
    assert response.status_code == 413
    assert response.json() == {
        "status": "error",
        "error": "too-large",
        "detail": "body is 1048577 bytes; CLOUDTASK['MAX_BODY_SIZE'] is 1048576",
    }


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_body_over_djangos_own_limit_gets_413_naming_that_limit() -> None:
    body = envelope(kwargs={"a": 1, "b": 2}, pad="x" * 200)
    response = post(body)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"body is {len(body)} bytes; Django's DATA_UPLOAD_MAX_MEMORY_SIZE is 100"
    )
    assert tasks.calls == []


def reads_form_data(get_response: Any) -> Any:
    """Middleware that parses every POST as form data before the view runs."""

    def middleware(request: Any) -> Any:
        request.POST  # noqa: B018 -- reading it consumes the body stream
        return get_response(request)

    return middleware


@override_settings(MIDDLEWARE=["tests.endpoint.test_endpoint.reads_form_data"])
def test_body_consumed_by_a_middleware_gets_400_not_413() -> None:
    response = Client(enforce_csrf_checks=True, raise_request_exception=False).post(
        ENDPOINT, {"task": "tests.tasks.add"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "error": "bad-request",
        "detail": "body was already read as form data",
    }


def test_secrets_and_signatures_never_logged_or_returned(caplog: pytest.LogCaptureFixture) -> None:
    body = envelope()
    good = signing.sign(ENDPOINT, body)
    with caplog.at_level(logging.DEBUG):
        responses = [post(body, signature=good), post(body, signature=good[:-1] + "0")]
    secret_bits = [good[3:], signing.keys()[0].hex(), "tests-secret-key"]
    for text in [caplog.text, *(r.content.decode() for r in responses)]:
        for secret in secret_bits:
            assert secret not in text


def test_one_log_line_per_execution(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cloudtask"):
        post(envelope())
    lines = [r.getMessage() for r in caplog.records if r.name == "cloudtask"]
    assert len(lines) == 1
    assert lines[0].startswith("task=tests.tasks.add id=call-1 status=success duration_ms=")


@override_settings(CLOUDTASK={"SECRET": 42})
def test_misconfigured_secret_answers_503_not_a_crash() -> None:
    response = post(envelope(), signature="v1=" + "0" * 64)
    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "misconfigured"}


@pytest.mark.parametrize(
    ("cloudtask", "reason"),
    [
        ("notadict", "CLOUDTASK must be a dict of settings, not str."),
        (
            {"MAX_BODY_SIZE": "1MB"},
            "CLOUDTASK['MAX_BODY_SIZE'] must be a positive number of bytes, not '1MB'.",
        ),
        (
            {"MAX_BODY_SIZE": 0},
            "CLOUDTASK['MAX_BODY_SIZE'] must be a positive number of bytes, not 0.",
        ),
        (
            {"ACCEPT_DERIVED_KEY": "yes"},
            "CLOUDTASK['ACCEPT_DERIVED_KEY'] must be True or False, not 'yes'.",
        ),
    ],
)
def test_every_bad_setting_answers_the_same_503(
    cloudtask: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = envelope()
    signature = signing.sign(ENDPOINT, body)
    with override_settings(CLOUDTASK=cloudtask), caplog.at_level(logging.INFO, "cloudtask"):
        response = post(body, signature=signature)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "error", "error": "misconfigured"}
    assert [r.getMessage() for r in caplog.records if r.name == "cloudtask"] == [
        f"task=- id=- status=misconfigured reason={reason}"
    ]
    assert tasks.calls == []


# The request object --------------------------------------------------------------------------


def test_request_is_built_from_the_cloud_tasks_headers() -> None:
    eta = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)
    headers = delivery_headers(
        queue="emails",
        name="task-42",
        eta=eta,
        retry_count=3,
        execution_count=2,
        previous_response=503,
        retry_reason="HTTP status 503",
    )
    response = post(envelope(task="tests.tasks.record_request", kwargs={}), headers=headers)
    assert response.json()["result"] == {
        "task_name": "task-42",
        "queue_name": "emails",
        "retry_count": 3,
        "execution_count": 2,
        "eta": "2026-03-01T12:00:00.500000+00:00",
        "previous_response": 503,
        "retry_reason": "HTTP status 503",
        "has_http_request": True,
    }
    request = tasks.calls[0][1]
    assert request.http_request.path == ENDPOINT
    assert request.call_id == "call-1"


BAD_VALUES = ["abc", "-1", "", " ", "9" * 5000, "\uff11\uff12", "nan", "inf", "1e400", "0x10"]


@pytest.mark.parametrize("bad", [*BAD_VALUES, "1.5", "99999999999999"])
def test_malformed_counts_give_defaults(bad: str) -> None:
    headers = {
        "X-CloudTasks-TaskRetryCount": bad,
        "X-CloudTasks-TaskExecutionCount": bad,
        "X-CloudTasks-TaskPreviousResponse": bad,
    }
    response = post(envelope(task="tests.tasks.record_request", kwargs={}), headers=headers)
    assert response.status_code == 200
    result = response.json()["result"]
    assert (result["retry_count"], result["execution_count"]) == (0, 0)
    assert result["previous_response"] is None


@pytest.mark.parametrize("bad", [*BAD_VALUES, "1" * 13, "1.", ".5"])
def test_malformed_eta_gives_none(bad: str) -> None:
    headers = {"X-CloudTasks-TaskETA": bad}
    response = post(envelope(task="tests.tasks.record_request", kwargs={}), headers=headers)
    assert response.status_code == 200
    assert response.json()["result"]["eta"] is None


@pytest.mark.django_db(transaction=True)
def test_endpoint_is_not_wrapped_in_atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    response = post(envelope(task="tests.tasks.reports_atomic", kwargs={}))
    assert response.json()["result"] is False


def test_capture_and_view_agree() -> None:
    with capture_tasks() as captured:
        tasks.add(a=20, b=22).delay()
    captured_request = captured[0].http_request
    response = Client(enforce_csrf_checks=True, raise_request_exception=False).post(
        captured[0].path,
        captured_request.body,
        content_type=captured_request.headers["Content-Type"],
        headers={signing.SIGNATURE_HEADER: captured_request.headers[signing.SIGNATURE_HEADER]},
    )
    assert response.json()["result"] == 42


# Hostile input: never a 500, never a run ----------------------------------------------------


@pytest.mark.parametrize("length", ["abc", "1e3", "0x10", "-1", "٣"])
def test_a_content_length_that_is_not_a_number_is_refused(length: str) -> None:
    body = envelope()
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    headers = {signing.SIGNATURE_HEADER: signing.sign(ENDPOINT, body)}
    response = client.generic(
        "POST",
        ENDPOINT,
        body,
        content_type="application/json",
        headers=headers,
        CONTENT_LENGTH=length,
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "error": "bad-request",
        "detail": "Content-Length is not a number of bytes",
    }
    assert tasks.calls == []


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'"args":[NaN]', "body is not valid JSON (ValueError)"),
        (b'"args":[Infinity]', "body is not valid JSON (ValueError)"),
        (b'"args":[-Infinity]', "body is not valid JSON (ValueError)"),
        (b'"args":[1e400]', "body is not valid JSON (ValueError)"),
        (b'"args":["\\ud800"]', "body has a lone UTF-16 surrogate (an unpaired \\uD800 escape)"),
        (
            b'"kwargs":{"\\udfff":1}',
            "body has a lone UTF-16 surrogate (an unpaired \\uD800 escape)",
        ),
    ],
)
def test_values_a_pusher_refuses_are_refused_in_a_signed_body(raw: bytes, detail: str) -> None:
    body = b'{"v":1,"task":"tests.tasks.echo","id":"call-1",' + raw + b"}"
    response = post(body)
    assert response.status_code == 400
    assert response.json() == {"status": "error", "error": "bad-envelope", "detail": detail}
    assert tasks.calls == []


def test_a_surrogate_pair_is_an_ordinary_character() -> None:
    response = post(b'{"v":1,"task":"tests.tasks.echo","id":"call-1","args":["\\ud83d\\ude00"]}')
    assert response.status_code == 200
    assert response.json()["result"] == {"args": ["\U0001f600"], "kwargs": {}}


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"id": "\ud800"}, "'id' must be 1 to 128 letters, digits or '_.:-'"),
        ({"id": "a b"}, "'id' must be 1 to 128 letters, digits or '_.:-'"),
        ({"id": "x" * 129}, "'id' must be 1 to 128 letters, digits or '_.:-'"),
        ({"id": ""}, "'id' must be 1 to 128 letters, digits or '_.:-'"),
        ({"task": "tests.tasks.add\n"}, "'task' must be printable text of at most 500 characters"),
        ({"task": "t" * 501}, "'task' must be printable text of at most 500 characters"),
    ],
)
def test_the_envelope_fields_are_checked_before_anything_runs(
    fields: dict[str, Any], detail: str
) -> None:
    body = json.dumps({"v": 1, "task": "tests.tasks.add", "id": "call-1", **fields}).encode()
    response = post(body)
    assert response.status_code == 400
    assert response.json() == {"status": "error", "error": "bad-envelope", "detail": detail}
    assert tasks.calls == []


def test_a_request_keyword_is_refused_at_call_time_and_at_the_endpoint() -> None:
    with pytest.raises(TypeError) as excinfo:
        tasks.echo(request=1)
    assert str(excinfo.value) == (
        "tests.tasks.echo(): 'request' is the parameter that receives the CloudTaskRequest; it "
        "cannot be passed as an argument"
    )
    response = post(envelope(task="tests.tasks.echo", kwargs={"request": 1}))
    assert response.status_code == 400
    assert response.json()["error"] == "bad-arguments"
    assert tasks.calls == []
