"""The local worker against a real live_server, a real scripted HTTP server and the real DB."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.client import HTTPConnection
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from cloudtask import TaskHandle, conf, signing
from cloudtask.backends.local import claims, store
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalQueue, LocalTask
from tests import tasks
from tests.support.worker import T0, FakeClock, ScriptedServer, drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def endpoint(static_url: None, live_server: Any) -> Iterator[str]:
    url = live_server.url + "/_tasks/"
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": url}):
        yield url


def row(name: str) -> LocalTask:
    return LocalTask.objects.get(name=name)


def queue_settings(scripted: ScriptedServer, queues: dict[str, Any]) -> override_settings:
    """Deliver to ``scripted`` with ``CLOUDTASK["QUEUES"] = queues``."""
    return override_settings(
        CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": scripted.url, "QUEUES": queues}
    )


def due_now(call: Any) -> TaskHandle:
    """Push ``call`` and make it due at T0 (the fake clock's start)."""
    handle = call.delay()
    LocalTask.objects.filter(name=handle.name).update(schedule_time=T0)
    return handle


def test_delivers_through_the_real_endpoint(endpoint: str) -> None:
    handle = tasks.add(a=2, b=3).delay()
    lines: list[str] = []
    worker = Worker(log=lines.append)
    drain(worker)
    assert tasks.calls == [("add", (2, 3))]
    task = row(handle.name)
    assert (task.status, task.dispatch_count, task.response_count) == ("succeeded", 1, 1)
    assert task.last_response_status == 200
    assert json.loads(task.last_response)["result"] == 5
    assert task.lease_token == ""
    assert lines == [
        f"task=tests.tasks.add name={handle.name} queue=default attempt=1 status=200 "
        f"duration_ms={lines[0].split('duration_ms=')[1].split()[0]} outcome=succeeded"
    ]
    assert worker.summary.dispatched == worker.summary.succeeded == 1


def test_first_attempt_headers(scripted: ScriptedServer) -> None:
    eta = datetime.now(timezone.utc) - timedelta(seconds=1)
    handle = tasks.send_email(to="a@example.com").schedule(at=eta)
    drain(Worker())
    [sent] = scripted.requests
    headers = sent["headers"]
    stored = row(handle.name)
    assert sent["body"] == bytes(stored.body)
    assert headers["X-CloudTasks-QueueName"] == "emails"
    assert headers["X-CloudTasks-TaskName"] == handle.name
    assert headers["X-CloudTasks-TaskRetryCount"] == "0"
    assert headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert headers["X-CloudTasks-TaskETA"] == f"{eta.timestamp():.6f}"
    assert headers["User-Agent"] == "Google-Cloud-Tasks"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Tenant"] == "acme"
    assert headers["X-CloudTask-Signature"] == signing.sign("/_tasks/", sent["body"])
    assert "X-CloudTasks-TaskPreviousResponse" not in headers
    assert "X-CloudTasks-TaskRetryReason" not in headers
    assert "Authorization" not in headers


def test_retry_headers_count_5xx_in_retries_but_not_executions(scripted: ScriptedServer) -> None:
    scripted.answers = [(500, {}), (404, {}), (200, {})]
    clock = FakeClock()
    handle = due_now(tasks.noop())
    worker = Worker(clock=clock)
    for _ in range(3):
        drain(worker)
        clock.advance(60)
    first, second, third = (r["headers"] for r in scripted.requests)
    assert [h["X-CloudTasks-TaskRetryCount"] for h in (first, second, third)] == ["0", "1", "2"]
    assert [h["X-CloudTasks-TaskExecutionCount"] for h in (first, second, third)] == [
        "0",
        "0",
        "1",
    ]
    assert second["X-CloudTasks-TaskPreviousResponse"] == "500"
    assert second["X-CloudTasks-TaskRetryReason"] == "500 Internal Server Error"
    assert third["X-CloudTasks-TaskPreviousResponse"] == "404"
    assert third["X-CloudTasks-TaskRetryReason"] == "404 Not Found"
    # The ETA of a retry is the time the retry was scheduled for.
    assert second["X-CloudTasks-TaskETA"] == f"{(T0 + timedelta(seconds=0.1)).timestamp():.6f}"
    task = row(handle.name)
    assert (task.status, task.dispatch_count, task.response_count, task.execution_count) == (
        "succeeded",
        3,
        3,
        2,
    )


def test_flaky_task_sees_its_retry_count_through_the_endpoint(endpoint: str) -> None:
    clock = FakeClock()
    handle = due_now(tasks.flaky(failures=2))
    worker = Worker(clock=clock)
    for _ in range(3):
        drain(worker)
        clock.advance(60)
    seen = [(r.retry_count, r.execution_count, r.previous_response) for _, r in tasks.calls]
    assert seen == [(0, 0, None), (1, 0, 500), (2, 0, 500)]
    assert row(handle.name).status == "succeeded"


@override_settings(
    CLOUDTASK={
        "BACKEND": conf.LOCAL_BACKEND,
        "QUEUES": {"default": {"min_backoff": 10, "max_backoff": 300, "max_doublings": 3}},
    }
)
def test_backoff_follows_the_queue_config(scripted: ScriptedServer) -> None:
    with queue_settings(
        scripted, {"default": {"min_backoff": 10, "max_backoff": 300, "max_doublings": 3}}
    ):
        scripted.answers = [(503, {})] * 8
        clock = FakeClock()
        handle = due_now(tasks.noop())
        worker = Worker(clock=clock)
        delays = []
        for _ in range(8):
            drain(worker)
            task = row(handle.name)
            delay = (task.schedule_time - clock.now).total_seconds()
            delays.append(delay)
            clock.advance(delay - 0.001)
            assert worker.run_once() == 0  # not due a millisecond early
            clock.advance(0.001)
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300]


