"""The worker's own statements (cloudtask/backends/local/sql.py), on both of their paths.

PostgreSQL and SQLite 3.35+ lease and record with ``UPDATE ... RETURNING``; other databases
(MySQL, MariaDB, older SQLite) read, then write. Both paths run here on the suite's SQLite,
the second by saying that it returns no rows; PostgreSQL runs the first in test_postgres.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from cloudtask.backends.local import claims, sql, store
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalQueue, LocalTask
from tests import tasks
from tests.support.worker import T0, FakeClock, ScriptedServer, drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["returning", "read-then-write"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "read-then-write":
        monkeypatch.setattr(claims, "returns_rows", lambda: False)
    elif not sql.returns_rows():
        pytest.skip(f"SQLite {connection.Database.sqlite_version} has no UPDATE ... RETURNING")
    return str(request.param)


def due(call: object) -> str:
    handle = call.delay()  # type: ignore[attr-defined]
    LocalTask.objects.filter(name=handle.name).update(schedule_time=T0)
    return str(handle.name)


def test_answers_are_recorded_attempt_by_attempt(path: str, scripted: ScriptedServer) -> None:
    scripted.answers = [(503, {}), (404, {}), (200, {})]
    clock = FakeClock()
    name = due(tasks.noop())
    worker = Worker(clock=clock)
    drain(worker)
    task = LocalTask.objects.get(name=name)
    assert (task.status, task.last_response_status, task.retry_reason) == (
        "queued",
        503,
        "503 Service Unavailable",
    )
    assert (task.dispatch_count, task.response_count, task.execution_count) == (1, 1, 0)
    assert (task.lease_token, task.lease_expires, task.finished_at) == ("", None, None)
    assert task.schedule_time == T0 + timedelta(seconds=0.1)  # the default first backoff
    for _ in range(2):
        clock.advance(60)
        drain(worker)
    task.refresh_from_db()
    assert (task.status, task.last_response_status, task.retry_reason) == ("succeeded", 200, "")
    assert (task.dispatch_count, task.response_count, task.execution_count) == (3, 3, 2)
    assert task.finished_at == T0 + timedelta(seconds=120)


def test_a_batch_of_answers_is_recorded_together(path: str, scripted: ScriptedServer) -> None:
    names = {due(tasks.noop()) for _ in range(6)}
    worker = Worker(clock=FakeClock())
    assert worker.run_once() == 6
    worker.finish_in_flight()
    assert worker.summary.succeeded == 6
    assert set(LocalTask.objects.filter(status="succeeded").values_list("name", flat=True)) == (
        names
    )
    worker.close()


def test_a_lost_lease_is_not_recorded(path: str, scripted: ScriptedServer) -> None:
    scripted.delay = 0.3
    name = tasks.noop().delay().name
    worker = Worker()
    assert worker.run_once() == 1
    assert store.purge("default") == 1
    worker.finish_in_flight()
    assert LocalTask.objects.get(name=name).status == "deleted"
    assert worker.summary.superseded == 1
    worker.close()


def test_each_due_task_is_leased_once_oldest_first(path: str, scripted: ScriptedServer) -> None:
    names = [due(tasks.noop()) for _ in range(3)]
    LocalTask.objects.filter(name=names[0]).update(schedule_time=T0.replace(second=1))
    first = claims.lease("default", 2, T0.replace(minute=5), worker="a").claimed
    second = claims.lease("default", 2, T0.replace(minute=5), worker="b").claimed
    assert [c.task_id for c in first] == [names[1], names[2]]
    assert [c.task_id for c in second] == [names[0]]
    leased = LocalTask.objects.get(name=names[0])
    assert (leased.status, leased.lease_worker, leased.dispatch_count) == ("running", "b", 1)
    # The lease lasts the dispatch deadline (10 minutes) plus the grace for recording.
    assert leased.lease_expires == T0.replace(minute=5) + leased.dispatch_deadline + (
        claims.LEASE_GRACE
    )


def test_paused_deleted_and_unlisted_queues_are_not_served(
    path: str, scripted: ScriptedServer
) -> None:
    due(tasks.noop())
    due(tasks.send_email(to="x@example.com"))
    assert claims.due_queues(T0) == ["default", "emails"]
    assert claims.due_queues(T0, ["emails", "nothing"]) == ["emails"]
    assert claims.due_queues(T0, []) == []
    store.pause("emails")
    assert [(q.name, q.forced_only) for q in claims.serve(T0)] == [("default", False)]
    LocalQueue.objects.filter(name="default").update(config={"max_attempts": 3})
    [served] = claims.serve(T0)
    assert served.config == {"max_attempts": 3}
    LocalQueue.objects.filter(name="default").update(deleted_at=T0)
    assert claims.serve(T0) == []
