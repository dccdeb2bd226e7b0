"""The one push path: every kind of push builds its message there and sends task_pushed once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from cloudtask import PushError, TaskHandle, envelope, push_many, signals, signing
from cloudtask.backends.base import signed_path
from cloudtask.backends.loading import get_backend, override_backend
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.backends import HandleReturningBackend, NamelessBackend, RecordingBackend

SAE = "invoker@my-project.iam.gserviceaccount.com"


@pytest.fixture
def pushed() -> Iterator[list[dict[str, Any]]]:
    """Every task_pushed sent while the test runs."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    signals.task_pushed.connect(receiver)
    yield sent
    signals.task_pushed.disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_every_kind_of_push_sends_task_pushed_once(pushed: list[dict[str, Any]]) -> None:
    with capture_tasks() as captured:
        handles = [
            tasks.add(a=1, b=1).delay(),
            tasks.add(a=2, b=2).push(),
            tasks.add(a=3, b=3).schedule(countdown=60),
        ]
        with transaction.atomic():
            tasks.add(a=4, b=4).delay_on_commit()
            tasks.add(a=5, b=5).push(on_commit=True)
            assert len(captured) == 3  # not before the commit
        handles += push_many([tasks.add(a=6, b=6), tasks.add(a=7, b=7)])
    assert len(captured) == len(pushed) == 7
    sent_handles = [sent["handle"] for sent in pushed]
    # The two on-commit pushes return nothing; the others returned what task_pushed carried.
    assert sent_handles[:3] + sent_handles[5:] == handles
    assert [sent["call"].arguments[1]["a"] for sent in pushed] == [1, 2, 3, 4, 5, 6, 7]
    assert [sent["call_id"] for sent in pushed] == [c.call_id for c in captured]


def test_a_retry_copy_goes_through_the_push_path(pushed: list[dict[str, Any]]) -> None:
    with capture_tasks() as captured:
        first = tasks.retries_itself(countdown=30).delay()
        response = captured[0].run()
    assert response.json()["status"] == "retrying"
    original, copy = captured
    assert len(pushed) == 2
    assert pushed[1]["handle"] == TaskHandle(
        name=copy.name, queue="default", eta=copy.eta, task=first.task, call_id=first.call_id
    )
    assert pushed[1]["call_id"] == first.call_id == copy.call_id
    assert pushed[1]["call"].task is tasks.retries_itself
    assert envelope.decode(copy.http_request.body).extra == {"retries": 1}
    assert original.eta is None
    assert copy.eta is not None


def test_an_on_failure_push_goes_through_the_push_path(pushed: list[dict[str, Any]]) -> None:
    with capture_tasks() as captured:
        tasks.rejects().delay()
        captured[0].run()
    assert [sent["handle"].task for sent in pushed] == [
        "tests.tasks.rejects",
        "tests.tasks.record_failure",
    ]
    assert pushed[1]["handle"].name == captured[1].name
    assert captured[1].kwargs["task"] == "tests.tasks.rejects"


def test_the_backend_receives_a_finished_message() -> None:
    backend = RecordingBackend()
    settings = {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend", "SAE": SAE}
    with override_settings(CLOUDTASK=settings), override_backend(backend):
        handle = tasks.send_email(to="a@example.com").schedule(countdown=60, name="welcome-1")
        tasks.with_oauth_token().delay()
        tasks.on_app_engine().delay()
    message, oauth, app_engine = backend.messages
    assert handle == TaskHandle(
        name="recorded",
        queue="emails",
        eta=message.eta,
        task=message.task_name,
        call_id=message.call_id,
    )
    assert (message.task_name, message.task_id, message.queue) == (
        "tests.tasks.send_email",
        "welcome-1",
        "emails",
    )
    assert message.url == "http://testserver/_tasks/"
    assert message.headers == {
        "X-Tenant": "acme",
        "Content-Type": "application/json",
        signing.SIGNATURE_HEADER: signing.sign(signed_path(message.url), message.body),
    }
    data = envelope.decode(message.body)
    assert (data.task_name, data.id, data.kwargs) == (
        message.task_name,
        handle.call_id,
        {"to": "a@example.com"},
    )
    assert message.oidc_token == {"service_account_email": SAE, "audience": message.url}
    assert (message.oauth_token, message.app_engine) == (None, None)
    assert oauth.oidc_token is None
    assert oauth.oauth_token == {
        "service_account_email": SAE,
        "scope": "https://www.googleapis.com/auth/cloud-tasks",
    }
    assert app_engine.oidc_token is None
    assert app_engine.app_engine == tasks.on_app_engine.app_engine


def test_a_backend_that_returns_a_task_handle_still_works() -> None:
    backend = HandleReturningBackend()
    with override_backend(backend):
        handle = tasks.add(a=1, b=2).delay()
    assert handle.name == "from-a-handle"
    assert handle.call_id == backend.messages[0].call_id


def test_a_backend_that_returns_no_task_id_is_a_clear_error() -> None:
    with override_backend(NamelessBackend()), pytest.raises(PushError) as excinfo:
        tasks.add(a=1, b=2).delay()
    assert str(excinfo.value) == (
        "NamelessBackend.push() must return the Cloud Tasks task id (a non-empty str), not None."
    )


def test_the_push_path_uses_the_current_backend() -> None:
    backend = RecordingBackend()
    with override_backend(backend):
        assert get_backend() is backend
        tasks.noop().delay()
    assert len(backend.messages) == 1
    assert get_backend() is not backend