def test_retry_after_on_429_delays_task_and_queue(scripted: ScriptedServer) -> None:
    scripted.answers = [(429, {"Retry-After": "120"}), (200, {})]
    clock = FakeClock()
    first = tasks.noop().delay()
    LocalTask.objects.filter(name=first.name).update(schedule_time=T0)
    worker = Worker(clock=clock)
    drain(worker)
    assert row(first.name).schedule_time == T0 + timedelta(seconds=120)
    assert row(first.name).retry_reason == "429 Too Many Requests"
    tasks.noop().delay()  # due now, but the queue is held by Retry-After
    LocalTask.objects.filter(status="queued").exclude(name=first.name).update(schedule_time=T0)
    clock.advance(119)
    assert worker.run_once() == 0
    clock.advance(1)
    drain(worker)
    assert len(scripted.requests) == 3
    assert LocalTask.objects.filter(status="succeeded").count() == 2


def test_exhausted_attempts_are_kept_as_failed(scripted: ScriptedServer) -> None:
    with queue_settings(scripted, {"default": {"max_attempts": 3, "min_backoff": 1}}):
        scripted.answers = [(500, {})] * 5
        clock = FakeClock()
        handle = due_now(tasks.noop())
        worker = Worker(clock=clock)
        for _ in range(5):
            drain(worker)
            clock.advance(10)
    task = row(handle.name)
    assert len(scripted.requests) == 3
    assert (task.status, task.dispatch_count, task.last_response_status) == ("failed", 3, 500)
    assert task.finished_at is not None
    assert worker.summary.failed == 1
    assert worker.summary.retried == 2


def test_rate_limit_per_queue(scripted: ScriptedServer) -> None:
    with queue_settings(scripted, {"default": {"max_dispatches_per_second": 2}}):
        for _n in range(10):
            tasks.noop().delay()
        LocalTask.objects.update(schedule_time=T0)
        clock = FakeClock()
        worker = Worker(clock=clock, concurrency=50)
        started = []
        for _ in range(5):
            started.append(worker.run_once())
            worker.finish_in_flight()
            clock.advance(0.5)
    # A burst of one second's worth (2), then one every half second.
    assert started == [2, 1, 1, 1, 1]


