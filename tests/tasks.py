"""Fixture tasks, named for their behaviour."""

from __future__ import annotations

import logging
import threading
from typing import Any

from cloudtask import CloudTaskRequest, Reject, task

calls: list[tuple[str, Any]] = []


@task
def noop(request: CloudTaskRequest) -> None:
    calls.append(("noop", None))


@task(queue="default")
def add(request: CloudTaskRequest, a: int = 5, b: int = 4) -> int:
    calls.append(("add", (a, b)))
    return a + b


@task
def echo(request: CloudTaskRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
    calls.append(("echo", (args, kwargs)))
    return {"args": list(args), "kwargs": kwargs}


@task
def record_request(request: CloudTaskRequest) -> dict[str, Any]:
    calls.append(("record_request", request))
    return {
        "task_name": request.task_name,
        "queue_name": request.queue_name,
        "retry_count": request.retry_count,
        "execution_count": request.execution_count,
        "eta": request.eta.isoformat() if request.eta else None,
        "previous_response": request.previous_response,
        "retry_reason": request.retry_reason,
        "has_http_request": request.http_request is not None,
    }


@task
def fails_with_value_error(request: CloudTaskRequest) -> None:
    calls.append(("fails_with_value_error", None))
    raise ValueError("boom")


@task(named=True)
def named_refresh(request: CloudTaskRequest) -> str:
    calls.append(("named_refresh", None))
    return "refreshed"


@task(queue="emails", headers={"X-Tenant": "acme"})
def send_email(request: CloudTaskRequest, to: str) -> str:
    calls.append(("send_email", to))
    return to


@task
def returns_set(request: CloudTaskRequest) -> Any:
    return {1, 2}


@task
def pushes_add(request: CloudTaskRequest) -> None:
    add(a=1, b=1).delay()


@task
async def async_add(request: CloudTaskRequest, a: int, b: int) -> int:
    calls.append(("async_add", (a, b)))
    return a + b


@task
def reports_atomic(request: CloudTaskRequest) -> bool:
    from django.db import connection

    return connection.in_atomic_block


# Fixture tasks of the local queue and worker tests.

release = threading.Event()


@task
def record_delivery(request: CloudTaskRequest, n: int) -> int:
    calls.append(("record_delivery", (n, request.retry_count, request.task_name)))
    return n


@task
def flaky(request: CloudTaskRequest, failures: int) -> int:
    calls.append(("flaky", request))
    if request.retry_count < failures:
        raise RuntimeError(f"failing on purpose, attempt {request.retry_count + 1}")
    return request.retry_count


@task
def blocks_until_released(request: CloudTaskRequest, seconds: float) -> bool:
    calls.append(("blocks_until_released", request.retry_count))
    return release.wait(seconds)


# Failure handling ---------------------------------------------------------------------------


@task
def record_failure(
    request: CloudTaskRequest,
    task: str,
    id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    error: dict[str, str],
) -> None:
    calls.append(
        ("record_failure", {"task": task, "id": id, "args": args, "kwargs": kwargs, "error": error})
    )


@task(max_retries=2, on_failure=record_failure)
def fails_twice_allowed(request: CloudTaskRequest, n: int) -> None:
    calls.append(("fails_twice_allowed", request.retries))
    raise ValueError(f"attempt {request.retries} of {n}")


@task(retry_for=ConnectionError, on_failure="tests.tasks.record_failure")
def retries_connection_errors_only(request: CloudTaskRequest, kind: str) -> None:
    calls.append(("retries_connection_errors_only", kind))
    raise ConnectionError("down") if kind == "connection" else KeyError(kind)


@task(on_failure=record_failure)
def rejects(request: CloudTaskRequest) -> None:
    from cloudtask import Reject

    calls.append(("rejects", None))
    raise Reject("order 42 no longer exists")


@task(max_retries=2, on_failure=record_failure)
def retries_itself(request: CloudTaskRequest, countdown: float = 60) -> None:
    calls.append(("retries_itself", request.retries))
    try:
        raise TimeoutError("upstream slow")
    except TimeoutError as exc:
        request.retry(countdown=countdown, exc=exc)


@task(max_retries=1)
def reports_last_attempt(request: CloudTaskRequest) -> bool:
    return request.is_last_attempt


@task(on_failure="tests.tasks.no_such_handler")
def fails_with_missing_handler(request: CloudTaskRequest) -> None:
    raise ValueError("handler is missing")


# Cloud Tasks backend: target options --------------------------------------------------------


@task(method="PUT", url="http://127.0.0.1:9/partner/tasks/")
def put_to_partner(request: CloudTaskRequest, n: int) -> None:
    calls.append(("put_to_partner", n))


@task(auth="oauth", oauth_scope="https://www.googleapis.com/auth/cloud-tasks")
def with_oauth_token(request: CloudTaskRequest) -> None:
    calls.append(("with_oauth_token", None))


@task(auth=None)
def without_token(request: CloudTaskRequest) -> None:
    calls.append(("without_token", None))


@task(
    app_engine={"service": "worker", "version": "v2", "instance": "1"},
    relative_uri="/_tasks/?via=gae",
)
def on_app_engine(request: CloudTaskRequest) -> None:
    calls.append(("on_app_engine", None))


@task(named="args")
def deduplicated(request: CloudTaskRequest, a: int, b: int = 2) -> int:
    calls.append(("deduplicated", (a, b)))
    return a + b


@task(timeout=120, queue="reports")
def with_deadline(request: CloudTaskRequest) -> None:
    calls.append(("with_deadline", None))


@task
def forgets_the_request(x):  # type: ignore[no-untyped-def]  # the newcomer's mistake, on purpose
    return x


@task(on_failure=record_failure)
def fails_on_queue(request: CloudTaskRequest) -> None:
    calls.append(("fails_on_queue", None))
    raise ValueError("always")


@task
def logs_a_line(request: CloudTaskRequest) -> None:
    logging.getLogger(__name__).info("sending %d email", 1)


@task(audience="https://audience.example.com/tasks")
def with_audience(request: CloudTaskRequest) -> str | None:
    calls.append(("with_audience", request.oidc_email))
    return request.oidc_email


@task(expires=60)
def expires_in_a_minute(request: CloudTaskRequest, n: int) -> int:
    calls.append(("expires_in_a_minute", n))
    return n


@task
def periodic_report(request: CloudTaskRequest, label: str = "daily", full: bool = False) -> str:
    """What the periodic task tests schedule: records its call id and arguments."""
    calls.append(("periodic_report", (request.call_id, label, full)))
    return label


@task
def total(request: CloudTaskRequest, numbers: list[int], extra: int = 0) -> int:
    """A chord body in the workflow tests: the sum of its group's results."""
    calls.append(("total", numbers))
    return sum(numbers) + extra


@task
def passes_on(request: CloudTaskRequest, value: Any) -> Any:
    """Returns what it got, falsy values included (workflow tests)."""
    calls.append(("passes_on", value))
    return value


@task
def fails_for_good(request: CloudTaskRequest, *args: Any) -> None:
    """Rejects every call: fails at once, without retries (workflow tests)."""
    calls.append(("fails_for_good", args))
    raise Reject(f"refused {args!r}")


@task
def report_error(request: CloudTaskRequest, *, label: str = "", **given: Any) -> None:
    """A workflow's error callback: records what it was given."""
    calls.append(("report_error", {"label": label, **given}))


@task
def repeat(request: CloudTaskRequest, text: str, times: int) -> str:
    """Returns ``text`` ``times`` times: a result larger than the call (workflow tests)."""
    return text * times
