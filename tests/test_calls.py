"""Calls: argument binding, the JSON check, schedule() and the per-call URL."""

from __future__ import annotations

import gc
import math
import sys
import warnings
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone as dj_timezone
from freezegun import freeze_time

from cloudtask import TaskAlreadyExists, TaskCall, TaskHandle, push_many
from cloudtask.testing import capture_tasks
from tests import tasks

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_calling_a_task_returns_a_call_without_running_it() -> None:
    call = tasks.add(a=1, b=2)
    assert isinstance(call, TaskCall)
    assert tasks.calls == []
    assert repr(call) == "<TaskCall tests.tasks.add(a=1, b=2)>"
    call.consume()


def test_execute_and_call_run_in_process() -> None:
    assert tasks.add(a=5, b=3)() == 8
    assert tasks.add(a=5, b=3).execute() == 8
    assert tasks.add()() == 9


def test_direct_run_receives_a_default_request() -> None:
    result = tasks.record_request()()
    assert result == {
        "task_name": "",
        "queue_name": "",
        "retry_count": 0,
        "execution_count": 0,
        "eta": None,
        "previous_response": None,
        "retry_reason": None,
        "has_http_request": False,
    }


def test_arguments_are_json_round_trips() -> None:
    result = tasks.echo((1, 2), {"k": (3,)}, n={1: "one"})()
    assert result == {"args": [[1, 2], {"k": [3]}], "kwargs": {"n": {"1": "one"}}}


@pytest.mark.parametrize(
    ("make_call", "message"),
    [
        (lambda: tasks.add(c=1), "tests.tasks.add(): got an unexpected keyword argument 'c'"),
        (lambda: tasks.add(1, 2, 3), "tests.tasks.add(): too many positional arguments"),
        (lambda: tasks.send_email(), "tests.tasks.send_email(): missing a required argument: 'to'"),
    ],
)
def test_wrong_arguments_raise_type_error_at_call_time(make_call: Any, message: str) -> None:
    with pytest.raises(TypeError) as excinfo:
        make_call()
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (datetime(2026, 1, 1), "Object of type datetime is not JSON serializable"),
        ({1, 2}, "Object of type set is not JSON serializable"),
        (object(), "Object of type object is not JSON serializable"),
        (b"bytes", "Object of type bytes is not JSON serializable"),
        (math.nan, "nan has no JSON form"),
        (math.inf, "inf has no JSON form"),
        ([1, {"deep": {2, 3}}], "Object of type set is not JSON serializable"),
    ],
)
def test_non_json_argument_is_named(value: Any, reason: str) -> None:
    with capture_tasks() as captured, pytest.raises(TypeError) as excinfo:
        tasks.send_email(to=value).delay()
    assert str(excinfo.value).startswith(
        f"tests.tasks.send_email(): argument 'to' is not JSON-serialisable ({reason})."
    )
    assert captured == []


def test_non_json_positional_argument_is_named() -> None:
    with pytest.raises(TypeError, match=r"positional argument 1 is not JSON-serialisable"):
        tasks.echo(1, date(2026, 1, 1))


def test_delay_and_push_return_handles() -> None:
    with capture_tasks() as captured:
        first = tasks.add(a=1, b=2).delay()
        second = tasks.add(a=3, b=4).push()
    assert [c.kwargs for c in captured] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert isinstance(first, TaskHandle)
    assert first.queue == "default"
    assert first.eta is None
    assert first.name == captured[0].name
    assert first.name != second.name
    assert first.call_id == captured[0].call_id


@freeze_time(NOW)
def test_schedule_with_at_and_countdown() -> None:
    with capture_tasks() as captured:
        at = tasks.add(a=1).schedule(at=NOW + timedelta(days=2))
        seconds = tasks.add(a=2).schedule(countdown=300)
        delta = tasks.add(a=3).schedule(countdown=timedelta(minutes=1))
    assert at.eta == NOW + timedelta(days=2)
    assert seconds.eta == NOW + timedelta(seconds=300)
    assert delta.eta == NOW + timedelta(minutes=1)
    assert [c.eta for c in captured] == [at.eta, seconds.eta, delta.eta]
    assert at.eta is not None
    assert at.eta.tzinfo is not None


