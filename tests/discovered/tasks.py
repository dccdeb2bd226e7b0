"""Imported only by cloudtask's autodiscovery (nothing in the tests imports it)."""

from cloudtask import CloudTaskRequest, task


@task(name="discovered.ping")
def ping(request: CloudTaskRequest) -> str:
    return "pong"