def test_concurrency_limit_per_queue(scripted: ScriptedServer) -> None:
    scripted.delay = 0.2
    with queue_settings(scripted, {"default": {"max_concurrent_dispatches": 3}}):
        for _ in range(9):
            tasks.noop().delay()
        worker = Worker(concurrency=20)
        assert worker.run_once() == 3
        assert worker.run_once() == 0  # all three slots busy
        worker.finish_in_flight()
        drain(worker)
    assert scripted.max_active == 3
    assert len(scripted.requests) == 9


def test_worker_concurrency_caps_all_queues(scripted: ScriptedServer) -> None:
    scripted.delay = 0.2
    for _ in range(4):
        tasks.noop().delay()
        tasks.send_email(to="x@example.com").delay()
    worker = Worker(concurrency=2)
    assert worker.run_once() == 2
    drain(worker)
    assert scripted.max_active == 2
    assert len(scripted.requests) == 8


def test_a_2xx_whose_outcome_header_says_failed_is_kept_as_failed(
    scripted: ScriptedServer,
) -> None:
    gave_up = b'{"status":"failed","error":"Reject","reason":"rejected","id":"c"}'
    scripted.answers = [
        (200, {"X-CloudTask-Outcome": "failed"}, gave_up),
        # The body alone decides nothing: only the endpoint's header says it gave up.
        (200, {}, gave_up),
    ]
    first, second = tasks.noop().delay(), tasks.noop().delay()
    worker = Worker(concurrency=1)
    drain(worker)
    assert (row(first.name).status, row(first.name).retry_reason) == ("failed", "gave up")
    assert (row(second.name).status, row(second.name).retry_reason) == ("succeeded", "")
    assert (worker.summary.failed, worker.summary.succeeded) == (1, 1)


def test_paused_queue_is_not_delivered_until_resumed(scripted: ScriptedServer) -> None:
    tasks.noop().delay()
    email = tasks.send_email(to="x@example.com").delay()
    store.pause("emails")
    worker = Worker()
    drain(worker)
    assert len(scripted.requests) == 1
    assert row(email.name).status == "queued"
    store.pause("emails", paused=False)
    drain(worker)
    assert len(scripted.requests) == 2
    assert row(email.name).status == "succeeded"


def test_only_the_given_queues_are_served(scripted: ScriptedServer) -> None:
    tasks.noop().delay()
    email = tasks.send_email(to="x@example.com").delay()
    drain(Worker(queues=["emails"]))
    assert [r["headers"]["X-CloudTasks-TaskName"] for r in scripted.requests] == [email.name]


def test_purge_while_in_flight_drops_the_answer(scripted: ScriptedServer) -> None:
    scripted.delay = 0.3
    handle = tasks.noop().delay()
    worker = Worker()
    assert worker.run_once() == 1
    assert store.purge("default") == 1
    worker.finish_in_flight()
    task = row(handle.name)
    assert task.status == "deleted"
    assert worker.summary.superseded == 1


def test_database_error_while_claiming_is_retried(scripted: ScriptedServer) -> None:
    handle = tasks.noop().delay()
    table = LocalTask._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_away"')
    worker = Worker()
    try:
        assert worker.run_once() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}_away" RENAME TO "{table}"')
    drain(worker)
    assert row(handle.name).status == "succeeded"
    assert len(scripted.requests) == 1


