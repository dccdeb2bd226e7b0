"""Tracing across a push and its delivery, error trackers, and the Cloud Logging formatter.

Spans are recorded with the OpenTelemetry SDK's in-memory exporter (a test dependency; the
package itself needs only the API, and nothing without it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import got_request_exception
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from cloudtask import push_many, signing, tracing
from cloudtask.backends import override_backend
from cloudtask.backends.local.worker import Worker
from cloudtask.logging import CloudLoggingFormatter
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.backends import RecordingBackend
from tests.support.helpers import ENDPOINT, delivery_headers, post
from tests.support.worker import drain

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _reset_tracer_provider() -> None:
    # OpenTelemetry sets its global provider once per process; its own test utilities
    # (reset_trace_globals) reset these two attributes so each test starts without one.
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Record the spans of this test; other tests run with no provider (no-op spans)."""
    _reset_tracer_provider()
    trace.set_tracer_provider(_provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()
    _reset_tracer_provider()


@pytest.fixture
def without_otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make OpenTelemetry not importable, as in a project that does not install it."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setattr(tracing, "_api", None)
    yield
    tracing._api = None


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def body(task: str = "tests.tasks.add", **fields: Any) -> bytes:
    data = {"v": 1, "task": task, "id": "call-1", "args": [], "kwargs": {"a": 1, "b": 2}}
    return json.dumps({**data, **fields}).encode()


# Trace context ------------------------------------------------------------------------------


def test_a_push_and_its_delivery_are_one_trace_through_capture(
    spans: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("test")
    with capture_tasks() as captured:
        with tracer.start_as_current_span("request") as parent:
            tasks.add(1, 2).delay()
        [task] = captured
        traceparent = task.http_request.headers["traceparent"]
        captured.run_all()
    assert tracing.parse_traceparent(traceparent) is not None
    [push] = named(spans, "cloudtask.push")
    [run] = named(spans, "cloudtask.run")
    trace_id = parent.get_span_context().trace_id
    assert push.context.trace_id == run.context.trace_id == trace_id
    assert push.parent is not None
    assert push.parent.span_id == parent.get_span_context().span_id
    assert run.parent is not None
    assert run.parent.span_id == push.context.span_id
    assert traceparent.startswith(f"00-{trace_id:032x}-{push.context.span_id:016x}-")
    assert push.kind == trace.SpanKind.PRODUCER
    assert run.kind == trace.SpanKind.CONSUMER
    assert push.attributes is not None
    assert run.attributes is not None
    assert dict(push.attributes) == {
        "messaging.system": "gcp_cloud_tasks",
        "messaging.operation.type": "send",
        "messaging.operation.name": "push",
        "cloudtask.task": "tests.tasks.add",
        "messaging.destination.name": "default",
        "messaging.message.id": task.name,
        "cloudtask.call_id": task.call_id,
    }
    assert run.attributes["cloudtask.call_id"] == task.call_id
    assert run.attributes["cloudtask.attempt"] == 1
    assert run.attributes["cloudtask.outcome"] == "success"
    assert run.attributes["messaging.message.id"] == task.name


def test_a_failing_delivery_marks_its_span_as_an_error(spans: InMemorySpanExporter) -> None:
    response = post(
        body("tests.tasks.fails_on_queue", kwargs={}), headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 500
    [run] = named(spans, "cloudtask.run")
    assert run.status.status_code == trace.StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes["cloudtask.outcome"] == "failed"
    assert run.context.trace_id == int(TRACEPARENT.split("-")[1], 16)


def test_an_immediate_delivery_runs_inside_its_push(spans: InMemorySpanExporter) -> None:
    with override_settings(CLOUDTASK={"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}):
        tasks.add(1, 2).delay()
    [push] = named(spans, "cloudtask.push")
    [run] = named(spans, "cloudtask.run")
    assert run.parent is not None
    assert run.parent.span_id == push.context.span_id


@pytest.mark.parametrize(
    "traceparent",
    ["garbage", "00-xyz-abc-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "ff-" + "a" * 50],
)
def test_a_malformed_traceparent_starts_a_new_trace(
    spans: InMemorySpanExporter, traceparent: str
) -> None:
    response = post(body(), headers={"traceparent": traceparent, "tracestate": "a=\x7f"})
    assert response.status_code == 200
    [run] = named(spans, "cloudtask.run")
    assert run.parent is None
    assert run.context.is_valid
    assert tracing.parse_traceparent(traceparent) is None
    # Nothing of the trace goes back to the client.
    assert response.json() == {"status": "success", "id": "call-1", "result": 3}


def test_a_forged_traceparent_never_runs_anything_without_a_signature(
    spans: InMemorySpanExporter,
) -> None:
    response = post(body(), signature=None, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 403
    assert named(spans, "cloudtask.run") == []
    assert tasks.calls == []


def test_without_opentelemetry_nothing_is_added(without_otel: None) -> None:
    assert tracing.otel() is False
    with capture_tasks() as captured:
        tasks.add(1, 2).delay()
        [response] = captured.run_all()
    assert "traceparent" not in captured[0].http_request.headers
    assert response.status_code == 200


def test_push_many_keeps_the_trace_in_its_threads(spans: InMemorySpanExporter) -> None:

    tracer = trace.get_tracer("test")
    backend = RecordingBackend()
    backend.supports_concurrent_push = True

    with override_backend(backend), tracer.start_as_current_span("batch") as parent:
        push_many([tasks.add(i, i) for i in range(5)], workers=5)
    pushes = named(spans, "cloudtask.push")
    assert len(pushes) == 5
    assert {p.context.trace_id for p in pushes} == {parent.get_span_context().trace_id}


# Error trackers ---------------------------------------------------------------------------


@pytest.fixture
def reported() -> Iterator[list[Any]]:
    found: list[Any] = []

    def receiver(sender: Any, request: Any = None, **kwargs: Any) -> None:
        found.append((request.path, sys.exc_info()[1]))

    got_request_exception.connect(receiver)
    yield found
    got_request_exception.disconnect(receiver)


def test_a_failing_task_is_reported_to_error_trackers_once_per_attempt(
    reported: list[Any],
) -> None:
    for attempt in range(2):
        headers = delivery_headers(retry_count=attempt, execution_count=attempt)
        assert (
            post(body("tests.tasks.fails_on_queue", kwargs={}), headers=headers).status_code == 500
        )
    assert [(path, type(exc), str(exc)) for path, exc in reported] == [
        (ENDPOINT, ValueError, "always"),
        (ENDPOINT, ValueError, "always"),
    ]


def test_refusals_successes_rejects_and_retries_are_not_reported(reported: list[Any]) -> None:
    assert post(body(), signature="v1=" + "0" * 64).status_code == 403
    assert post(b"{}").status_code == 400
    assert post(body()).status_code == 200
    assert post(body("tests.tasks.rejects", kwargs={})).status_code == 200
    retrying = post(body("tests.tasks.retries_itself", kwargs={}))
    assert retrying.json()["status"] in ("retrying", "failed")
    assert reported == []


def test_a_receiver_that_raises_does_not_change_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("tracker down")

    got_request_exception.connect(broken)
    try:
        response = post(body("tests.tasks.fails_on_queue", kwargs={}))
    finally:
        got_request_exception.disconnect(broken)
    assert response.json() == {"status": "failed", "error": "ValueError"}
    assert "got_request_exception receiver" in caplog.text


# Cloud Logging ----------------------------------------------------------------------------


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    """The cloudtask and test loggers' lines, formatted and parsed back."""
    found: list[dict[str, Any]] = []
    formatter = CloudLoggingFormatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(json.loads(formatter.format(record)))

    handler = Collect(logging.DEBUG)
    loggers = [logging.getLogger("cloudtask"), logging.getLogger("tests.tasks")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield found
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_task_lines_carry_the_task_and_the_delivery_s_trace(
    lines: list[dict[str, Any]], without_otel: None
) -> None:
    headers = {**delivery_headers(retry_count=2), "traceparent": TRACEPARENT}
    with override_settings(
        CLOUDTASK={
            "PROJECT": "my-project",
            "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        }
    ):
        post(body("tests.tasks.logs_a_line", kwargs={}), headers=headers)
    task_line = next(line for line in lines if line["logger"] == "tests.tasks")
    success = next(line for line in lines if "status=success" in line["message"])
    for line in (task_line, success):
        assert line["severity"] == "INFO"
        assert line["cloudtask"] == {
            "task": "tests.tasks.logs_a_line",
            "call_id": "call-1",
            "queue": "default",
            "task_id": "t1",
            "attempt": 3,
        }
        assert line["logging.googleapis.com/trace"] == (
            "projects/my-project/traces/0af7651916cd43dd8448eb211c80319c"
        )
        assert line["logging.googleapis.com/spanId"] == "b7ad6b7169203331"
        assert line["logging.googleapis.com/trace_sampled"] is True
    assert task_line["message"] == "sending 1 email"


def test_with_opentelemetry_lines_carry_the_run_span(
    lines: list[dict[str, Any]], spans: InMemorySpanExporter
) -> None:
    post(body("tests.tasks.logs_a_line", kwargs={}), headers={"traceparent": TRACEPARENT})
    [run] = named(spans, "cloudtask.run")
    task_line = next(line for line in lines if line["logger"] == "tests.tasks")
    assert task_line["logging.googleapis.com/spanId"] == f"{run.context.span_id:016x}"
    assert task_line["logging.googleapis.com/trace"].endswith(f"{run.context.trace_id:032x}")


def test_failures_carry_their_traceback_and_lines_outside_tasks_are_plain(
    lines: list[dict[str, Any]], without_otel: None
) -> None:
    post(body("tests.tasks.fails_on_queue", kwargs={}))
    failure = next(line for line in lines if line["severity"] == "ERROR")
    assert "Traceback (most recent call last)" in failure["message"]
    assert 'raise ValueError("always")' in failure["message"]
    logging.getLogger("cloudtask").warning("outside")
    outside = lines[-1]
    assert outside["message"] == "outside"
    assert "cloudtask" not in outside
    assert "logging.googleapis.com/trace" not in outside
    assert signing.SIGNATURE_HEADER not in json.dumps(lines)


@pytest.mark.django_db(transaction=True)
def test_a_push_and_its_delivery_by_the_local_worker_are_one_trace(
    spans: InMemorySpanExporter, static_url: None, live_server: Any
) -> None:

    local = {
        "BACKEND": "cloudtask.backends.local.LocalBackend",
        "URL": live_server.url + "/_tasks/",
    }
    with override_settings(CLOUDTASK=local):
        with trace.get_tracer("test").start_as_current_span("request") as parent:
            handle = tasks.add(1, 2).delay()
        drain(Worker())
    assert tasks.calls == [("add", (1, 2))]
    [push] = named(spans, "cloudtask.push")
    [run] = named(spans, "cloudtask.run")
    assert push.context.trace_id == run.context.trace_id == parent.get_span_context().trace_id
    assert run.parent is not None
    assert run.parent.span_id == push.context.span_id
    assert push.attributes is not None
    assert push.attributes["messaging.message.id"] == handle.name


def test_with_the_api_but_no_sdk_nothing_is_added() -> None:
    _reset_tracer_provider()  # as in a project with opentelemetry-api and no SDK set up
    assert tracing.otel()
    assert tracing.tracer() is None
    with capture_tasks() as captured:
        tasks.add(1, 2).delay()
    assert "traceparent" not in captured[0].http_request.headers
