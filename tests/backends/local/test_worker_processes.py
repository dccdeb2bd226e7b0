"""Real worker processes: SIGKILL and leases, signals, and two workers sharing 500 tasks.

The workers run in subprocesses on a SQLite file (the test database lives in this process's
memory); they deliver to live_server, which runs in a thread of this process, so deliveries
are counted on the receiving side in ``tests.tasks.calls``.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests import tasks
from tests.support.processes import Project, summary, wait_for
from tests.support.worker import ScriptedServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def project(static_url: None, live_server: Any, tmp_path: Path) -> Iterator[Project]:
    tasks.release.clear()
    yield Project(tmp_path / "local.sqlite3", live_server.url + "/_tasks/")
    tasks.release.set()


def blocked_calls() -> list[Any]:
    return [c for c in tasks.calls if c[0] == "blocks_until_released"]


def test_sigkilled_worker_leaves_its_task_to_the_next_after_the_lease(project: Project) -> None:
    project.push("blocks_until_released", 1, {"seconds": 20}, deadline=1)
    first = project.start("worker", "--poll-interval", "0.05")
    try:
        wait_for(lambda: len(blocked_calls()) == 1, 20, "the first delivery")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL
    tasks.release.set()
    [row] = project.show()
    assert (row["status"], row["dispatch_count"]) == ("running", 1)

    early = project.run("worker", "--burst")
    assert (early.returncode, summary(early.stdout)["dispatched"]) == (0, 0)

    lease_expires = datetime.fromisoformat(row["lease_expires"])
    wait_for(lambda: datetime.now(lease_expires.tzinfo) > lease_expires, 15, "the lease")
    second = project.run("worker", "--burst")
    assert second.returncode == 0, second.stdout + second.stderr
    assert summary(second.stdout)["succeeded"] == 1
    assert blocked_calls() == [("blocks_until_released", 0), ("blocks_until_released", 1)]
    [row] = project.show()
    assert (row["status"], row["dispatch_count"]) == ("succeeded", 2)


def test_first_sigterm_finishes_in_flight_second_exits_at_once(project: Project) -> None:
    project.push("blocks_until_released", 2, {"seconds": 20})
    worker = project.start("worker", "--poll-interval", "0.05", "--concurrency", "1")
    wait_for(lambda: len(blocked_calls()) == 1, 20, "the first delivery")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert worker.poll() is None  # still finishing the delivery in flight
    tasks.release.set()
    stdout, _ = worker.communicate(timeout=15)
    assert worker.returncode == 0
    assert "finishing 1 in-flight deliveries" in stdout
    assert (summary(stdout)["dispatched"], summary(stdout)["succeeded"]) == (1, 1)
    assert sorted(r["status"] for r in project.show()) == ["queued", "succeeded"]

    tasks.release.clear()
    worker = project.start("worker", "--poll-interval", "0.05")
    wait_for(lambda: len(blocked_calls()) == 2, 20, "the second delivery")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    stdout, _ = worker.communicate(timeout=5)
    assert time.monotonic() - started < 3
    assert worker.returncode == 130
    assert "second signal: exiting now" in stdout
    assert [r["status"] for r in project.show() if r["status"] != "succeeded"] == ["running"]


def test_two_workers_deliver_500_tasks_exactly_once(project: Project) -> None:
    project.push("record_delivery", 0, {})  # creates the database
    workers = [
        project.start("worker", "--poll-interval", "0.05", "--concurrency", "8") for _ in range(2)
    ]
    try:
        time.sleep(1.5)  # both are polling before the first task arrives
        project.push("record_delivery", 500, {"n": "$n"})
        wait_for(lambda: len(tasks.calls) >= 500, 120, "500 deliveries")
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    time.sleep(0.5)
    delivered = Counter(call[1][0] for call in tasks.calls if call[0] == "record_delivery")
    assert len(tasks.calls) == 500
    assert set(delivered) == set(range(500))
    assert set(delivered.values()) == {1}
    counts = [summary(output) for output in outputs]
    assert sum(c["succeeded"] for c in counts) == 500
    assert all(c["succeeded"] > 0 for c in counts), counts
    assert all(w.returncode == 0 for w in workers)
    assert {r["status"] for r in project.show()} == {"succeeded"}


@pytest.fixture
def scripted_project(tmp_path: Path) -> Iterator[tuple[Project, ScriptedServer]]:
    """Workers delivering to a scripted server that counts requests in flight."""
    server = ScriptedServer()
    yield Project(tmp_path / "limits.sqlite3", server.url), server
    server.close()


def run_two_workers(
    project: Project, server: ScriptedServer, queue: dict[str, Any], n: int
) -> None:
    """Start two polling workers, push ``n`` noop tasks to a queue with ``queue``'s limits."""
    settings = json.loads(project.env["TEST_CLOUDTASK"])
    project.env["TEST_CLOUDTASK"] = json.dumps({**settings, "QUEUES": {"default": queue}})
    project.push("noop", 0, {})  # creates the database
    workers = [
        project.start("worker", "--poll-interval", "0.05", "--concurrency", "8") for _ in range(2)
    ]
    try:
        time.sleep(1.5)  # both are polling before the first task arrives
        project.push("noop", n, {})
        wait_for(lambda: len(server.requests) >= n, 60, f"{n} deliveries")
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(w.returncode == 0 for w in workers), outputs
    assert sum(summary(output)["succeeded"] for output in outputs) == n
    assert len(server.requests) == n