def test_unreachable_endpoint_is_retried_with_reason(db: None) -> None:
    with override_settings(
        CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": "http://127.0.0.1:9/_tasks/"}
    ):
        handle = due_now(tasks.noop())
        other = due_now(tasks.noop())
        lines: list[str] = []
        clock = FakeClock()
        worker = Worker(clock=clock, log=lines.append)
        # A fixed clock: the retry, 0.1 s later, must not become due while draining.
        drain(worker)
        clock.advance(1)
        drain(worker)  # the second attempts: nothing new is said about the server
    task = row(handle.name)
    assert (task.status, task.dispatch_count, task.response_count) == ("queued", 2, 0)
    assert task.retry_reason == "UNAVAILABLE"
    assert task.last_response_status is None
    # Each attempt names where it went and why there was no answer.
    refused = "url=http://127.0.0.1:9/_tasks/ error='ConnectionRefusedError: [Errno 111] Connection refused'"
    attempts = [line for line in lines if line.startswith("task=")]
    assert len(attempts) == 4
    assert all(refused in line for line in attempts)
    # And the worker says once that nothing serves the tasks, with what to do.
    hints = [line for line in lines if line.startswith("nothing answers")]
    assert hints == [
        "nothing answers at http://127.0.0.1:9/_tasks/ (ConnectionRefusedError: [Errno 111] "
        "Connection refused): is the development server running? Start it with manage.py "
        "runserver, or run manage.py cloudtask_dev, which starts it with a worker. The tasks "
        "wait and are retried with their queue's backoff."
    ]
    assert row(other.name).dispatch_count == 2


def test_request_stop_finishes_in_flight_then_stops(scripted: ScriptedServer) -> None:
    scripted.delay = 0.3
    for _ in range(3):
        tasks.noop().delay()
    worker = Worker(concurrency=1)
    assert worker.run_once() == 1
    worker.request_stop()
    summary = worker.run()
    assert (summary.dispatched, summary.succeeded) == (1, 1)
    assert LocalTask.objects.filter(status="queued").count() == 2


def test_a_signal_landing_inside_the_wait_takes_no_lock_the_wait_holds() -> None:
    # The main thread waits on an Event; a SIGTERM runs the handler inside that wait, with
    # the Event's lock held. A handler taking the lock again never returned.
    worker = Worker()
    holding, release = threading.Event(), threading.Event()

    def hold_the_wait_lock() -> None:
        with worker._wake._cond:  # type: ignore[attr-defined]  # what wait() holds
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_wait_lock)
    holder.start()
    holding.wait()
    restore = worker.install_signal_handlers()
    try:
        signal.raise_signal(signal.SIGTERM)  # the handler runs now, in this thread
        handled_while_held = holder.is_alive()
    finally:
        release.set()
        holder.join()
        restore()
    assert handled_while_held
    assert worker.stopping
    assert not worker.stopped


def test_rate_limit_in_real_time(scripted: ScriptedServer) -> None:
    with queue_settings(scripted, {"default": {"max_dispatches_per_second": 4}}):
        for _ in range(8):
            tasks.noop().delay()
        started = time.monotonic()
        summary = Worker(poll_interval=0.05).run(burst=True)
        elapsed = time.monotonic() - started
    # Four at once (one second's worth), then one every quarter second.
    assert summary.succeeded == 8
    assert 0.95 <= elapsed < 5