@freeze_time(NOW)
def test_schedule_converts_other_timezones_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    with capture_tasks():
        handle = tasks.add().schedule(at=datetime(2026, 3, 2, 14, 0, tzinfo=plus_two))
    assert handle.eta == datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    assert handle.eta is not None
    assert handle.eta.utcoffset() == timedelta(0)


@freeze_time(NOW)
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, TypeError, "exactly one of at="),
        ({"at": NOW, "countdown": 5}, TypeError, "exactly one of at="),
        ({"countdown": -1}, ValueError, "countdown must not be negative"),
        ({"countdown": math.inf}, ValueError, "finite number of seconds"),
        ({"countdown": True}, TypeError, "number of seconds or a datetime.timedelta"),
        ({"at": datetime(2026, 3, 2, 12, 0)}, ValueError, "naive datetime while USE_TZ"),
        ({"at": date(2026, 3, 2)}, TypeError, "at= must be a datetime.datetime"),
        ({"at": NOW + timedelta(days=31)}, ValueError, "at most 30 days ahead"),
        ({"countdown": timedelta(days=30, seconds=1)}, ValueError, "at most 30 days ahead"),
    ],
)
def test_bad_schedule_is_refused(kwargs: dict[str, Any], error: type, message: str) -> None:
    with capture_tasks() as captured, pytest.raises(error, match=message):
        tasks.add().schedule(**kwargs)
    assert captured == []


@freeze_time(NOW)
def test_schedule_exactly_30_days_and_in_the_past_are_accepted() -> None:
    with capture_tasks() as captured:
        tasks.add().schedule(at=NOW + timedelta(days=30))
        tasks.add().schedule(at=NOW - timedelta(hours=1))
    assert len(captured) == 2


@freeze_time(NOW)
@override_settings(USE_TZ=False, TIME_ZONE="Europe/Zurich")
def test_naive_datetime_is_local_time_without_use_tz() -> None:
    with capture_tasks():
        handle = tasks.add().schedule(at=datetime(2026, 3, 2, 13, 0))
    assert handle.eta == datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_call_url_overrides_task_and_setting() -> None:
    call = tasks.send_email(to="a@example.com")
    assert call.url is None
    call.url = "https://other.example.com/_tasks/"
    with capture_tasks() as captured:
        call.push()
        tasks.send_email(to="b@example.com").push()
    assert captured[0].url == "https://other.example.com/_tasks/"
    assert captured[0].http_request.url == "https://other.example.com/_tasks/"
    assert captured[1].url == "http://testserver/_tasks/"


@override_settings(
    CLOUDTASK={
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "URL": "https://app.example.com/_tasks/",
    }
)
def test_setting_url_is_the_default() -> None:
    with capture_tasks() as captured:
        tasks.add().delay()
    assert captured[0].url == "https://app.example.com/_tasks/"


@pytest.mark.parametrize("url", ["/_tasks/", "ftp://example.com/", "example.com/_tasks/", 42])
def test_bad_call_url_is_refused(url: Any) -> None:
    call = tasks.add()
    with pytest.raises((TypeError, ValueError), match=r"TaskCall\.url must be"):
        call.url = url
    assert call.url is None
    call.consume()  # only its URL is under test


def test_named_task_is_refused_while_the_first_is_queued() -> None:
    with capture_tasks() as captured:
        first = tasks.named_refresh().delay()
        with pytest.raises(TaskAlreadyExists) as excinfo:
            tasks.named_refresh().delay()
    assert excinfo.value.name == first.name
    assert first.name.endswith("-tests-tasks-named_refresh")
    assert len(captured) == 1


def test_a_name_stays_taken_after_its_task_ran_as_on_cloud_tasks() -> None:
    with capture_tasks() as captured:
        tasks.named_refresh().delay()
        captured.run_all()
        with pytest.raises(TaskAlreadyExists):  # ran: taken for LOCAL_DEDUP_WINDOW (1 h)
            tasks.named_refresh().delay()
    assert len(captured) == 1


