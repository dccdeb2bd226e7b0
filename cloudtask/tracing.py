"""Trace context across a push and its delivery, and OpenTelemetry spans around both.

With OpenTelemetry's API installed (``pip install django-cloudtask[otel]``), each push runs
in a ``cloudtask.push`` span (kind PRODUCER) and injects the W3C ``traceparent`` and
``tracestate`` of that span into the task's headers; the delivery of the task runs in a
``cloudtask.run`` span (kind CONSUMER) continuing that trace, so a push and its delivery show
in one trace whatever carries the task (Cloud Tasks, the local worker, ``capture_tasks()``).
Span attributes follow OpenTelemetry's messaging conventions where they apply.

Without OpenTelemetry, nothing here imports it, adds a header or opens a span: a push and a
delivery pay one check of a module-level flag. With the API but no SDK (no tracer provider
set, so every span would be a no-op), they pay one more check and nothing else. The delivery
under way is kept in a context variable in every case, for the log formatter
(:mod:`cloudtask.logging`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .request import CloudTaskRequest

#: ``messaging.system`` of the spans: OpenTelemetry defines no value for Cloud Tasks yet.
MESSAGING_SYSTEM = "gcp_cloud_tasks"
TRACEPARENT_META = "HTTP_TRACEPARENT"
TRACESTATE_META = "HTTP_TRACESTATE"

_api: Any = None  # None: not looked for yet; False: not installed; else the modules
_tracer: tuple[Any, Any] = (None, None)  # (provider, its tracer for cloudtask)


def otel() -> Any:
    """Return OpenTelemetry's API as ``(trace, propagate, proxy)``, or False without it."""
    global _api
    if _api is None:
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            _api = False
        else:
            _api = (trace, propagate, trace.ProxyTracerProvider)
    return _api


def tracer() -> Any:
    """Return cloudtask's tracer, or None while no SDK's tracer provider is set (no-op)."""
    global _tracer
    api = otel()
    if not api:
        return None
    provider = api[0].get_tracer_provider()
    if isinstance(provider, api[2]):
        return None  # the API's placeholder: every span would be a no-op
    if _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer("cloudtask"))
    return _tracer[1]


class Delivery(Protocol):
    """The task delivery under way in this context (see :data:`current`)."""

    @property
    def task_name(self) -> str: ...
    @property
    def call_id(self) -> str: ...

    request: CloudTaskRequest
    #: The delivery's request.META-like headers: where its trace context is read from.
    meta: Mapping[str, str]


#: The delivery whose task is running now, or None outside one.
current: ContextVar[Delivery | None] = ContextVar("cloudtask_delivery", default=None)


class PushSpan:
    """What :func:`push_span` yields: the headers to send, and where to note the result."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def headers(self) -> dict[str, str]:
        """Return ``traceparent``/``tracestate`` for the current span ({} without one)."""
        if self.span is None:
            return {}
        carrier: dict[str, str] = {}
        otel()[1].inject(carrier)
        return carrier

    def pushed(self, queue: str, task_id: str, call_id: str) -> None:
        """Note where the task went."""
        if self.span is None:
            return
        self.span.set_attribute("messaging.destination.name", queue)
        self.span.set_attribute("messaging.message.id", task_id)
        self.span.set_attribute("cloudtask.call_id", call_id)


_NO_SPAN = PushSpan(None)


@contextmanager
def push_span(task: str) -> Iterator[PushSpan]:
    """Run a push in a ``cloudtask.push`` span (a no-op without OpenTelemetry's SDK)."""
    found = tracer()
    if found is None:
        yield _NO_SPAN
        return
    trace = otel()[0]
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "push",
        "cloudtask.task": task,
    }
    with found.start_as_current_span(
        "cloudtask.push", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield PushSpan(span)


@contextmanager
def run_span(delivery: Delivery) -> Iterator[Any]:
    """Run a delivery in a ``cloudtask.run`` span continuing the pusher's trace.

    Only called while :func:`tracer` is not None; yields the span for :func:`finished`. The
    trace context is the current one when a span is active (Django's own instrumentation
    made one for the request), else the one in the delivery's ``traceparent`` header.
    Headers are not signed: a forged ``traceparent`` only decides which trace the span
    joins, and a malformed one starts a new trace.
    """
    trace, propagate, _ = otel()
    found = tracer()
    parent = None
    if not trace.get_current_span().get_span_context().is_valid:
        carrier = {
            key: delivery.meta[meta]
            for key, meta in (("traceparent", TRACEPARENT_META), ("tracestate", TRACESTATE_META))
            if meta in delivery.meta
        }
        parent = propagate.extract(carrier) if carrier else None
    request = delivery.request
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": request.queue_name,
        "messaging.message.id": request.task_name,
        "cloudtask.task": delivery.task_name,
        "cloudtask.call_id": delivery.call_id,
        "cloudtask.attempt": request.retry_count + 1,
    }
    with found.start_as_current_span(
        "cloudtask.run", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def finished(span: Any, outcome: str, status: int) -> None:
    """Note how a delivery ended on its span (``success``, ``failed``, ``retrying``)."""
    span.set_attribute("cloudtask.outcome", outcome)
    if status >= 500:
        trace = otel()[0]
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))


def trace_ids(delivery: Delivery | None) -> tuple[str, str, bool] | None:
    """Return (trace id, span id, sampled) in hex for log lines, or None outside a trace.

    The current OpenTelemetry span when there is one; else the trace context of the
    delivery's ``traceparent`` header (read only here, when a line is written).
    """
    api = otel()
    if api:
        context = api[0].get_current_span().get_span_context()
        if context.is_valid:
            return (
                f"{context.trace_id:032x}",
                f"{context.span_id:016x}",
                bool(context.trace_flags & 1),
            )
    if delivery is None:
        return None
    return parse_traceparent(delivery.meta.get(TRACEPARENT_META, ""))


def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """Parse a W3C ``traceparent`` (version 00 layout); None for anything malformed."""
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_id, span_id, flags = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if not (_hex(trace_id, 32) and _hex(span_id, 16) and _hex(flags, 2) and _hex(version, 2)):
        return None
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)
