"""Management on the Cloud Tasks backend: the exact requests it sends and its errors.

The behaviour both backends share is in test_manage_contract.py. Here: the RPCs and their
fields (recorded by the emulator's servicer, as the client's own request types), how the
answers are read, and the API errors mapped to cloudtask's exceptions. The emulator cannot
produce those errors, so its servicer is told to answer with the status and message Cloud
Tasks itself uses; each test names the fact it stands on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from django.test import override_settings
from google.cloud import tasks_v2

import cloudtask
from cloudtask import (
    CloudTasksPermissionDenied,
    CloudTasksUnavailable,
    InvalidQueueConfig,
    ManagementError,
    QueueNotFound,
    TaskNotFound,
)
from cloudtask.backends import override_backend
from cloudtask.backends.cloudtasks import CloudTasksBackend
from cloudtask.backends.cloudtasks.manager import queue_config, task_info
from cloudtask.backends.management import REDACTED
from tests import tasks
from tests.support import helpers
from tests.support.emulator import LOCATION_PATH, Emulator, queue_path

pytestmark = pytest.mark.slow


class QuickBackend(CloudTasksBackend):
    """The real backend with a short deadline, so giving up takes a moment."""

    push_deadline = 1.0
    initial_backoff = 0.05
    max_backoff = 0.2


@pytest.fixture
def emulator(quiet_emulator: Emulator) -> Iterator[Emulator]:
    with override_settings(CLOUDTASK=quiet_emulator.settings()):
        yield quiet_emulator


def new_queue() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


def sent(emulator: Emulator, method: str) -> list[Any]:
    return emulator.created(method)


# The requests ------------------------------------------------------------------------------


def test_create_queue_sends_every_option(emulator: Emulator) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue, max_dispatches_per_second=5, max_attempts=7, min_backoff=2)
    (request,) = sent(emulator, "CreateQueue")
    assert request == tasks_v2.CreateQueueRequest(
        parent=LOCATION_PATH,
        queue=tasks_v2.Queue(
            name=queue_path(queue),
            rate_limits={"max_dispatches_per_second": 5.0, "max_concurrent_dispatches": 1000},
            retry_config={
                "max_attempts": 7,
                "max_retry_duration": timedelta(0),
                "min_backoff": timedelta(seconds=2),
                "max_backoff": timedelta(seconds=3600),
                "max_doublings": 16,
            },
        ),
    )


def test_update_queue_masks_only_the_given_options(emulator: Emulator) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue, max_attempts=7)
    emulator.reset()
    cloudtask.update_queue(queue, max_attempts=3, max_backoff=timedelta(minutes=5))
    # update_queue reads the queue first, to validate the merged config.
    assert [method for method, _ in emulator.servicer.requests] == ["GetQueue", "UpdateQueue"]
    (request,) = sent(emulator, "UpdateQueue")
    assert sorted(request.update_mask.paths) == [
        "retry_config.max_attempts",
        "retry_config.max_backoff",
    ]
    assert request.queue.name == queue_path(queue)
    assert request.queue.retry_config.max_attempts == 3
    assert request.queue.retry_config.max_backoff == timedelta(minutes=5)


def test_queue_calls_name_the_queue(emulator: Emulator) -> None:
    queue = new_queue()
    cloudtask.create_queue(queue)
    emulator.reset()
    cloudtask.pause_queue(queue)
    cloudtask.resume_queue(queue)
    cloudtask.purge_queue(queue)
    cloudtask.delete_queue(queue)
    assert [(method, request.name) for method, request in emulator.servicer.requests] == [
        ("PauseQueue", queue_path(queue)),
        ("ResumeQueue", queue_path(queue)),
        ("PurgeQueue", queue_path(queue)),
        ("DeleteQueue", queue_path(queue)),
    ]


def test_list_tasks_asks_for_the_view_and_fetches_pages_lazily(emulator: Emulator) -> None:
    queue = new_queue()
    for i in range(5):
        tasks.add.using(queue=queue)(a=i).schedule(countdown=3600)
    emulator.reset()
    listed = cloudtask.list_tasks(queue, view="full", page_size=2)
    (first,) = sent(emulator, "ListTasks")  # the first page, at the call
    assert first == tasks_v2.ListTasksRequest(
        parent=queue_path(queue), response_view=tasks_v2.Task.View.FULL, page_size=2
    )
    assert len(list(listed)) == 5
    assert [r.page_token for r in sent(emulator, "ListTasks")] == ["", "2", "4"]


def test_get_task_asks_for_the_view(emulator: Emulator) -> None:
    queue = new_queue()
    handle = tasks.add.using(queue=queue)(a=1).schedule(countdown=3600)
    cloudtask.get_task(queue, handle.name)
    cloudtask.get_task(queue, handle.name, view="full")
    path = f"{queue_path(queue)}/tasks/{handle.name}"
    assert sent(emulator, "GetTask") == [
        tasks_v2.GetTaskRequest(name=path, response_view=tasks_v2.Task.View.BASIC),
        tasks_v2.GetTaskRequest(name=path, response_view=tasks_v2.Task.View.FULL),
    ]


def test_task_calls_name_the_task(emulator: Emulator) -> None:
    queue = new_queue()
    ran, deleted = (
        tasks.add.using(queue=queue)(a=i).schedule(countdown=3600).name for i in range(2)
    )
    cloudtask.run_task(queue, ran)
    cloudtask.delete_task(queue, deleted)
    assert sent(emulator, "RunTask") == [
        tasks_v2.RunTaskRequest(name=f"{queue_path(queue)}/tasks/{ran}")
    ]
    assert sent(emulator, "DeleteTask") == [
        tasks_v2.DeleteTaskRequest(name=f"{queue_path(queue)}/tasks/{deleted}")
    ]


# Reading the answers ---------------------------------------------------------------------


def test_options_cloud_tasks_leaves_unset_read_as_its_defaults(emulator: Emulator) -> None:
    # The emulator's own queues were made with a name only; Cloud Tasks fills in defaults.
    assert cloudtask.get_queue("reports").config == queue_config("reports", tasks_v2.Queue())
    config = cloudtask.get_queue("reports").config
    assert (config.max_attempts, config.max_doublings) == (100, 16)
    assert config.max_backoff == timedelta(hours=1)


def test_a_task_s_attempts_headers_and_target_are_read() -> None:
    # Cloud Tasks keeps only the first attempt's dispatch time, and reports the last
    # attempt's answer as a google.rpc.Code (5 is NOT_FOUND).
    task = tasks_v2.Task(
        name=f"{queue_path('emails')}/tasks/welcome-42",
        http_request={
            "url": "https://app.example.com/_tasks/",
            "http_method": tasks_v2.HttpMethod.PUT,
            "headers": {"X-CloudTask-Signature": "v1=abc", "Authorization": "Bearer t"},
            "body": b'{"v": 1, "task": "myapp.tasks.welcome", "id": "c1"}',
        },
        dispatch_count=2,
        response_count=2,
        dispatch_deadline=timedelta(seconds=30),
        first_attempt={"dispatch_time": {"seconds": 1_900_000_000}},
        last_attempt={
            "dispatch_time": {"seconds": 1_900_000_100},
            "response_status": {"code": 5, "message": "Not Found"},
        },
    )
    info = task_info(task, "full")
    assert (info.name, info.queue, info.path) == ("welcome-42", "emails", task.name)
    assert (info.state, info.method, info.url) == ("retrying", "PUT", task.http_request.url)
    assert info.task == "myapp.tasks.welcome"
    assert info.dispatch_deadline == 30.0
    assert info.headers == {"X-CloudTask-Signature": REDACTED, "Authorization": REDACTED}
    assert info.first_attempt is not None
    assert info.first_attempt.status is None
    assert info.last_attempt is not None
    assert (info.last_attempt.status, info.last_attempt.message) == ("NOT_FOUND", "Not Found")
    basic = task_info(task, "basic")
    assert (basic.headers, basic.body, basic.task) == (None, None, None)


def test_an_app_engine_task_shows_its_relative_uri() -> None:
    task = tasks_v2.Task(
        name=f"{queue_path('emails')}/tasks/t",
        app_engine_http_request={"relative_uri": "/_tasks/", "body": b"{}"},
    )
    info = task_info(task, "full")
    assert (info.url, info.method, info.task) == ("/_tasks/", "HTTP_METHOD_UNSPECIFIED", None)


# Errors ----------------------------------------------------------------------------------


def test_permission_denied_names_the_permission_of_the_call(emulator: Emulator) -> None:
    # Cloud Tasks answers PERMISSION_DENIED naming the missing IAM permission.
    emulator.servicer.fail_next(
        "PauseQueue",
        grpc.StatusCode.PERMISSION_DENIED,
        'The principal lacks IAM permission "cloudtasks.queues.pause" for the resource '
        f'"{queue_path("emails")}" (or the resource may not exist).',
    )
    with pytest.raises(CloudTasksPermissionDenied) as excinfo:
        cloudtask.pause_queue("emails")
    error = excinfo.value
    assert (error.permission, error.resource) == ("cloudtasks.queues.pause", queue_path("emails"))
    assert str(error).startswith(
        "Cloud Tasks refused the call: account (emulator, no credentials) lacks permission "
        f"'cloudtasks.queues.pause' on {queue_path('emails')} (PERMISSION_DENIED: "
    )
    assert "roles/cloudtasks.admin" in str(error)


def test_a_denial_without_a_permission_names_the_call_s(emulator: Emulator) -> None:
    # UNAUTHENTICATED (bad credentials) names no permission: ours for the RPC is given.
    emulator.servicer.fail_next(
        "ListTasks", grpc.StatusCode.UNAUTHENTICATED, "Request had invalid credentials."
    )
    with pytest.raises(CloudTasksPermissionDenied) as excinfo:
        cloudtask.list_tasks("emails")
    assert excinfo.value.permission == "cloudtasks.tasks.list"


def test_reads_retry_transient_errors(emulator: Emulator) -> None:
    # UNAVAILABLE is Cloud Tasks' "try again"; a read is safe to repeat.
    emulator.servicer.fail_next("GetQueue", grpc.StatusCode.UNAVAILABLE, "down", times=2)
    with override_backend(QuickBackend()):
        assert cloudtask.get_queue("emails").name == "emails"
    assert len(sent(emulator, "GetQueue")) == 3


def test_changes_are_not_repeated_after_a_transient_error(emulator: Emulator) -> None:
    # A change whose answer was lost may have happened: it is not sent twice.
    emulator.servicer.fail_next("PurgeQueue", grpc.StatusCode.UNAVAILABLE, "down")
    with override_backend(QuickBackend()), pytest.raises(CloudTasksUnavailable) as excinfo:
        cloudtask.purge_queue("emails")
    assert str(excinfo.value).startswith(
        "Cloud Tasks did not answer PurgeQueue after 1 attempt in "
    )
    assert str(excinfo.value).endswith(
        "(last error: UNAVAILABLE: down). The service or the "
        "network is unavailable; try again later."
    )
    assert len(sent(emulator, "PurgeQueue")) == 1


def test_reads_give_up_at_the_deadline(emulator: Emulator) -> None:
    emulator.servicer.fail_next("ListQueues", grpc.StatusCode.UNAVAILABLE, "down", times=1000)
    with override_backend(QuickBackend()), pytest.raises(CloudTasksUnavailable) as excinfo:
        cloudtask.list_queues()
    assert excinfo.value.attempts == len(sent(emulator, "ListQueues")) >= 3


def test_a_missing_task_in_an_existing_queue_is_task_not_found(emulator: Emulator) -> None:
    # Cloud Tasks answers NOT_FOUND for a missing task and a missing queue alike; a GetQueue
    # tells them apart.
    with pytest.raises(TaskNotFound) as excinfo:
        cloudtask.run_task("emails", "gone")
    assert excinfo.value.path == f"{queue_path('emails')}/tasks/gone"
    assert [method for method, _ in emulator.servicer.requests] == ["RunTask", "GetQueue"]


def test_a_missing_task_stays_task_not_found_when_the_queue_cannot_be_read(
    emulator: Emulator,
) -> None:
    # An account with roles/cloudtasks.taskRunner only may not GetQueue: the RunTask's own
    # NOT_FOUND is reported, not the lookup's PERMISSION_DENIED.
    emulator.servicer.fail_next("GetQueue", grpc.StatusCode.PERMISSION_DENIED, "denied")
    with pytest.raises(TaskNotFound):
        cloudtask.run_task("emails", "gone")


def test_a_recently_deleted_queue_is_not_found(emulator: Emulator) -> None:
    # Calls on a queue deleted lately answer FAILED_PRECONDITION saying so.
    emulator.servicer.fail_next(
        "GetQueue",
        grpc.StatusCode.FAILED_PRECONDITION,
        "The queue no longer exists, though a queue with this name existed recently.",
    )
    with pytest.raises(QueueNotFound, match="existed recently"):
        cloudtask.get_queue("emails")


def test_invalid_argument_is_invalid_queue_config(emulator: Emulator) -> None:
    # Cloud Tasks checks values too (e.g. a rate over the project's quota).
    emulator.servicer.fail_next(
        "UpdateQueue", grpc.StatusCode.INVALID_ARGUMENT, "max_dispatches_per_second too high"
    )
    with pytest.raises(InvalidQueueConfig) as excinfo:
        cloudtask.update_queue("emails", max_dispatches_per_second=400)
    assert str(excinfo.value) == (
        f"Cloud Tasks refused UpdateQueue for {queue_path('emails')}: INVALID_ARGUMENT: "
        "max_dispatches_per_second too high"
    )


def test_other_errors_are_management_errors(emulator: Emulator) -> None:
    emulator.servicer.fail_next("ResumeQueue", grpc.StatusCode.INTERNAL, "boom")
    with pytest.raises(ManagementError) as excinfo:
        cloudtask.resume_queue("emails")
    assert str(excinfo.value) == (
        f"Cloud Tasks refused ResumeQueue for {queue_path('emails')}: INTERNAL: boom"
    )


# The command line ------------------------------------------------------------------------


@pytest.mark.django_db
def test_queue_list_shows_no_task_count(emulator: Emulator) -> None:
    # Cloud Tasks' v2 Queue carries no task count: the column says so with "-".
    lines = helpers.run_command("cloudtask_queues", "list").splitlines()
    assert lines[0] == "NAME     STATE    TASKS  MAX_RATE  MAX_CONCURRENT  MAX_ATTEMPTS"
    assert "emails   running  -      500       1000            100" in lines


@pytest.mark.django_db
def test_task_commands_on_cloud_tasks(emulator: Emulator) -> None:
    queue = new_queue()
    handle = tasks.add.using(queue=queue)(a=1).schedule(countdown=3600)
    listed = helpers.run_command("cloudtask_tasks", "list", queue).splitlines()
    assert listed[0].split() == [
        "NAME",
        "STATE",
        "SCHEDULED",
        "DISPATCHES",
        "RESPONSES",
        "LAST_STATUS",
        "TASK",
    ]
    assert listed[1].split()[:2] == [handle.name, "queued"]
    assert listed[1].split()[-1] == "-"  # the basic view has no body to name the task from
    code, message = helpers.command_exit("cloudtask_tasks", "show", queue, "nope")
    assert code == 3
    assert message.startswith(f"No task 'nope' in queue '{queue}'")


# Resuming pages, and a call's own timeout and retry ------------------------------------------


def test_list_tasks_resumes_from_a_page_token(emulator: Emulator) -> None:
    queue = new_queue()
    for i in range(5):
        tasks.add.using(queue=queue)(a=i).schedule(countdown=3600)
    listed = cloudtask.list_tasks(queue, page_size=2)
    first = listed.next_page()
    token = listed.next_page_token
    emulator.reset()
    resumed = cloudtask.list_tasks(queue, page_size=2, page_token=token)
    second = resumed.next_page()
    rest = list(resumed)
    assert [r.page_token for r in sent(emulator, "ListTasks")] == [token, "4"]
    assert (len(first), len(second), len(rest), resumed.next_page_token) == (2, 2, 1, "")
    names = {t.name for t in first + second + rest}
    assert names == {t.name.rsplit("/", 1)[-1] for t in emulator.tasks(queue)}


def test_a_call_can_forbid_retries_and_shorten_its_deadline(emulator: Emulator) -> None:
    emulator.servicer.fail_next("GetQueue", grpc.StatusCode.UNAVAILABLE, "down")
    with pytest.raises(CloudTasksUnavailable, match="after 1 attempt"):
        cloudtask.get_queue("emails", retry=False)
    # A read answered too slowly for its timeout: the client's own deadline stops it.
    emulator.servicer.latency = 1.0
    with pytest.raises(CloudTasksUnavailable, match="DEADLINE_EXCEEDED"):
        cloudtask.get_queue("emails", timeout=0.3)
    emulator.servicer.latency = 0.0
    # A change may be retried when the caller says it is safe to repeat.
    emulator.servicer.fail_next("PauseQueue", grpc.StatusCode.UNAVAILABLE, "down")
    with override_backend(QuickBackend()):
        assert cloudtask.pause_queue("emails", retry=True).state == "paused"
    assert len(sent(emulator, "PauseQueue")) == 2
    cloudtask.resume_queue("emails")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be a number of seconds above 0 and at most 600"),
        ({"timeout": "5"}, "timeout must be a number of seconds"),
        ({"timeout": True}, "timeout must be a number of seconds"),
        ({"retry": "no"}, "retry must be True, False or None"),
    ],
)
def test_bad_call_options_are_refused(
    emulator: Emulator, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidQueueConfig, match=message):
        cloudtask.get_queue("emails", **options)
    with pytest.raises(InvalidQueueConfig, match=message):
        cloudtask.list_tasks("emails", **options)
    assert sent(emulator, "GetQueue") == []
