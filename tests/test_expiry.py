"""expires=: a delivery after the call's expiry is acknowledged without running it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import override_settings
from freezegun import freeze_time

from cloudtask import Task, get_result, signals
from cloudtask.message import EXPIRES_FIELD
from cloudtask.testing import capture_tasks
from tests import tasks

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def expired() -> Iterator[list[dict[str, Any]]]:
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    signals.task_expired.connect(receiver)
    yield heard
    signals.task_expired.disconnect(receiver)


def body(captured: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(captured.http_request.body)
    return decoded


@pytest.mark.parametrize(
    ("offset", "runs"),
    [(59.999, True), (60, True), (60.001, False), (3600, False)],
)
def test_a_delivery_after_the_expiry_is_acknowledged_unrun(
    offset: float, runs: bool, expired: list[dict[str, Any]]
) -> None:
    with freeze_time(NOW), capture_tasks() as captured:
        handle = tasks.add(a=1, b=2).delay(expires=60)
    assert body(captured[0])[EXPIRES_FIELD] == NOW.timestamp() + 60
    with freeze_time(NOW + timedelta(seconds=offset)):
        [response] = captured.run_all()
    assert response.status_code == 200
    if runs:
        assert response.json()["status"] == "success"
        assert tasks.calls == [("add", (1, 2))]
        assert expired == []
    else:
        assert response.json() == {"status": "expired", "id": handle.call_id}
        assert response["X-CloudTask-Outcome"] == "expired"
        assert tasks.calls == []
        [heard] = expired
        assert heard["call_id"] == handle.call_id
        assert heard["expires"] == NOW + timedelta(seconds=60)


@pytest.mark.django_db
def test_a_stored_result_says_expired() -> None:
    with override_settings(CLOUDTASK={"RESULTS": True}):
        with freeze_time(NOW), capture_tasks() as captured:
            handle = tasks.add(a=1).delay(expires=timedelta(minutes=5))
        with freeze_time(NOW + timedelta(minutes=6)):
            captured.run_all()
        result = get_result(handle.call_id)
    assert (result.status, result.done, result.failure_reason) == ("expired", True, "expired")


def test_expiry_forms_and_the_task_option() -> None:
    at = NOW + timedelta(hours=2)
    with freeze_time(NOW), capture_tasks() as captured:
        tasks.add(a=1).delay(expires=at)
        tasks.add(a=1).schedule(countdown=60, expires=timedelta(minutes=2))
        tasks.add(a=1).push(expires=90.5)
        tasks.expires_in_a_minute(n=1).delay()
        tasks.expires_in_a_minute(n=2).delay(expires=600)  # the call's wins
        tasks.add(a=1).delay()  # no expiry: the body has no field
    expiries = [body(c).get(EXPIRES_FIELD) for c in captured]
    start = NOW.timestamp()
    assert expiries == [at.timestamp(), start + 120, start + 90.5, start + 60, start + 600, None]


@pytest.mark.django_db(transaction=True)
def test_on_commit_counts_a_duration_from_the_push() -> None:
    from django.db import transaction

    with capture_tasks() as captured, freeze_time(NOW) as clock, transaction.atomic():
        tasks.add(a=1).delay_on_commit(expires=60)
        clock.move_to(NOW + timedelta(seconds=30))
    assert body(captured[0])[EXPIRES_FIELD] == NOW.timestamp() + 90


@pytest.mark.parametrize(
    ("push", "error", "message"),
    [
        (lambda c: c.delay(expires=NOW - timedelta(seconds=1)), ValueError, "is in the past"),
        (lambda c: c.delay(expires=0), ValueError, "must be a positive duration"),
        (lambda c: c.delay(expires=-5), ValueError, "must be a positive duration"),
        (lambda c: c.delay(expires=True), TypeError, "number of seconds or a datetime.timedelta"),
        (lambda c: c.delay(expires="1h"), TypeError, "number of seconds or a datetime.timedelta"),
        (
            lambda c: c.delay(expires=datetime(2030, 1, 2)),  # naive on purpose
            ValueError,
            "naive datetime",
        ),
        (
            lambda c: c.schedule(countdown=120, expires=60),
            ValueError,
            "not after the schedule time",
        ),
        (
            lambda c: c.schedule(at=NOW + timedelta(hours=1), expires=NOW + timedelta(minutes=1)),
            ValueError,
            "not after the schedule time",
        ),
    ],
)
def test_bad_expiries_are_refused_before_anything_is_pushed(
    push: Any, error: type[Exception], message: str
) -> None:
    with freeze_time(NOW), capture_tasks() as captured:
        call = tasks.add(a=1)
        with pytest.raises(error, match=message):
            push(call)
    assert captured == []


def test_the_task_option_is_checked_at_decoration() -> None:
    with pytest.raises(ValueError, match=r"@task\(expires=...\) of tests.tasks.add must be a pos"):
        Task(func=tasks.add.func, name=tasks.add.name, expires=0)
    with pytest.raises(TypeError, match="expires must be a number of seconds"):
        tasks.add.using(expires="soon")
    assert tasks.add.using(expires=30).expires == timedelta(seconds=30)


def test_a_retry_copy_keeps_the_expiry_and_a_retry_after_it_expires(
    expired: list[dict[str, Any]],
) -> None:
    with freeze_time(NOW), capture_tasks() as captured:
        tasks.retries_itself(countdown=30).delay(expires=120)
        captured[0].run()  # retries itself in 30 s: a copy is pushed, with the same expiry
        assert len(captured) == 2
        assert body(captured[1])[EXPIRES_FIELD] == NOW.timestamp() + 120
    with freeze_time(NOW + timedelta(seconds=100)):
        response = captured[1].run()  # its own retry would be due after the expiry
    assert response.json()["status"] == "expired"
    assert len(captured) == 2
    assert len(expired) == 1
    assert tasks.calls == [("retries_itself", 0), ("retries_itself", 1)]