def test_a_name_is_free_again_once_the_window_has_passed() -> None:
    with capture_tasks() as captured:
        tasks.named_refresh().delay()
        captured.run_all()
        captured[0].ran_at -= 3601  # type: ignore[operator]  # an hour and a second ago
        tasks.named_refresh().delay()
    assert len(captured) == 2
    no_window = {
        "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
        "LOCAL_DEDUP_WINDOW": 0,
    }
    with override_settings(CLOUDTASK=no_window), capture_tasks() as captured:
        tasks.named_refresh().delay()
        captured.run_all()
        tasks.named_refresh().delay()  # no window: free as soon as it ran
    assert len(captured) == 2


def test_custom_name_and_bad_custom_name() -> None:
    with capture_tasks() as captured:
        handle = tasks.add().push(name="report-2026-03")
        with pytest.raises(TaskAlreadyExists):
            tasks.add().push(name="report-2026-03")
        with pytest.raises(ValueError, match="not a valid Cloud Tasks id"):
            tasks.add().push(name="has spaces")
    assert handle.name == "report-2026-03"
    assert len(captured) == 1


def test_payload_over_the_limit_is_refused_before_pushing() -> None:
    from cloudtask import PayloadTooLarge

    with capture_tasks() as captured, pytest.raises(PayloadTooLarge) as excinfo:
        tasks.send_email(to="x" * (1024 * 1024)).delay()
    assert excinfo.value.limit == 1024 * 1024
    assert excinfo.value.size > excinfo.value.limit
    assert captured == []


def test_now_uses_django_timezone() -> None:
    assert dj_timezone.now().tzinfo is not None


# Habits users bring -------------------------------------------------------------------------


def test_celery_spelling_pushes_at_once() -> None:
    with capture_tasks() as captured:
        handle = tasks.add.delay(a=1, b=2)
        positional = tasks.add.delay(3, 4)
    assert [(c.args, c.kwargs) for c in captured] == [([], {"a": 1, "b": 2}), ([3, 4], {})]
    assert handle.name == captured[0].name
    assert positional.task == "tests.tasks.add"
    with pytest.raises(TypeError, match=r"^tests\.tasks\.add\(\): got an unexpected keyword"):
        tasks.add.delay(c=1)


def test_a_call_never_pushed_or_run_warns_where_it_was_made() -> None:
    call = tasks.add(a=1, b=2)
    call_line = sys._getframe().f_lineno - 1
    with pytest.warns(RuntimeWarning) as caught:
        del call  # the last reference: collected at once
    [warning] = caught.list
    assert str(warning.message) == (
        "<TaskCall tests.tasks.add(a=1, b=2)> was never pushed or run: call .delay(), "
        ".schedule() or .execute() on it (a task call does nothing by itself)."
    )
    assert (warning.filename, warning.lineno) == (__file__, call_line)


@pytest.mark.parametrize(
    "use",
    [
        lambda call: call.execute(),
        lambda call: call(),
        lambda call: call.delay(),
        lambda call: call.push(),
        lambda call: call.schedule(countdown=5),
        lambda call: call.delay_on_commit(),
        lambda call: push_many([call]),
    ],
)
@pytest.mark.django_db  # delay_on_commit asks the database whether a transaction is open
def test_a_call_that_was_pushed_or_run_does_not_warn(use: Any) -> None:
    with capture_tasks(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        call = tasks.add(a=1, b=2)
        use(call)
        del call
        gc.collect()


def test_a_failed_push_raises_where_it_is_made_and_does_not_warn_later() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        call = tasks.add()
        with pytest.raises(ValueError, match="is not a valid Cloud Tasks id"):
            call.delay(name="not valid!")
        del call
        gc.collect()


def test_a_function_without_its_request_parameter_gets_told_why() -> None:
    with pytest.raises(TypeError) as excinfo:
        tasks.forgets_the_request(5)
    assert str(excinfo.value) == (
        "tests.tasks.forgets_the_request(): too many positional arguments. Note: the first "
        "parameter of forgets_the_request(), 'x', receives the CloudTaskRequest, so it takes no "
        "argument from the caller; if 'x' is meant to be an argument, write "
        "def forgets_the_request(request, x, ...)."
    )


def test_the_request_hint_is_not_given_when_the_first_parameter_is_the_request() -> None:
    with pytest.raises(TypeError) as excinfo:
        tasks.add(1, 2, 3)
    assert str(excinfo.value) == "tests.tasks.add(): too many positional arguments"
