"""Two group members finishing at the same moment, in threads of one process, on a SQLite file
and (marked ``postgres``) on PostgreSQL: the chord body is pushed exactly once.

The test database of the suite is SQLite in memory, whose shared cache refuses a second
writer at once instead of waiting; so the race runs in a subprocess on a real database.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import Project

RACE = """
import json, threading
from django.core.management import call_command
from django.db import connection
from cloudtask import signals
from cloudtask.testing import capture_tasks
from cloudtask.workflows import group

call_command("migrate", verbosity=0)
barrier = threading.Barrier(2, timeout=30)

def meet(sender, **kwargs):
    barrier.wait()  # both members' results are recorded from this same moment on

signals.task_succeeded.connect(meet)
codes, pushed, results = [], [], []
for _ in range(5):
    with capture_tasks() as captured:
        handle = (group(tasks.passes_on.s(1), tasks.passes_on.s(2)) | tasks.total.s()).delay()
        members = list(captured)

        def run(member):
            codes.append(member.run().status_code)
            connection.close()

        threads = [threading.Thread(target=run, args=(member,)) for member in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pushed.append([c.task.name for c in captured[2:]])
        signals.task_succeeded.disconnect(meet)
        captured.run_all()
        signals.task_succeeded.connect(meet)
    results.append(handle.result())
print(json.dumps({"codes": codes, "pushed": pushed, "results": results}))
"""


def race(project: Project) -> dict[str, Any]:
    done = project.run("exec", RACE, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def check(outcome: dict[str, Any]) -> None:
    assert outcome["codes"] == [200] * 10
    assert outcome["pushed"] == [["tests.tasks.total"]] * 5
    assert outcome["results"] == [3] * 5


@pytest.mark.slow
def test_on_a_sqlite_file(tmp_path: Path) -> None:
    check(race(Project(tmp_path / "db.sqlite3", "http://testserver/_tasks/")))


@pytest.mark.postgres
@pytest.mark.slow
def test_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    database = postgres.create_database(f"cloudtask_{uuid.uuid4().hex[:12]}")
    check(race(Project(tmp_path / "unused", "http://testserver/_tasks/", database)))