def test_two_workers_share_the_queue_concurrency_limit(
    scripted_project: tuple[Project, ScriptedServer],
) -> None:
    project, server = scripted_project
    server.delay = 0.3
    run_two_workers(project, server, {"max_concurrent_dispatches": 2}, 16)
    # Each worker alone would allow two at once, four together.
    assert server.max_active == 2


def test_two_workers_share_the_queue_rate_limit(
    scripted_project: tuple[Project, ScriptedServer],
) -> None:
    project, server = scripted_project
    run_two_workers(project, server, {"max_dispatches_per_second": 4}, 12)
    times = sorted(request["at"] for request in server.requests)
    offsets = [at - times[0] for at in times]
    # One bucket for the queue: four at once, then one every quarter second, so the twelfth
    # goes out about 2 s after the first. A bucket per worker would send eight at once.
    assert sum(offset < 0.2 for offset in offsets) <= 4
    assert offsets[-1] >= 1.6


@pytest.mark.parametrize(
    ("role", "args"),
    [
        ("command", ("cloudtask_worker", "--burst")),
        ("command", ("cloudtask_queues", "list")),
        ("command", ("cloudtask_tasks", "list", "default")),
        ("exec", ("tasks.noop.delay()",)),
    ],
)
def test_before_migrate_the_local_queue_says_run_migrate(
    tmp_path: Path, role: str, args: tuple[str, ...]
) -> None:
    project = Project(tmp_path / "new.sqlite3", "http://127.0.0.1:9/_tasks/")
    done = project.run(role, *args)
    assert done.returncode != 0
    assert (
        "The local queue's tables (cloudtask_localqueue, cloudtask_localtask) are not in the "
        "database yet: run python manage.py migrate." in done.stderr
    ), done.stderr
    assert "no such table" not in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "options",
    [
        {},  # Django's defaults: no WAL, a 5 s timeout, deferred transactions
        # The options docs/howto/local-queue.md recommends.
        {
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    ],
)
def test_two_workers_on_sqlite(
    scripted_project: tuple[Project, ScriptedServer], options: dict[str, Any]
) -> None:
    project, server = scripted_project
    project.env["TEST_SQLITE_OPTIONS"] = json.dumps(options)
    project.push("noop", 60, {})
    workers = [
        project.start("worker", "--burst", "--poll-interval", "0.05", "--concurrency", "4")
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert len(server.requests) == 60
    everything = "".join(out + err for out, err in outputs)
    # Each claim and each record begins with its write, so no transaction has to upgrade a
    # read to a write, which SQLite refuses at once when two connections try it together.
    assert "database is locked" not in everything
    assert sum(summary(out)["succeeded"] for out, _ in outputs) == 60


def test_before_migrate_a_django_task_says_run_migrate(tmp_path: Path) -> None:
    project = Project(tmp_path / "new.sqlite3", "http://127.0.0.1:9/_tasks/")
    done = project.run("exec", "from tests import dj_tasks; dj_tasks.add.enqueue(1)")
    assert done.returncode != 0
    assert (
        "The results table (cloudtask_taskresult) is not in the database yet: run python "
        "manage.py migrate." in done.stderr.splitlines()[-1]
    ), done.stderr
    assert "was never pushed" not in done.stderr
