"""verify -> decode -> execute: the one path every delivery takes.

The view, ImmediateBackend, ``capture_tasks().run_all()`` and the local worker all end here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from django.core.signals import got_request_exception
from django.db import DatabaseError

from . import conf, envelope, failures, options, queues, signals, signing, tracing
from .backends.loading import get_backend
from .exceptions import (
    ArgumentsDoNotBind,
    ConfigurationError,
    InvalidRequest,
    InvalidToken,
    Reject,
    Retry,
    TaskAlreadyExists,
)
from .message import EXPIRES_FIELD, SCHEDULE_FIELD
from .oidc import verify_request
from .push import push
from .registry import registry
from .request import CloudTaskRequest, meta_key
from .schedules.declare import delivered_call_id
from .task_ids import make_task_id
from .workflows import engine as workflows

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .envelope import Envelope
    from .task import Task, TaskCall

logger = logging.getLogger("cloudtask")


@dataclass(slots=True)  # not frozen: its __init__ costs twice as much, on every delivery
class Outcome:
    """The result of one delivery: the HTTP status and JSON body to answer with.

    ``outcome`` is the body's ``status`` word ("success", "failed", "retrying", "error"),
    sent as the ``X-CloudTask-Outcome`` header too, so a client need not parse the body.
    """

    status: int
    content: bytes
    outcome: str
    result: Any = None
    exception: BaseException | None = None


def _answer(status: int, body: dict[str, Any], exception: BaseException | None = None) -> Outcome:
    content = envelope.dumps(body).encode()
    return Outcome(status=status, content=content, outcome=body["status"], exception=exception)


def misconfigured(exc: ConfigurationError) -> Outcome:
    """Log a setting that stops deliveries and answer 503, which Cloud Tasks retries.

    Cloud Tasks retries a 503 with extra backoff until the setting is fixed; the reason goes
    to the log only.
    """
    logger.error("task=- id=- status=misconfigured reason=%s", exc)
    return _answer(503, {"status": "error", "error": "misconfigured"})


def refuse(error: InvalidRequest, *, task: str = "-", call_id: str = "-") -> Outcome:
    """Log and answer a refused request; the detail never contains secrets."""
    # An invalid token answers a generic detail; the log gets the specific reason.
    reason = error.reason if isinstance(error, InvalidToken) else error.detail
    logger.warning(
        "task=%s id=%s status=refused code=%s reason=%s", task, call_id, error.code, reason
    )
    return _answer(error.status, {"status": "error", "error": error.code, "detail": error.detail})


def deliver(
    *,
    path: str,
    body: bytes,
    meta: Mapping[str, str],
    http_request: HttpRequest | None = None,
    raise_exceptions: bool = False,
) -> Outcome:
    """Authenticate, decode and run one task request."""
    started = time.perf_counter()
    data: Envelope | None = None
    try:
        signing.verify(path, body, meta.get(signing.SIGNATURE_META_KEY))
        oidc_email = _verify_oidc(meta) if http_request is not None else None
        data = envelope.decode(body)
        schedule = data.extra.get(SCHEDULE_FIELD)
        signing.check_expiry(data.extra, required=schedule is None)
        if schedule is not None:
            # A Cloud Scheduler job sends the same body at every run: each run is its own call.
            data.id = delivered_call_id(schedule, meta)
        task = registry.get(data.task_name)
        try:
            task.check_received(data.args, data.kwargs)
        except TypeError as exc:
            raise ArgumentsDoNotBind(f"arguments do not fit {data.task_name}(): {exc}") from None
        step, not_run = None, ""
        step_ref = workflows.reference(data.extra)
        if step_ref is not None:
            step, not_run = workflows.receive(step_ref, data.task_name, data.id)
    except InvalidRequest as exc:
        # Once the signed body is decoded, the log line can say which call was refused.
        return refuse(exc) if data is None else refuse(exc, task=data.task_name, call_id=data.id)
    except ConfigurationError as exc:
        return misconfigured(exc)
    except DatabaseError as exc:
        return _database_busy(data, exc)
    if not_run:
        return _step_not_run(data, not_run)
    request = CloudTaskRequest.from_meta(
        meta,
        http_request,
        data.id,
        earlier_retries=_earlier_retries(data),
        max_retries=task.max_retries,
        max_attempts=_queue_max_attempts(meta.get("HTTP_X_CLOUDTASKS_QUEUENAME", "")),
        oidc_email=oidc_email,
    )
    execution = Execution(task, data, request, started, meta, step)
    if EXPIRES_FIELD in data.extra and execution.is_expired():
        return execution.expired()
    return execution.run(raise_exceptions)


def _database_busy(data: Envelope | None, exc: DatabaseError) -> Outcome:
    """Answer 503 when a workflow step cannot be claimed now: Cloud Tasks delivers it again."""
    name, call_id = (data.task_name, data.id) if data is not None else ("-", "-")
    logger.warning("task=%s id=%s status=database-unavailable error=%s", name, call_id, exc)
    return _answer(503, {"status": "error", "error": "database-unavailable"})


def _step_not_run(data: Envelope, why: str) -> Outcome:
    """Acknowledge a workflow step's delivery that runs nothing: finished, skipped, revoked."""
    logger.info("task=%s id=%s status=step-not-run reason=%s", data.task_name, data.id, why)
    return _answer(200, {"status": "skipped", "id": data.id, "reason": why})