def test_a_kept_alive_connection_closed_by_the_server_is_reopened(db: None) -> None:
    """The server answers HTTP/1.1 keep-alive, then silently drops the idle connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            connections.append(1)
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                time.sleep(0.1)  # closed without "Connection: close", like an idle timeout

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/_tasks/"
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": url}):
        first, second = tasks.noop().delay(), tasks.noop().delay()
        LocalTask.objects.filter(name=second.name).update(
            schedule_time=datetime.now(timezone.utc) + timedelta(seconds=0.3)
        )
        worker = Worker(concurrency=1)
        assert worker.run_once() == 1
        worker.finish_in_flight()
        time.sleep(0.4)  # the server has dropped the connection; the worker does not know
        assert worker.run_once() == 1
        worker.finish_in_flight()
        worker.close()
    thread.join(5)
    listener.close()
    assert [row(h.name).status for h in (first, second)] == ["succeeded", "succeeded"]
    assert row(second.name).dispatch_count == 1
    assert len(connections) == 2


@pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="without TCP_QUICKACK each delivery connects anew"
)
def test_deliveries_to_django_s_own_server_share_one_connection(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # live_server is the threaded WSGI server runserver runs: it keeps a connection open
    # when the answer says its length, and writes the answer's headers and body apart.
    opened: list[str] = []
    connect = HTTPConnection.connect

    def counted(self: HTTPConnection) -> None:
        opened.append(self.host)
        connect(self)

    # Each answer is acknowledged at once: Linux would otherwise delay the acknowledgement
    # of the headers by about 40 ms on a kept-alive connection, and the body with it.
    quick_acks: list[int] = []
    setsockopt = socket.socket.setsockopt

    def spied(self: socket.socket, level: int, option: int, value: Any) -> None:
        if (level, option) == (socket.IPPROTO_TCP, socket.TCP_QUICKACK):
            quick_acks.append(value)
        setsockopt(self, level, option, value)

    monkeypatch.setattr(HTTPConnection, "connect", counted)
    monkeypatch.setattr(socket.socket, "setsockopt", spied)
    handles = [tasks.add(a=n, b=1).delay() for n in range(3)]
    worker = Worker(concurrency=1)
    drain(worker)
    assert [row(h.name).status for h in handles] == ["succeeded"] * 3
    assert len(opened) == 1
    assert quick_acks == [1, 1, 1]


def test_lease_running_out_on_the_last_attempt_fails_the_task(scripted: ScriptedServer) -> None:
    with queue_settings(scripted, {"default": {"max_attempts": 1}}):
        handle = due_now(tasks.noop.using(timeout=15)())
        [claimed] = claims.lease("default", 10, T0).claimed  # a worker that then dies
        assert claimed.dispatch_count == 1
        clock = FakeClock(T0 + timedelta(seconds=20))  # deadline 15 s + 5 s grace
        worker = Worker(clock=clock)
        assert worker.run_once() == 0
        clock.advance(0.001)
        drain(worker)
    task = row(handle.name)
    assert scripted.requests == []
    assert (task.status, task.dispatch_count, task.retry_reason) == (
        "failed",
        1,
        "DEADLINE_EXCEEDED",
    )
    assert task.last_response == "the lease ran out"
    assert worker.summary.dispatched == 0
    assert worker.summary.failed == 1


def test_scheduled_task_waits_for_its_eta(scripted: ScriptedServer) -> None:
    eta = T0 + timedelta(seconds=30)
    handle = tasks.noop().delay()
    LocalTask.objects.filter(name=handle.name).update(schedule_time=eta)
    clock = FakeClock()
    worker = Worker(clock=clock)
    clock.advance(29.999)
    assert worker.run_once() == 0
    clock.advance(0.001)
    drain(worker)
    [sent] = scripted.requests
    assert sent["headers"]["X-CloudTasks-TaskETA"] == f"{eta.timestamp():.6f}"
    assert row(handle.name).first_attempt_at == eta


# Failure handling through the worker: the attempt headers come from real deliveries.


def test_max_retries_gives_up_and_the_worker_keeps_it_as_failed(endpoint: str) -> None:
    clock = FakeClock()
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": endpoint}):
        handle = due_now(tasks.fails_twice_allowed(n=1))
        worker = Worker(clock=clock)
        for _ in range(5):
            drain(worker)
            clock.advance(600)
        handler = LocalTask.objects.get(task="tests.tasks.record_failure")
    # Attempts at retry counts 0, 1 and 2; the third failure reaches max_retries=2.
    assert [c for c in tasks.calls if c[0] == "fails_twice_allowed"] == [
        ("fails_twice_allowed", 0),
        ("fails_twice_allowed", 1),
        ("fails_twice_allowed", 2),
    ]
    task = row(handle.name)
    assert (task.status, task.dispatch_count, task.last_response_status) == ("failed", 3, 200)
    assert json.loads(task.last_response)["reason"] == "max-retries"
    assert handler.status == "succeeded"  # on_failure was pushed and delivered
    [(_, payload)] = [c for c in tasks.calls if c[0] == "record_failure"]
    assert payload["id"] == handle.call_id


def test_request_retry_copies_run_through_the_worker(endpoint: str) -> None:
    clock = FakeClock()
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": endpoint}):
        due_now(tasks.retries_itself(countdown=30))
        worker = Worker(clock=clock)
        for _ in range(6):
            LocalTask.objects.filter(status="queued").update(schedule_time=T0)
            drain(worker)
            clock.advance(60)
    assert [c[1] for c in tasks.calls if c[0] == "retries_itself"] == [0, 1, 2]
    copies = LocalTask.objects.filter(task="tests.tasks.retries_itself").order_by("id")
    assert [t.status for t in copies] == ["succeeded", "succeeded", "failed"]
    assert (
        LocalTask.objects.filter(task="tests.tasks.record_failure", status="succeeded").count() == 1
    )


# Retry limits: Cloud Tasks stops only when every limit that is set is reached.


def test_both_retry_limits_must_be_reached_before_giving_up(scripted: ScriptedServer) -> None:
    limits = {"max_attempts": 2, "max_retry_duration": 3600, "min_backoff": 1, "max_backoff": 1}
    with queue_settings(scripted, {"default": limits}):
        scripted.answers = [(500, {})] * 10
        clock = FakeClock()
        handle = due_now(tasks.noop())
        worker = Worker(clock=clock)
        for _ in range(5):
            drain(worker)
            clock.advance(10)
        # max_attempts is reached after two attempts, but the hour is not over: each retry
        # is a real attempt.
        task = row(handle.name)
        assert len(scripted.requests) == 5
        assert (task.status, task.dispatch_count, task.response_count) == ("queued", 5, 5)
        assert (task.last_response_status, task.last_response) == (500, "ok")
        assert worker.summary.dispatched == worker.summary.retried == 5
        clock.advance(3600)
        drain(worker)
    task = row(handle.name)
    assert len(scripted.requests) == 6
    assert (task.status, task.dispatch_count, task.last_response_status) == ("failed", 6, 500)
    assert (worker.summary.dispatched, worker.summary.failed) == (6, 1)


@pytest.mark.parametrize(
    ("seconds_later", "requests", "status", "dispatch_count"),
    [
        (21, 1, "succeeded", 2),  # the lost attempt was the last allowed one, the hour was not
        (3700, 0, "failed", 1),  # both limits reached: no further attempt
    ],
)
def test_lease_running_out_with_both_retry_limits(
    scripted: ScriptedServer, seconds_later: float, requests: int, status: str, dispatch_count: int
) -> None:
    limits = {"max_attempts": 1, "max_retry_duration": 3600}
    with queue_settings(scripted, {"default": limits}):
        handle = due_now(tasks.noop.using(timeout=15)())
        claims.lease("default", 10, T0)  # a worker that then dies; its lease ends at T0 + 20 s
        worker = Worker(clock=FakeClock(T0 + timedelta(seconds=seconds_later)))
        drain(worker)
    task = row(handle.name)
    assert len(scripted.requests) == requests
    assert (task.status, task.dispatch_count) == (status, dispatch_count)
    assert worker.summary.dispatched == requests


# The dispatch deadline, Retry-After, and database errors while recording.


def test_dispatch_deadline_is_the_http_timeout(scripted: ScriptedServer) -> None:
    scripted.delay = 1.5
    handle = tasks.noop().delay()
    # Cloud Tasks' 15 s floor would make this test slow, so the stored deadline is shortened.
    LocalTask.objects.filter(name=handle.name).update(
        schedule_time=T0, dispatch_deadline=timedelta(seconds=0.3)
    )
    worker = Worker(clock=FakeClock())
    started = time.monotonic()
    drain(worker)
    elapsed = time.monotonic() - started
    task = row(handle.name)
    assert len(scripted.requests) == 1  # delivered, but the answer would come too late
    assert (task.status, task.dispatch_count, task.response_count) == ("queued", 1, 0)
    assert (task.retry_reason, task.last_response_status) == ("DEADLINE_EXCEEDED", None)
    assert task.schedule_time == T0 + timedelta(seconds=0.1)  # the queue's min_backoff
    assert 0.3 <= elapsed < 1.2
    assert worker.summary.retried == 1


def retry_after_value(value: str | float) -> str:
    """Return ``value``, or for a number of seconds from now, that time as an HTTP-date."""
    from email.utils import format_datetime

    if isinstance(value, str):
        return value
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=value), usegmt=True)


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"),
    [
        (503, "30", 30),
        (503, 120, 120),  # the HTTP-date form, two minutes from now
        (503, "86400", 3600),  # capped at an hour, so a bad header cannot park the queue
        (429, 2 * 86400, 3600),
        (503, -60, 0.1),  # a date in the past: the queue's backoff
        (503, "soon", 0.1),  # not a Retry-After value: ignored
        (500, "30", 0.1),  # only 429 and 503 are answered with Retry-After
    ],
)
def test_retry_after_forms_and_cap(
    scripted: ScriptedServer, status: int, retry_after: str | float, delay: float
) -> None:
    header = retry_after_value(retry_after)
    scripted.answers = [(status, {"Retry-After": header})]
    clock = FakeClock()
    handle = due_now(tasks.noop())
    drain(Worker(clock=clock))
    waited = (row(handle.name).schedule_time - T0).total_seconds()
    if isinstance(retry_after, str) or delay != 120:
        assert waited == delay
    else:  # an HTTP-date has whole seconds, and was read a moment after it was written
        assert 118 < waited <= 120
    held_until = LocalQueue.objects.get(name="default").held_until
    if delay > 1:
        assert held_until == row(handle.name).schedule_time
        # The whole queue waits, in every worker: a task due now does not go out.
        other = tasks.noop().delay()
        LocalTask.objects.filter(name=other.name).update(schedule_time=T0)
        clock.advance(waited - 0.001)
        assert Worker(clock=clock).run_once() == 0
        clock.advance(0.001)
        drain(Worker(clock=clock))
        assert row(other.name).status == "succeeded"
    else:
        assert held_until is None


def test_database_error_while_recording_is_retried(
    scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    scripted.delay = 0.2
    handle = tasks.noop().delay()
    worker = Worker()
    assert worker.run_once() == 1
    table = LocalTask._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_away"')
    try:
        assert worker.wait(5) == 0  # answered, but the answer could not be stored
        assert worker.in_flight == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}_away" RENAME TO "{table}"')
    assert "worker status=db_error during=record" in caplog.text
    worker.finish_in_flight()
    worker.close()
    task = row(handle.name)
    assert (task.status, task.dispatch_count, task.last_response_status) == ("succeeded", 1, 200)
    assert task.lease_token == ""
    assert len(scripted.requests) == 1
    assert (worker.summary.dispatched, worker.summary.succeeded) == (1, 1)


# The queue's limits are the queue's, not one worker's.


def test_concurrency_limit_counts_other_workers_deliveries(scripted: ScriptedServer) -> None:
    with queue_settings(scripted, {"default": {"max_concurrent_dispatches": 3}}):
        for _ in range(6):
            tasks.noop().delay()
        LocalTask.objects.update(schedule_time=T0)
        assert len(claims.lease("default", 2, T0).claimed) == 2  # another worker's, leases held
        worker = Worker(clock=FakeClock(), concurrency=10)
        assert worker.run_once() == 1
        assert worker.run_once() == 0
        worker.finish_in_flight()
        worker.close()


def test_rate_limit_is_shared_by_workers(scripted: ScriptedServer) -> None:
    with queue_settings(scripted, {"default": {"max_dispatches_per_second": 2}}):
        for _ in range(6):
            tasks.noop().delay()
        LocalTask.objects.update(schedule_time=T0)
        clock = FakeClock()
        first, second = Worker(clock=clock), Worker(clock=clock)
        started = [first.run_once(), second.run_once()]
        clock.advance(0.5)
        started += [second.run_once(), first.run_once()]
        clock.advance(0.5)
        started += [first.run_once(), second.run_once()]
        for worker in (first, second):
            worker.finish_in_flight()
            worker.close()
    # One bucket for the queue: a burst of two, then one every half second.
    assert started == [2, 0, 1, 0, 1, 0]
