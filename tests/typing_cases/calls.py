"""Checked by mypy in tests/test_typing.py; lines marked E: must be reported."""

from datetime import timedelta

from cloudtask import CloudTaskRequest, TaskCall, TaskHandle, task


@task
def add(request: CloudTaskRequest, a: int = 5, b: int = 4) -> int:
    return a + b


@task(queue="emails", timeout=timedelta(minutes=2))
def send(request: CloudTaskRequest, to: str) -> str:
    return to


call: TaskCall[int] = add(a=1, b=2)
handle: TaskHandle = add(a=1).delay()
result: int = add(a=1, b=2)()
sent: str = send(to="a@example.com").execute()
send(to="a@example.com").schedule(countdown=30)

add(a="one")  # E: [arg-type]
add(c=3)  # E: [call-arg]
send()  # E: [call-arg]
wrong: str = add(a=1)()  # E: [assignment]
celery_style: TaskHandle = add.delay(a=1, b=2)
add.delay(a="one")  # E: [arg-type]
send.delay(to="a@example.com", cc="b@example.com")  # E: [call-arg]