def _verify_oidc(meta: Mapping[str, str]) -> str | None:
    # Only requests that arrive over HTTP carry a token: ImmediateBackend delivers in-process.
    return verify_request(meta) if conf.oidc_required() else None


def _earlier_retries(data: Envelope) -> int:
    value = data.extra.get("retries", 0)
    return value if type(value) is int and value >= 0 else 0


def _queue_max_attempts(queue_name: str) -> int | None:
    """Return the attempt that is the queue's last, when the attempt count alone decides it.

    The queue's policy is the one declared in ``CLOUDTASK["QUEUES"]``, else the one the
    backend reads from the queue itself (cached; see ``BaseBackend.queue_config``). Cloud
    Tasks stops only once both max_attempts and max_retry_duration (when set) are reached.
    The time since the first attempt is not sent with a delivery, so a queue with a
    max_retry_duration never declares a last attempt from its max_attempts.
    """
    # The emulator sends the full queue path; Cloud Tasks the short id.
    name = queue_name.rsplit("/", 1)[-1]
    if not name:
        return None  # not a queued delivery (ImmediateBackend, a direct call)
    try:
        config = queues.configured().get(name) if conf.get("QUEUES") else None
        if config is None:
            config = get_backend().queue_config(name)
    except ConfigurationError:
        return None  # reported by the system checks
    if config is None or config.max_attempts < 1 or config.max_retry_duration > timedelta(0):
        return None
    return config.max_attempts


