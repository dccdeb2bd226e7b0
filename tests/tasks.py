"""Fixture tasks, named for their behaviour."""

from __future__ import annotations

from typing import Any

from cloudtask import CloudTaskRequest, task

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
