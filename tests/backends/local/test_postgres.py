"""The local queue on PostgreSQL with several real worker processes.

Marked ``postgres``: each session starts its own server from the distribution's packages
(``apt-get install postgresql``) and skips these tests when there is none, unless
``CLOUDTASK_REQUIRE_POSTGRES=1`` (CI) makes that a failure. Run them alone with
``.venv/bin/pytest -m postgres -s``: each prints its figures.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests import tasks
from tests.support.postgres import PostgresServer
from tests.support.processes import Project, summary, wait_for
from tests.support.worker import ScriptedServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 4


def database(postgres: PostgresServer, **options: Any) -> dict[str, Any]:
    settings = postgres.create_database(f"cloudtask_{uuid.uuid4().hex[:12]}")
    # Connections kept between polls, as a worker on a real project would run.
    return {**settings, "CONN_MAX_AGE": 60, "OPTIONS": options}


def start_workers(project: Project, *extra: str) -> list[Any]:
    return [
        project.start("worker", "--poll-interval", "0.05", "--concurrency", "8", *extra)
        for _ in range(WORKERS)
    ]


def stop(workers: list[Any]) -> list[str]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    outputs = []
    for worker in workers:
        try:
            outputs.append("".join(worker.communicate(timeout=60)))
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGABRT)  # faulthandler prints where each thread is
            pytest.fail("a worker did not stop after SIGTERM:\n" + "".join(worker.communicate()))
    return outputs


def deliver_noops(project: Project, server: ScriptedServer, pushed: int) -> list[str]:
    """Start the workers, push ``pushed`` noop tasks, wait for them all; return the output."""
    project.push("noop", 0, {})  # migrates
    workers = start_workers(project)
    try:
        time.sleep(1.5)  # all are polling before the first task arrives
        project.push("noop", pushed, {})
        wait_for(lambda: len(server.requests) >= pushed, 90, f"{pushed} deliveries")
        return stop(workers)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        server.close()


def test_four_workers_one_killed_deliver_every_attempt_once(
    postgres: PostgresServer, static_url: None, live_server: Any, tmp_path: Path
) -> None:
    project = Project(tmp_path / "unused", live_server.url + "/_tasks/", database(postgres))
    pushed = 400
    project.push("record_delivery", 0, {})  # migrates
    workers = start_workers(project)
    try:
        time.sleep(1.5)  # all are polling before the first task arrives
        project.push("record_delivery", pushed, {"n": "$n"})
        wait_for(lambda: len(tasks.calls) >= pushed // 4, 60, "a quarter of the deliveries")
        workers[0].send_signal(signal.SIGKILL)  # mid-run, with deliveries in flight
        killed_at = time.monotonic()

        def executed() -> set[int]:
            return {n for name, (n, *_) in list(tasks.calls) if name == "record_delivery"}

        wait_for(lambda: len(executed()) == pushed, 60, "every task executed")

        def settled() -> bool:
            time.sleep(0.5)
            return {row["status"] for row in project.show()} == {"succeeded"}

        # Its leases last 10 min; its silence gives its tasks to the others within ~30 s.
        wait_for(settled, 90, "every task recorded as succeeded")
        recovered_s = time.monotonic() - killed_at
        time.sleep(0.5)
        outputs = stop(workers[1:])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    attempts = Counter(
        (n, retry) for name, (n, retry, _) in tasks.calls if name == "record_delivery"
    )
    duplicates = sum(count - 1 for count in attempts.values())
    lost = pushed - len(executed())
    again = sum(1 for _, retry in attempts if retry > 0)
    print(
        f"\npostgres {WORKERS} workers, one SIGKILLed: pushed={pushed} "
        f"executed={len(executed())} deliveries={len(tasks.calls)} "
        f"duplicates_of_one_attempt={duplicates} lost={lost} attempted_again={again} "
        f"all_succeeded_s_after_kill={recovered_s:.1f}"
    )
    assert (duplicates, lost) == (0, 0)
    assert recovered_s < 45
    assert all("db_error" not in output for output in outputs), outputs


def test_answers_and_retries_are_recorded_in_batches(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # The worker's own statements on PostgreSQL (backends/local/sql.py): a batch of answers,
    # retries among them, is one UPDATE of typed arrays returning the rows it stored.
    pushed = 12
    server = ScriptedServer()
    server.answers = [(503, {}), (404, {}), (503, {})]
    project = Project(tmp_path / "unused", server.url, database(postgres))
    project.push("noop", 0, {})  # migrates
    project.push("noop", pushed, {})
    retried = 0
    for _ in range(10):  # a burst ends with retries waiting for their backoff (0.1 s and up)
        done = project.run("worker", "--burst", "--concurrency", "6", timeout=90)
        retried += summary(done.stdout)["retried"]
        if done.returncode == 0:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = project.show()
    assert {row["status"] for row in rows} == {"succeeded"}
    assert sum(row["dispatch_count"] for row in rows) == pushed + 3
    assert sum(row["response_count"] for row in rows) == pushed + 3
    assert sum(row["execution_count"] for row in rows) == pushed + 1  # a 5xx is no execution
    assert {row["last_response_status"] for row in rows} == {200}
    assert {(row["lease_token"], row["lease_expires"]) for row in rows} == {("", None)}
    assert retried == 3


def test_four_workers_hold_the_queue_rate_exactly(postgres: PostgresServer, tmp_path: Path) -> None:
    rate, pushed = 20, 200
    server = ScriptedServer()
    project = Project(tmp_path / "unused", server.url, database(postgres))
    settings = json.loads(project.env["TEST_CLOUDTASK"])
    queues = {"default": {"max_dispatches_per_second": rate}}
    project.env["TEST_CLOUDTASK"] = json.dumps({**settings, "QUEUES": queues})
    outputs = deliver_noops(project, server, pushed)
    times = sorted(request["at"] for request in server.requests)
    burst = rate  # the bucket holds one second's worth
    # Over any stretch of the run, no more than the burst plus the rate times its length.
    # Arrival times are measured at the receiving end, after the worker's threads and the
    # network: a delivery held up a moment arrives with the next ones, so a few (3) over the
    # bound are jitter. The bug this guards against sent 17-21 % more: 30 or so here.
    worst = max(
        (j - i + 1) - (burst + rate * (times[j] - times[i]))
        for i in range(len(times))
        for j in range(i, len(times))
    )
    sustained = (pushed - burst) / (times[-1] - times[0])
    print(
        f"\npostgres {WORKERS} workers, max_dispatches_per_second={rate}: pushed={pushed} "
        f"delivered={len(server.requests)} sustained_per_s={sustained:.2f} "
        f"most_over_the_bucket={worst:.2f}"
    )
    assert len(server.requests) == pushed
    assert worst <= 3.0
    assert sustained <= rate * 1.02
    assert sum(summary(output)["succeeded"] for output in outputs) == pushed


@pytest.mark.parametrize(("level", "value"), [("repeatable read", 3), ("serializable", 4)])
def test_claims_under_strict_isolation_are_retried_not_dropped(
    postgres: PostgresServer, tmp_path: Path, level: str, value: int
) -> None:
    pushed = 300
    server = ScriptedServer()
    # psycopg.IsolationLevel values, as Django's OPTIONS["isolation_level"] takes them.
    project = Project(tmp_path / "unused", server.url, database(postgres, isolation_level=value))
    outputs = deliver_noops(project, server, pushed)
    errors = sum(output.count("db_error") for output in outputs)
    print(
        f"\npostgres {level}: pushed={pushed} delivered={len(server.requests)} db_errors={errors}"
    )
    assert len(server.requests) == pushed
    assert errors == 0, outputs
