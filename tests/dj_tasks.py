"""Django tasks (``@django.tasks.task``) for the tests of cloudtask's django.tasks backend."""

from __future__ import annotations

from typing import Any

import django

from cloudtask.django_tasks import TaskContext, task

calls: list[tuple[str, Any]] = []


@task()
def add(a: int, b: int = 2) -> int:
    calls.append(("add", (a, b)))
    return a + b


@task(queue_name="Mail Queue")
def send_welcome(user_id: int) -> str:
    calls.append(("send_welcome", user_id))
    return f"welcome {user_id}"


@task()
async def add_async(a: int, b: int) -> int:
    calls.append(("add_async", (a, b)))
    return a + b


@task(takes_context=True)
def knows_its_attempt(context: TaskContext, fail_until: int) -> dict[str, Any]:
    calls.append(("knows_its_attempt", context.attempt))
    if context.attempt < fail_until:
        raise ValueError(f"attempt {context.attempt}")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task()
def fails() -> None:
    calls.append(("fails", None))
    raise ValueError("This task failed")


@task()
def exits() -> None:
    raise SystemExit("exit now")


@task()
def returns_a_lambda() -> Any:
    return lambda: True


if django.VERSION >= (6, 1):  # @task(**options) reaches the backend's task_class

    @task(timeout=30, headers={"X-Tenant": "a"}, max_retries=3)  # type: ignore[call-arg]
    def with_options() -> None:
        calls.append(("with_options", None))
