"""API errors of the Cloud Tasks backend, mapped to cloudtask's exceptions.

The emulator cannot produce these answers, so its servicer is told to answer the next calls
with the status and message Cloud Tasks itself uses; each test names the fact it stands on.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from django.test import override_settings
from google.cloud import tasks_v2

from cloudtask import (
    CloudTasksUnavailable,
    PayloadTooLarge,
    PushError,
    PushPermissionDenied,
    QueueDeletedRecently,
    QueueNotFound,
    TaskAlreadyExists,
)
from cloudtask.backends import override_backend
from cloudtask.backends.cloudtasks import CloudTasksBackend
from cloudtask.task_ids import make_task_id
from tests import tasks
from tests.support.emulator import LOCATION_PATH, Emulator, queue_path

pytestmark = pytest.mark.slow

QUEUE_MISSING = "Queue does not exist."
DELETED_RECENTLY = "The queue no longer exists, though a queue with this name existed recently."
CREATE_TOO_RECENT = (
    "The queue cannot be created because a queue with this name existed too recently."
)
LACKS_PERMISSION = (
    'The principal (user or service account) lacks IAM permission "cloudtasks.tasks.create" '
    f'for the resource "{queue_path("default")}" (or the resource may not exist).'
)


class QuickBackend(CloudTasksBackend):
    """The real backend with a short push deadline, so giving up takes a second."""

    push_deadline = 1.0
    initial_backoff = 0.05
    max_backoff = 0.2


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings_for(emulator: Emulator) -> Any:
    def apply(**extra: Any) -> Any:
        return override_settings(CLOUDTASK=emulator.settings(**extra))

    return apply


def test_already_exists_is_task_already_exists(emulator: Emulator, settings_for: Any) -> None:
    # Cloud Tasks answers ALREADY_EXISTS for a name in use or used within ~1 hour.
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.ALREADY_EXISTS, "exists")
    with settings_for(), pytest.raises(TaskAlreadyExists) as excinfo:
        tasks.named_refresh().delay()
    assert excinfo.value.name == make_task_id("tests.tasks.named_refresh")
    assert excinfo.value.queue == "default"
    assert len(emulator.created()) == 1


def test_missing_queue_is_created_then_the_push_repeated(
    emulator: Emulator, settings_for: Any
) -> None:
    # CreateTask on a missing queue answers FAILED_PRECONDITION "Queue does not exist."
    queue = new_queue()
    options = {"max_dispatches_per_second": 5, "max_attempts": 7, "min_backoff": 2}
    with settings_for(QUEUES={queue: options}):
        handle = tasks.add.using(queue=queue)(a=1).delay()
    assert handle.queue == queue
    assert [r.parent for r in emulator.created()] == [queue_path(queue)] * 2
    (create_queue,) = emulator.created("CreateQueue")
    assert create_queue == tasks_v2.CreateQueueRequest(
        parent=LOCATION_PATH,
        queue=tasks_v2.Queue(
            name=queue_path(queue),
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=5, max_concurrent_dispatches=1000
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=7,
                max_retry_duration=timedelta(0),
                min_backoff=timedelta(seconds=2),
                max_backoff=timedelta(seconds=3600),
                max_doublings=16,
            ),
        ),
    )
    assert queue in emulator.queue_names()


def test_unlisted_queue_is_created_with_cloud_tasks_defaults(
    emulator: Emulator, settings_for: Any
) -> None:
    queue = new_queue()
    with settings_for():
        tasks.add.using(queue=queue)().delay()
    (create_queue,) = emulator.created("CreateQueue")
    assert create_queue.queue == tasks_v2.Queue(name=queue_path(queue))


def test_queue_made_meanwhile_by_another_process_is_fine(
    emulator: Emulator, settings_for: Any
) -> None:
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.FAILED_PRECONDITION, QUEUE_MISSING)
    emulator.servicer.fail_next("CreateQueue", grpc.StatusCode.ALREADY_EXISTS, "exists")
    with settings_for():
        handle = tasks.add().delay()
    assert handle.name
    assert len(emulator.created()) == 2


def test_missing_queue_without_auto_create_is_queue_not_found(
    emulator: Emulator, settings_for: Any
) -> None:
    queue = new_queue()
    with settings_for(AUTO_CREATE_QUEUES=False), pytest.raises(QueueNotFound) as excinfo:
        tasks.add.using(queue=queue)().delay()
    assert excinfo.value.queue == queue
    assert str(excinfo.value).startswith(
        f"The queue {queue_path(queue)} does not exist (FAILED_PRECONDITION: "
    )
    assert f"gcloud tasks queues create {queue}" in str(excinfo.value)
    assert emulator.created("CreateQueue") == []
    assert queue not in emulator.queue_names()


def test_not_found_is_a_missing_queue_too(emulator: Emulator, settings_for: Any) -> None:
    # Some Cloud Tasks front ends answer NOT_FOUND, not FAILED_PRECONDITION, for the queue.
    emulator.servicer.fail_next(
        "CreateTask", grpc.StatusCode.NOT_FOUND, "Requested entity was not found."
    )
    with settings_for(AUTO_CREATE_QUEUES=False), pytest.raises(QueueNotFound):
        tasks.add().delay()


def test_recently_deleted_queue_on_push(emulator: Emulator, settings_for: Any) -> None:
    # A deleted queue's name is refused with FAILED_PRECONDITION for up to 7 days.
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.FAILED_PRECONDITION, DELETED_RECENTLY)
    with settings_for(), pytest.raises(QueueDeletedRecently) as excinfo:
        tasks.add().delay()
    assert excinfo.value.path == queue_path("default")
    assert "for up to 7 days" in str(excinfo.value)
    assert emulator.created("CreateQueue") == []


def test_recently_deleted_queue_on_create(emulator: Emulator, settings_for: Any) -> None:
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.FAILED_PRECONDITION, QUEUE_MISSING)
    emulator.servicer.fail_next(
        "CreateQueue", grpc.StatusCode.FAILED_PRECONDITION, CREATE_TOO_RECENT
    )
    with settings_for(), pytest.raises(QueueDeletedRecently):
        tasks.add().delay()
    assert len(emulator.created()) == 1


def test_unavailable_is_retried_until_it_succeeds(emulator: Emulator, settings_for: Any) -> None:
    # UNAVAILABLE is the status Google's APIs use for "transient, try again".
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.UNAVAILABLE, "try again", times=2)
    with settings_for(), override_backend(QuickBackend()):
        handle = tasks.add(a=4).delay()
    first, second, third = emulator.created()
    assert first == second == third
    assert handle.name


def test_transient_errors_give_up_at_the_push_deadline(
    emulator: Emulator, settings_for: Any
) -> None:
    # An outage answers UNAVAILABLE for as long as it lasts.
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.UNAVAILABLE, "down", times=1000)
    started = time.monotonic()
    with (
        settings_for(),
        override_backend(QuickBackend()),
        pytest.raises(CloudTasksUnavailable) as excinfo,
    ):
        tasks.add().delay()
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert excinfo.value.attempts == len(emulator.created()) >= 3
    assert excinfo.value.last_error == "UNAVAILABLE: down"
    assert str(excinfo.value).startswith(
        f"Cloud Tasks did not accept the task after {excinfo.value.attempts} attempts in "
    )


@pytest.mark.parametrize(
    "transient", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE]
)
def test_already_exists_after_a_transient_error_means_the_first_attempt_landed(
    emulator: Emulator, settings_for: Any, transient: grpc.StatusCode
) -> None:
    # A call that timed out or lost its answer may still have created the task; the repeat
    # then collides with it.
    emulator.servicer.fail_next("CreateTask", transient, "no answer")
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.ALREADY_EXISTS, "exists")
    with settings_for(), override_backend(QuickBackend()):
        handle = tasks.named_refresh().delay()
    assert handle.name == make_task_id("tests.tasks.named_refresh")
    assert len(emulator.created()) == 2


def test_permission_denied_names_account_and_permission(
    emulator: Emulator, settings_for: Any
) -> None:
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.PERMISSION_DENIED, LACKS_PERMISSION)
    with settings_for(), pytest.raises(PushPermissionDenied) as excinfo:
        tasks.add().delay()
    error = excinfo.value
    assert error.permission == "cloudtasks.tasks.create"
    assert error.resource == queue_path("default")
    assert error.account == "(emulator, no credentials)"
    assert str(error).startswith(
        "Cloud Tasks refused the push: account (emulator, no credentials) lacks permission "
        f"'cloudtasks.tasks.create' on {queue_path('default')} (PERMISSION_DENIED: "
    )
    assert "roles/cloudtasks.enqueuer" in str(error)
    assert len(emulator.created()) == 1


def test_missing_act_as_permission_is_named(emulator: Emulator, settings_for: Any) -> None:
    # Tasks with a token need iam.serviceAccounts.actAs on the token's service account.
    emulator.servicer.fail_next(
        "CreateTask",
        grpc.StatusCode.PERMISSION_DENIED,
        'Lacking IAM permission "iam.serviceAccounts.actAs" for the resource '
        '"projects/-/serviceAccounts/invoker@test-project.iam.gserviceaccount.com".',
    )
    with settings_for(), pytest.raises(PushPermissionDenied) as excinfo:
        tasks.add().delay()
    assert excinfo.value.permission == "iam.serviceAccounts.actAs"
    assert excinfo.value.resource.endswith("invoker@test-project.iam.gserviceaccount.com")


def test_unauthenticated_is_a_permission_error(emulator: Emulator, settings_for: Any) -> None:
    # Expired or revoked credentials answer UNAUTHENTICATED, naming no permission.
    emulator.servicer.fail_next(
        "CreateTask",
        grpc.StatusCode.UNAUTHENTICATED,
        "Request had invalid authentication credentials.",
    )
    with settings_for(), pytest.raises(PushPermissionDenied, match="UNAUTHENTICATED: Request had"):
        tasks.add().delay()


def test_task_too_large_from_the_api_is_payload_too_large(
    emulator: Emulator, settings_for: Any
) -> None:
    # Cloud Tasks answers INVALID_ARGUMENT "Task size too large" over its limit.
    emulator.servicer.fail_next(
        "CreateTask", grpc.StatusCode.INVALID_ARGUMENT, "Task size too large"
    )
    with settings_for(), pytest.raises(PayloadTooLarge) as excinfo:
        tasks.add().delay()
    assert excinfo.value.limit == 1_000_000


def test_other_errors_are_push_errors_with_the_status(
    emulator: Emulator, settings_for: Any
) -> None:
    # INTERNAL is Cloud Tasks' answer to a failure on its side that is not worth retrying here.
    emulator.servicer.fail_next("CreateTask", grpc.StatusCode.INTERNAL, "boom")
    with settings_for(), pytest.raises(PushError) as excinfo:
        tasks.add().delay()
    assert type(excinfo.value) is PushError
    assert str(excinfo.value) == (
        f"Cloud Tasks refused tests.tasks.add for queue {queue_path('default')}: INTERNAL: boom"
    )
    assert len(emulator.created()) == 1
