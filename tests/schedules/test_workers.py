"""Several local worker processes fire each due time of a schedule exactly once.

Real ``cloudtask_worker`` processes on one database (a SQLite file; PostgreSQL in the marked
test) race for the same due schedule; the runs are counted where they are delivered.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import Project, wait_for
from tests.support.worker import ScriptedServer

pytestmark = [pytest.mark.slow]

WORKERS = 4
#: Once a year: between the due times the test sets, no other run falls due.
YEARLY = {"task": "tests.tasks.periodic_report", "cron": "0 0 1 1 *"}


def fire_with_workers(project: Project, server: ScriptedServer) -> tuple[list[str], list[str]]:
    """Make the schedule due at three past times in turn; return (expected, delivered) ids."""
    settings = json.loads(project.env["TEST_CLOUDTASK"])
    project.env["TEST_CLOUDTASK"] = json.dumps({**settings, "SCHEDULES": {"yearly": YEARLY}})
    done = project.run("command", "migrate", "--verbosity=0")
    assert done.returncode == 0, done.stderr
    workers = [
        project.start("worker", "--poll-interval", "0.05", "--concurrency", "4")
        for _ in range(WORKERS)
    ]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    due_times = [now - timedelta(minutes=minutes) for minutes in (30, 20, 10)]
    try:
        wait_for(lambda: _has_row(project), 60, "the workers to make the schedule's row")
        for count, due in enumerate(due_times, start=1):
            code = (
                "from cloudtask.models import Schedule; from datetime import datetime; "
                f"Schedule.objects.update(next_run=datetime.fromisoformat({due.isoformat()!r}))"
            )
            done = project.run("exec", code)
            assert done.returncode == 0, done.stderr
            wait_for(lambda c=count: len(server.requests) >= c, 60, f"run {count}")
        # Every worker has had time for several looks at the table after the last run.
        wait_for(lambda: _quiet(server, 1.0), 10, "no more deliveries")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=60)
        server.close()
    delivered = [json.loads(request["body"])["id"] for request in server.requests]
    return [stamp(due) for due in due_times], delivered


def _has_row(project: Project) -> bool:
    done = project.run(
        "exec", "from cloudtask.models import Schedule; print(Schedule.objects.count())"
    )
    return done.returncode == 0 and done.stdout.strip() == "1"


def _quiet(server: ScriptedServer, seconds: float) -> bool:
    before = len(server.requests)
    time.sleep(seconds)
    return len(server.requests) == before


def stamp(due: datetime) -> str:
    return f"yearly.{due.strftime('%Y%m%dT%H%M%S')}Z"


@pytest.mark.django_db(transaction=True)
def test_four_workers_on_sqlite_fire_each_due_time_once(tmp_path: Path) -> None:
    server = ScriptedServer()
    project = Project(tmp_path / "db.sqlite3", server.url)
    expected, delivered = fire_with_workers(project, server)
    assert delivered == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_workers_on_postgresql_fire_each_due_time_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    server = ScriptedServer()
    database = {
        **postgres.create_database(f"cloudtask_{uuid.uuid4().hex[:12]}"),
        "CONN_MAX_AGE": 60,
    }
    project = Project(tmp_path / "unused", server.url, database)
    expected, delivered = fire_with_workers(project, server)
    assert delivered == expected
