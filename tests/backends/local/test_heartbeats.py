"""Worker heartbeats: a dead worker's tasks are attempted again within about 30 seconds.

Workers run on a fake clock against the real database and a real scripted HTTP server; the
real-process version (SIGKILL) is in test_worker_processes.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import cloudtask
from cloudtask.backends.local import claims, heartbeats
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalTask, LocalWorker
from tests import tasks
from tests.support.worker import T0, FakeClock, ScriptedServer, drain

pytestmark = pytest.mark.django_db(transaction=True)


def push_due() -> str:
    handle = tasks.noop().delay()
    LocalTask.objects.filter(name=handle.name).update(schedule_time=T0)
    return handle.name


def dead_worker_holding(name: str) -> None:
    """A worker that beat at T0, leased the task for its 10 min deadline, and died."""
    heartbeats.beat("dead0000", T0)
    [claimed] = claims.lease("default", 10, T0, worker="dead0000").claimed
    assert claimed.task_id == name


def test_a_dead_worker_s_task_is_attempted_again_after_30_seconds(
    scripted: ScriptedServer,
) -> None:
    name = push_due()
    dead_worker_holding(name)
    clock = FakeClock(T0 + timedelta(seconds=29))
    lines: list[str] = []
    worker = Worker(clock=clock, log=lines.append)
    assert worker.run_once() == 0  # silent for 29 s: still alive
    clock.advance(1.001)
    worker._last_beat = None  # beat now, not 5 s later
    drain(worker)
    [sent] = scripted.requests
    headers = sent["headers"]
    # To the task, the dead worker's attempt timed out, as a crashed dispatch on Cloud Tasks.
    assert headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert headers["X-CloudTasks-TaskRetryReason"] == "DEADLINE_EXCEEDED"
    assert headers["X-CloudTasks-TaskPreviousResponse"] == "504"
    task = LocalTask.objects.get(name=name)
    assert (task.status, task.dispatch_count) == ("succeeded", 2)
    assert "worker dead0000 gave no sign of life for 30 s: its 1 running tasks" in lines[0]
    assert list(LocalWorker.objects.values_list("name", flat=True)) == []  # both gone


def test_a_busy_worker_keeps_beating_and_keeps_its_tasks(scripted: ScriptedServer) -> None:
    scripted.delay = 0.5
    name = push_due()
    clock = FakeClock(T0)
    busy = Worker(clock=clock, concurrency=1)
    assert busy.run_once() == 1  # full: one delivery under way
    other = Worker(clock=clock)
    for _ in range(12):  # a minute passes; the busy worker polls every 5 s while full
        clock.advance(5)
        busy.run_once()
        assert other.run_once() == 0
    busy.finish_in_flight()
    busy.close()
    other.close()
    assert len(scripted.requests) == 1
    assert LocalTask.objects.get(name=name).dispatch_count == 1


def test_a_worker_that_stops_leaves_and_hands_back_what_it_held(
    scripted: ScriptedServer,
) -> None:
    scripted.delay = 0.3
    name = push_due()
    clock = FakeClock(T0)
    worker = Worker(clock=clock)
    assert worker.run_once() == 1
    assert LocalWorker.objects.filter(name=worker.name).exists()
    worker.request_stop()
    worker.request_stop()  # a second Ctrl+C: exit without waiting for the answer
    worker.run()
    assert not LocalWorker.objects.exists()
    task = LocalTask.objects.get(name=name)
    assert task.status == "running"
    assert task.lease_expires is not None
    assert task.lease_expires < T0
    # Its answer came after all, before another worker took the task: it is recorded.
    worker.finish_in_flight()
    worker.close()
    assert LocalTask.objects.get(name=name).status == "succeeded"


def test_a_worker_taken_for_dead_rejoins_and_its_answer_is_superseded(
    scripted: ScriptedServer,
) -> None:
    scripted.delay = 0.3
    name = push_due()
    clock = FakeClock(T0)
    paused = Worker(clock=clock)
    assert paused.run_once() == 1
    clock.advance(31)  # it stalls (a suspended laptop) while another worker polls
    other = Worker(clock=clock)
    drain(other)
    paused.finish_in_flight()
    assert paused.summary.superseded == 1
    paused.run_once()
    assert LocalWorker.objects.filter(name=paused.name).exists()  # beating again
    paused.close()
    assert LocalTask.objects.get(name=name).status == "succeeded"


def test_attempts_show_their_schedule_and_response_times(scripted: ScriptedServer) -> None:
    name = push_due()
    scripted.answers.append((503, {}))
    scripted.delay = 0.3
    clock = FakeClock(T0 + timedelta(seconds=2))
    worker = Worker(clock=clock)
    assert worker.run_once() == 1
    running = cloudtask.get_task("default", name).last_attempt
    assert running is not None
    assert (running.schedule_time, running.dispatch_time) == (T0, clock.now)
    assert running.response_time is None
    clock.advance(1)
    worker.finish_in_flight()
    worker.close()
    attempt = cloudtask.get_task("default", name).last_attempt
    assert attempt is not None
    assert (attempt.schedule_time, attempt.dispatch_time, attempt.response_time) == (
        T0,
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=3),
    )
