"""@periodic below @task: a mistake the system checks report."""

from __future__ import annotations

from cloudtask import CloudTaskRequest, periodic, task


@task(name="shop.tasks.wrong_order")
@periodic("0 3 * * *")
def wrong_order(request: CloudTaskRequest) -> None: ...
