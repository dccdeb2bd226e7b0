"""Two schedules of one task without names: they would share the default name."""

from __future__ import annotations

from cloudtask import CloudTaskRequest, periodic, task


@periodic("0 3 * * *")
@periodic("0 4 * * *")
@task(name="shop.tasks.twice")
def twice(request: CloudTaskRequest) -> None: ...