class Execution:
    """One attempt of one call: run it, then answer according to how it ended."""

    def __init__(
        self,
        task: Task[Any, Any],
        data: Envelope,
        request: CloudTaskRequest,
        started: float,
        meta: Mapping[str, str] | None = None,
        step: workflows.StepRun | None = None,
    ) -> None:
        self.task = task
        self.data = data
        self.request = request
        self.started = started
        self.meta: Mapping[str, str] = meta or {}
        #: The workflow step this call is, if it is one (``cloudtask.workflows``).
        self.step = step

    @property
    def task_name(self) -> str:
        """The registry name of the task (for :class:`cloudtask.tracing.Delivery`)."""
        return self.task.name

    @property
    def call_id(self) -> str:
        """The call id (for :class:`cloudtask.tracing.Delivery`)."""
        return self.data.id

    def elapsed_ms(self) -> float:
        """Milliseconds since the request arrived."""
        return (time.perf_counter() - self.started) * 1000

    def log(self, level: int, status: str, **fields: Any) -> None:
        """Write the one log line of this delivery."""
        if not logger.isEnabledFor(level):
            return  # skip building the line, on every delivery
        extra = "".join(f" {key}={value}" for key, value in fields.items())
        logger.log(
            level,
            "task=%s id=%s status=%s duration_ms=%.1f%s",
            self.task.name,
            self.data.id,
            status,
            self.elapsed_ms(),
            extra,
        )

    def run(self, raise_exceptions: bool) -> Outcome:
        """Run the function and turn how it ended into an Outcome, within its trace."""
        token = tracing.current.set(self)
        try:
            if tracing.tracer() is None:
                return self._run(raise_exceptions)
            with tracing.run_span(self) as span:
                outcome = self._run(raise_exceptions)
                tracing.finished(span, outcome.outcome, outcome.status)
                return outcome
        finally:
            tracing.current.reset(token)

    def _run(self, raise_exceptions: bool) -> Outcome:
        if signals.active(signals.task_started):
            signals.send(
                signals.task_started,
                self.task,
                call_id=self.data.id,
                request=self.request,
                delay_ms=_delay_ms(self.request.eta),
            )
        try:
            result = self.task.run(self.request, self.data.args, self.data.kwargs)
        except Retry as exc:
            if raise_exceptions:
                self.log(logging.INFO, "retry-requested")
                self.step_failed(exc, "raised")
                raise
            return self.retry_requested(exc)
        except Exception as exc:
            if raise_exceptions:
                self.log(logging.INFO, "failed")
                self.step_failed(exc, "raised")
                raise
            self.report(exc)
            return self.failed(exc)
        return self.succeeded(result)

    def expires_at(self) -> datetime | None:
        """Return the moment after which this call is acknowledged unrun (None: never)."""
        expires = self.data.extra.get(EXPIRES_FIELD)
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            return None
        return datetime.fromtimestamp(expires, timezone.utc)

    def is_expired(self, after: timedelta = timedelta(0)) -> bool:
        """Return whether the call has expired by now (plus ``after``).

        A body without a usable time runs: the field is signed, so only cloudtask wrote it.
        """
        expires = self.expires_at()
        return expires is not None and datetime.now(timezone.utc) + after > expires

    def expired(self) -> Outcome:
        """Acknowledge a delivery after the call's expiry with 200, without running it."""
        expires = self.expires_at()
        self.log(logging.INFO, "expired", expires=expires.isoformat() if expires else "-")
        self.step_failed(TimeoutError("the call expired before it ran"), "expired")
        signals.send(
            signals.task_expired,
            self.task,
            call_id=self.data.id,
            request=self.request,
            expires=expires,
        )
        return _answer(200, {"status": "expired", "id": self.data.id})

    def report(self, exc: Exception) -> None:
        """Send Django's ``got_request_exception`` for the endpoint request, as a view's would.

        Error trackers (Sentry, Rollbar, ...) hear of task failures through it, with the
        traceback (it is sent while the exception is handled). ``Reject`` is a decision, not
        an error, and is not reported; a receiver that raises is logged, never fatal.
        """
        http_request = self.request.http_request
        if http_request is None or isinstance(exc, Reject):
            return
        for receiver, error in got_request_exception.send_robust(sender=None, request=http_request):
            if isinstance(error, Exception):
                logger.error(
                    "task=%s id=%s got_request_exception receiver %r raised",
                    self.task.name,
                    self.data.id,
                    receiver,
                    exc_info=error,
                )

    def succeeded(self, result: Any) -> Outcome:
        """Answer 200 with the result; the call is done."""
        self.log(logging.INFO, "success")
        if signals.active(signals.task_succeeded):
            signals.send(
                signals.task_succeeded,
                self.task,
                call_id=self.data.id,
                request=self.request,
                result=result,
                duration_ms=self.elapsed_ms(),
            )
        if self.step is not None:
            try:
                workflows.succeeded(self.step, result)
            except Exception:
                # The step's result is stored; the redelivery pushes what follows it.
                logger.exception(
                    "task=%s id=%s status=workflow-push-failed", self.task.name, self.data.id
                )
                return _answer(500, {"status": "failed", "error": "workflow-push-failed"})
        body = _success_body(self.task.name, self.data.id, result)
        return Outcome(200, body, "success", result=result)

    def failed(self, exc: Exception) -> Outcome:
        """Answer 500 so Cloud Tasks retries, or 200 when the call has failed for good."""
        verdict = failures.judge(self.task, self.request, exc)
        error = type(exc).__name__
        if verdict.action == "retry":
            logger.exception(
                "task=%s id=%s status=failed duration_ms=%.1f will_retry=true",
                self.task.name,
                self.data.id,
                self.elapsed_ms(),
            )
            self.send_retrying(exc, countdown=None)
            if self.step is not None:
                workflows.retrying(self.step, exc)
            return _answer(500, {"status": "failed", "error": error}, exception=exc)
        return self.give_up(exc, verdict.reason)

    def retry_requested(self, retry: Retry) -> Outcome:
        """Push a copy of the call for later and answer 200, unless max_retries is reached."""
        if failures.judge_retry(self.task, self.request).action == "failed":
            return self.give_up(retry.exc or retry, "max-retries")
        if self.is_expired(after=retry.countdown):
            return self.expired()  # the copy would be due after the call expires
        try:
            self.push_copy(retry.countdown)
        except Exception:
            # Nothing is lost: a 500 makes Cloud Tasks retry this attempt instead.
            logger.exception("task=%s id=%s status=retry-push-failed", self.task.name, self.data.id)
            return _answer(500, {"status": "failed", "error": "retry-push-failed"})
        self.log(logging.INFO, "retrying", countdown_s=f"{retry.countdown.total_seconds():g}")
        self.send_retrying(retry.exc, countdown=retry.countdown)
        body = {
            "status": "retrying",
            "id": self.data.id,
            "countdown": retry.countdown.total_seconds(),
        }
        return _answer(200, body)

    def push_copy(self, countdown: timedelta) -> None:
        """Push this call again, unnamed, keeping its id, its route and counting the retry."""
        push(
            self.copy_of_call(),
            eta=options.schedule_time(at=None, countdown=countdown),
            call_id=self.data.id,
            retries=self.request.retries + 1,
            expires=self.expires_at(),  # the same moment as the call it retries
            workflow=None if self.step is None else [self.step.workflow_id, self.step.key],
        )

    def copy_of_call(self) -> TaskCall[Any]:
        """Rebuild the call as it was pushed: the route in its envelope, this delivery's headers."""
        route = self.data.extra.get("route")
        if not isinstance(route, dict):  # pushed without a route: the registered task's own
            return self.task(*self.data.args, **self.data.kwargs)
        changes = {key: route[key] for key in options.ROUTE_OPTIONS if key in route}
        task = self.task.using(**changes) if changes else self.task
        call = task(*self.data.args, **self.data.kwargs)
        if "url" in route:
            call.url = route["url"]
        names = route.get("headers")
        if isinstance(names, list):
            # Only header names are signed into the body; the values are those delivered now.
            call.headers = {
                name: self.meta[meta_key(name)]
                for name in names
                if isinstance(name, str) and meta_key(name) in self.meta
            }
        return call

    def give_up(self, exc: BaseException, reason: str) -> Outcome:
        """Record a final failure, push ``on_failure`` and answer so Cloud Tasks stops.

        The answer is 200 when cloudtask decided to stop (so Cloud Tasks does not retry), and
        500 on the queue's own last attempt, which Cloud Tasks will not retry anyway and then
        shows as failed.
        """
        logger.error(
            "task=%s id=%s status=failed duration_ms=%.1f will_retry=false reason=%s",
            self.task.name,
            self.data.id,
            self.elapsed_ms(),
            reason,
            exc_info=exc,
        )
        signals.send(
            signals.task_failed,
            self.task,
            call_id=self.data.id,
            request=self.request,
            error=exc,
            reason=reason,
            duration_ms=self.elapsed_ms(),
        )
        self.push_failure_handler(exc)
        body = {
            "status": "failed",
            "error": type(exc).__name__,
            "reason": reason,
            "id": self.data.id,
        }
        if not self.step_failed(exc, reason):
            return _answer(500, {"status": "failed", "error": "workflow-push-failed"})
        return _answer(500 if reason == "max-attempts" else 200, body, exception=exc)

    def step_failed(self, exc: BaseException, reason: str) -> bool:
        """Fail this workflow step for good; return False if pushing its error callbacks
        failed (the answer is then 500, and the redelivery pushes them)."""
        if self.step is None:
            return True
        try:
            workflows.failed(self.step, exc, reason)
        except Exception:
            logger.exception(
                "task=%s id=%s status=workflow-push-failed", self.task.name, self.data.id
            )
            return False
        return True

    def push_failure_handler(self, exc: BaseException) -> None:
        """Push the task's ``on_failure`` task; a problem there never changes the answer.

        The push is named after the call, so a call gives up with one ``on_failure`` push
        even when its last attempt is delivered twice, or replayed with forged retry counters
        (the ``X-CloudTasks-*`` headers are not signed): the backend refuses the second.
        """
        handler = self.task.on_failure
        if handler is None:
            return
        try:
            if isinstance(handler, str):
                handler = registry.get(handler)
                options.check_failure_handler(handler)
            handler(
                task=self.task.name,
                id=self.data.id,
                args=self.data.args,
                kwargs=self.data.kwargs,
                error=failures.describe(exc),
            ).push(name=make_task_id(f"on-failure-{self.data.id}"))
        except TaskAlreadyExists:
            logger.info(
                "task=%s id=%s on_failure_already_pushed=true", self.task.name, self.data.id
            )
        except Exception:
            logger.exception(
                "task=%s id=%s on_failure_push_failed=%s", self.task.name, self.data.id, handler
            )

    def send_retrying(self, exc: BaseException | None, countdown: timedelta | None) -> None:
        """Send ``task_retrying``."""
        signals.send(
            signals.task_retrying,
            self.task,
            call_id=self.data.id,
            request=self.request,
            error=exc,
            countdown=countdown,
            duration_ms=self.elapsed_ms(),
        )


def _delay_ms(eta: datetime | None) -> float | None:
    """Return the milliseconds from the task's ETA to now (None without an ETA)."""
    if eta is None:
        return None
    return max((datetime.now(timezone.utc) - eta).total_seconds() * 1000, 0.0)


def _success_body(name: str, call_id: str, result: Any) -> bytes:
    try:
        return envelope.dumps({"status": "success", "id": call_id, "result": result}).encode()
    except (TypeError, ValueError):
        # The task ran; an unserialisable return value must not make Cloud Tasks retry it.
        logger.warning("task=%s id=%s result_not_json=true", name, call_id)
        return envelope.dumps({"status": "success", "id": call_id, "result": None}).encode()
