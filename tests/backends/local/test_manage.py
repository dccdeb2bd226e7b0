"""Management of the local queue: what only the database backend shows, with a real worker.

The backend-neutral behaviour is in test_manage_contract.py; here are the local queue's own
rules (stored config read by the worker, run_task through a paused queue, the name reuse
window) and the exact attempt details the worker records.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from freezegun import freeze_time

import cloudtask
from cloudtask import QueueDeletedRecently, TaskNotFound, conf
from cloudtask.backends.local import claims, store
from cloudtask.backends.local.manager import HTTP_TO_CODE, LocalManager, status_code
from cloudtask.backends.local.worker import Worker
from cloudtask.backends.management import REDACTED
from cloudtask.models import LocalQueue, LocalTask
from cloudtask.queues import check_queues
from cloudtask.signing import SIGNATURE_HEADER
from tests import tasks
from tests.support.worker import T0, FakeClock, ScriptedServer, drain

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED = "http://127.0.0.1:9/_tasks/"  # the discard port: nothing listens, connect is refused


def local_settings(url: str = CLOSED, **extra: Any) -> dict[str, Any]:
    return {"BACKEND": conf.LOCAL_BACKEND, "URL": url, **extra}


@pytest.fixture(name="endpoint")
def endpoint_fixture(live_server: Any) -> Iterator[str]:
    """Push to the real task endpoint, served by live_server."""
    url = live_server.url + "/_tasks/"
    with override_settings(CLOUDTASK=local_settings(url)):
        yield url


def push(queue: str, countdown: float = 0, **kwargs: Any) -> str:
    """Push one noop to ``queue`` due ``countdown`` seconds from now; return its name."""
    call = tasks.noop.using(queue=queue, **kwargs)()
    return call.schedule(countdown=countdown).name if countdown else call.delay().name


def due_at(name: str, when: datetime) -> None:
    LocalTask.objects.filter(name=name).update(schedule_time=when)


# The worker and the stored config -------------------------------------------------------


def test_worker_follows_the_config_set_by_update_queue(scripted: ScriptedServer) -> None:
    scripted.answers = [(500, {})] * 5
    declared = local_settings(scripted.url, QUEUES={"jobs": {"max_attempts": 10}})
    with override_settings(CLOUDTASK=declared):
        name = push("jobs")
        due_at(name, T0)
        assert cloudtask.get_queue("jobs").config.max_attempts == 10  # follows the settings
        info = cloudtask.update_queue("jobs", max_attempts=2, min_backoff=1)
        assert info.config.max_attempts == 2
        clock = FakeClock()
        worker = Worker(clock=clock)
        for _ in range(4):
            drain(worker)
            clock.advance(5)
    assert len(scripted.requests) == 2  # the stored max_attempts, not the declared 10
    task = LocalTask.objects.get(name=name)
    assert (task.status, task.dispatch_count) == ("failed", 2)
    # The retry came after the stored min_backoff (1 s), not the default 0.1 s.
    assert task.last_attempt_at == T0 + timedelta(seconds=5)


def test_stored_config_wins_over_later_settings() -> None:
    with override_settings(CLOUDTASK=local_settings(QUEUES={"jobs": {"min_backoff": 2}})):
        push("jobs")
        cloudtask.update_queue("jobs", max_attempts=3)
        assert LocalQueue.objects.get(name="jobs").config == {
            "max_dispatches_per_second": 500.0,
            "max_concurrent_dispatches": 1000,
            "max_attempts": 3,
            "max_retry_duration": 0.0,
            "min_backoff": 2.0,  # what the queue followed until then
            "max_backoff": 3600.0,
            "max_doublings": 16,
        }
    with override_settings(CLOUDTASK=local_settings(QUEUES={"jobs": {"max_attempts": 20}})):
        config = cloudtask.get_queue("jobs").config
        assert (config.max_attempts, config.min_backoff) == (3, timedelta(seconds=2))


def test_a_broken_stored_config_is_reported_clearly() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        push("jobs")
        LocalQueue.objects.filter(name="jobs").update(config={"max_attempts": 0})
        with pytest.raises(ImproperlyConfigured) as excinfo:
            cloudtask.get_queue("jobs")
        assert str(excinfo.value) == (
            "The stored config of local queue 'jobs'['max_attempts'] must be -1 (unlimited) "
            "or at least 1, not 0. Set it again with cloudtask.update_queue('jobs', ...)."
        )
        # The worker skips that queue instead of stopping.
        assert Worker().run_once() == 0


# Pause and run_task -----------------------------------------------------------------------


def test_paused_queue_is_not_served_but_run_task_delivers(endpoint: str) -> None:
    first = tasks.add.using(queue="jobs")(a=1, b=2).delay()
    later = tasks.add.using(queue="jobs")(a=3, b=4).schedule(countdown=3600)
    assert cloudtask.pause_queue("jobs").state == "paused"
    drain(Worker())
    assert tasks.calls == []
    info = later.run()
    assert (info.name, info.state, info.dispatch_count) == (later.name, "queued", 0)
    assert info.schedule_time is not None
    assert abs(info.schedule_time - timezone.now()) < timedelta(seconds=5)
    drain(Worker())
    assert tasks.calls == [("add", (3, 4))]  # only the forced one, though the queue is paused
    with pytest.raises(TaskNotFound):
        later.get()  # succeeded: finished tasks are not found
    assert [t.name for t in cloudtask.list_tasks("jobs")] == [first.name]
    cloudtask.resume_queue("jobs")
    drain(Worker())
    assert tasks.calls == [("add", (3, 4)), ("add", (1, 2))]


def test_a_retry_after_run_task_waits_for_the_paused_queue(scripted: ScriptedServer) -> None:
    scripted.answers = [(500, {}), (200, {})]
    name = push("jobs", countdown=3600)
    cloudtask.pause_queue("jobs")
    cloudtask.run_task("jobs", name)
    clock = FakeClock()
    worker = Worker(clock=clock)
    drain(worker)
    assert len(scripted.requests) == 1
    retrying = cloudtask.get_task("jobs", name)
    assert (retrying.state, retrying.dispatch_count) == ("retrying", 1)
    clock.advance(3600)
    drain(worker)
    assert len(scripted.requests) == 1  # the retry is not forced: the queue is paused
    cloudtask.resume_queue("jobs")
    drain(worker)
    assert len(scripted.requests) == 2
    assert LocalTask.objects.get(name=name).status == "succeeded"


def test_run_task_on_a_running_task_returns_it_unchanged() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        name = push("jobs")
        [claimed] = claims.lease("jobs", 10, timezone.now()).claimed  # a worker mid-attempt
        info = cloudtask.run_task("jobs", name)
    assert (info.state, info.dispatch_count, info.response_count) == ("running", 1, 0)
    assert info.last_attempt is not None
    assert info.last_attempt.dispatch_time == claimed.first_attempt_at
    assert (info.last_attempt.status, info.last_attempt.http_status) == (None, None)
    assert LocalTask.objects.get(name=name).forced is False


# What a task shows after real attempts ----------------------------------------------------


def test_attempt_details_after_real_answers(scripted: ScriptedServer) -> None:
    scripted.answers = [(404, {}), (503, {})]
    name = push("jobs")
    due_at(name, T0)
    clock = FakeClock()
    worker = Worker(clock=clock)
    drain(worker)
    after_404 = cloudtask.get_task("jobs", name)
    assert after_404.state == "retrying"
    assert (after_404.dispatch_count, after_404.response_count) == (1, 1)
    assert after_404.first_attempt is not None
    assert after_404.first_attempt.dispatch_time == T0
    assert after_404.first_attempt.status is None  # Cloud Tasks keeps only the dispatch time
    assert after_404.last_attempt is not None
    assert after_404.last_attempt.dispatch_time == T0
    assert after_404.last_attempt.status == "NOT_FOUND"
    assert after_404.last_attempt.http_status == 404
    assert after_404.last_attempt.message == "ok"  # the body the server answered
    assert after_404.schedule_time == T0 + timedelta(seconds=0.1)  # min_backoff
    clock.advance(10)
    drain(worker)
    after_503 = cloudtask.get_task("jobs", name)
    assert (after_503.dispatch_count, after_503.response_count) == (2, 2)
    assert after_503.first_attempt is not None
    assert after_503.first_attempt.dispatch_time == T0
    assert after_503.last_attempt is not None
    assert after_503.last_attempt.dispatch_time == T0 + timedelta(seconds=10)
    assert (after_503.last_attempt.status, after_503.last_attempt.http_status) == (
        "UNAVAILABLE",
        503,
    )


def test_attempt_without_an_answer() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        name = push("jobs")
        due_at(name, T0)
        drain(Worker(clock=FakeClock()))
        info = cloudtask.get_task("jobs", name)
    assert info.last_attempt is not None
    assert (info.last_attempt.status, info.last_attempt.http_status) == ("UNAVAILABLE", None)
    assert info.last_attempt.message.startswith("ConnectionRefusedError: ")
    assert info.response_count == 0


@pytest.mark.parametrize(
    ("http_status", "code"),
    [
        (200, "OK"),
        (204, "OK"),
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (409, "ABORTED"),
        (410, "FAILED_PRECONDITION"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (502, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (302, "UNKNOWN"),
    ],
)
def test_http_status_to_code(http_status: int, code: str) -> None:
    assert status_code(http_status) == code


def test_the_code_table_names_real_codes() -> None:
    from google.rpc import code_pb2

    assert set(HTTP_TO_CODE.values()) <= set(code_pb2.Code.keys())


def test_full_view_redacts_secrets_and_keeps_the_rest() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        handle = tasks.noop.using(queue="jobs")().schedule(countdown=60)
        # A token header (custom ones cannot set it) stored with the request.
        row = LocalTask.objects.get(name=handle.name)
        row.headers = {**row.headers, "Authorization": "Bearer s3cret"}
        row.save(update_fields=["headers"])
        full = cloudtask.get_task("jobs", handle.name, view="full")
        basic = cloudtask.get_task("jobs", handle.name)
    assert full.headers is not None
    assert full.headers["Authorization"] == REDACTED
    assert full.headers[SIGNATURE_HEADER] == REDACTED
    assert full.headers["Content-Type"] == "application/json"
    assert "s3cret" not in repr(full)
    stored = LocalTask.objects.get(name=handle.name)
    assert full.body == bytes(stored.body)
    assert (full.method, full.url, full.dispatch_deadline) == ("POST", CLOSED, 600.0)
    assert (basic.headers, basic.body) == (None, None)
    assert basic.task == "tests.tasks.noop"


# Lazy paging --------------------------------------------------------------------------------


def test_list_tasks_reads_one_page_per_query() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        names = [push("jobs", countdown=60 + i) for i in range(5)]
        with CaptureQueriesContext(connection) as queries:
            listed = cloudtask.list_tasks("jobs", page_size=2)
            assert len(queries) == 1  # the first page, fetched by the call itself
            seen = [next(listed).name, next(listed).name]
            assert len(queries) == 1  # still the first page
            seen.append(next(listed).name)
            assert len(queries) == 2
            seen += [info.name for info in listed]
            assert len(queries) == 3  # the last page had 1 task: no query after it
    assert seen == names
    page_sql = queries.captured_queries[0]["sql"]
    assert '"body"' not in page_sql  # the basic view does not read the request


def test_list_tasks_pages_by_key_not_offset() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        names = [push("jobs", countdown=60 + i) for i in range(4)]
        listed = cloudtask.list_tasks("jobs", page_size=2)
        first_page = [next(listed).name, next(listed).name]
        # Tasks that finish or arrive ahead of the cursor do not shift the next page.
        cloudtask.delete_task("jobs", names[0])
        push("jobs", countdown=1)
        rest = [info.name for info in listed]
    assert first_page + rest == names


def test_same_schedule_time_is_ordered_by_name() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        names = [push("jobs", countdown=60) for _ in range(3)]
        LocalTask.objects.update(schedule_time=T0)
        listed = [info.name for info in cloudtask.list_tasks("jobs", page_size=1)]
    assert listed == sorted(names)


# Deleted queues and the reuse window ----------------------------------------------------


def test_a_deleted_queue_blocks_pushes_and_creation_until_the_window_ends() -> None:
    hint = (
        "The local queue keeps that rule; in development, set "
        "CLOUDTASK['LOCAL_QUEUE_REUSE_WINDOW'] = 0 to allow the name again at once."
    )
    with override_settings(CLOUDTASK=local_settings()):
        with freeze_time("2030-01-01 12:00:00"):
            cloudtask.create_queue("jobs", max_attempts=4)
            old = push("jobs", countdown=60)
            cloudtask.delete_queue("jobs")
            assert LocalTask.objects.get(name=old).status == "deleted"
        with freeze_time("2030-01-08 11:59:59"):
            with pytest.raises(QueueDeletedRecently) as excinfo:
                push("jobs")
            assert str(excinfo.value).endswith(hint)
            assert str(excinfo.value).startswith("The queue local/queues/jobs was deleted")
            with pytest.raises(QueueDeletedRecently):
                cloudtask.create_queue("jobs")
        with freeze_time("2030-01-08 12:00:00"):
            new = push("jobs")  # seven days later the name is free: the queue starts anew
            info = cloudtask.get_queue("jobs")
            listed = [t.name for t in cloudtask.list_tasks("jobs")]
    assert (info.state, info.tasks, info.config.max_attempts) == ("running", 1, 100)
    assert info.raw.created_at == datetime(2030, 1, 8, 12, tzinfo=dt_timezone.utc)
    assert listed == [new]


def test_create_revives_a_queue_after_the_window() -> None:
    with override_settings(CLOUDTASK=local_settings(LOCAL_QUEUE_REUSE_WINDOW=timedelta(hours=1))):
        with freeze_time("2030-01-01 12:00:00"):
            cloudtask.create_queue("jobs")
            cloudtask.pause_queue("jobs")
            cloudtask.delete_queue("jobs")
        with freeze_time("2030-01-01 13:00:00"):
            info = cloudtask.create_queue("jobs", max_attempts=3)
    assert (info.state, info.config.max_attempts, info.tasks) == ("running", 3, 0)


def test_a_zero_window_allows_the_name_at_once() -> None:
    with override_settings(CLOUDTASK=local_settings(LOCAL_QUEUE_REUSE_WINDOW=0)):
        cloudtask.create_queue("jobs")
        cloudtask.delete_queue("jobs")
        assert cloudtask.create_queue("jobs").name == "jobs"


def test_the_worker_does_not_serve_a_deleted_queue() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        name = push("jobs")
        push("other")
        cloudtask.delete_queue("jobs")
        # A push that raced the deletion left a due task behind.
        LocalTask.objects.filter(name=name).update(status="queued", finished_at=None)
        assert claims.due_queues(timezone.now()) == ["other"]


def test_manager_is_the_local_one() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        manager = cloudtask.control.manager()
    assert isinstance(manager, LocalManager)
    assert manager.path("jobs") == "local/queues/jobs"


# The setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "CLOUDTASK['LOCAL_QUEUE_REUSE_WINDOW'] must not be negative, not -1 seconds."),
        (
            "7d",
            "CLOUDTASK['LOCAL_QUEUE_REUSE_WINDOW'] must be a number of seconds or a "
            "datetime.timedelta, not str.",
        ),
    ],
)
def test_a_bad_reuse_window_is_reported_by_the_check(value: Any, message: str) -> None:
    with override_settings(CLOUDTASK=local_settings(LOCAL_QUEUE_REUSE_WINDOW=value)):
        found = [(m.id, m.msg, m.hint) for m in check_queues()]
    assert found == [("cloudtask.E035", message, "Use seconds, e.g. 0 in development.")]


def test_good_reuse_windows_pass_the_check() -> None:
    for value in (0, 3600, 0.5, timedelta(days=7)):
        with override_settings(CLOUDTASK=local_settings(LOCAL_QUEUE_REUSE_WINDOW=value)):
            assert check_queues() == []
            assert store.reuse_window() == conf.to_timedelta(value, "window")
    assert conf.DEFAULTS["LOCAL_QUEUE_REUSE_WINDOW"] == 7 * 24 * 3600


def test_list_tasks_resumes_from_a_page_token() -> None:
    with override_settings(CLOUDTASK=local_settings()):
        names = [push("jobs", countdown=60 + i) for i in range(5)]
        listed = cloudtask.list_tasks("jobs", page_size=2)
        pages = [[t.name for t in listed.next_page()]]
        token = listed.next_page_token
        while token:
            resumed = cloudtask.list_tasks("jobs", page_size=2, page_token=token)
            pages.append([t.name for t in resumed.next_page()])
            token = resumed.next_page_token
        assert pages == [names[:2], names[2:4], names[4:]]
        assert [t.name for t in listed] == names[2:]  # the first listing goes on by itself
        with pytest.raises(cloudtask.InvalidQueueConfig, match="is not a token list_tasks"):
            cloudtask.list_tasks("jobs", page_token="not-a-token")
        with pytest.raises(cloudtask.InvalidQueueConfig, match="page_token must be a string"):
            cloudtask.list_tasks("jobs", page_token=7)  # type: ignore[arg-type]
        with pytest.raises(cloudtask.QueueNotFound):
            cloudtask.list_tasks("nope", page_token=token)
