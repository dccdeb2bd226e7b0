"""Tasks with @periodic, imported (again) by the tests inside an isolated registry."""

from __future__ import annotations

from cloudtask import CloudTaskRequest, periodic, task


@periodic("0 3 * * *", time_zone="Europe/Zurich")
@periodic("0 12 * * 1", kwargs={"n": 2}, name="weekly")
@task(name="shop.tasks.report")
def report(request: CloudTaskRequest, n: int = 1) -> int:
    return n


@periodic("0 3 * * *", name="nightly")
@task(name="shop.tasks.other")
def other(request: CloudTaskRequest) -> None: ...


@task(name="shop.tasks.elsewhere", url="https://other.example.com/_tasks/")
def elsewhere(request: CloudTaskRequest) -> None: ...
