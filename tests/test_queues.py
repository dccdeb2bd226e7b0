"""CLOUDTASK["QUEUES"]: parsing, Cloud Tasks' ranges, backoff, and the system checks."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from cloudtask import conf, queues
from cloudtask.checks import check_settings
from cloudtask.exceptions import ConfigurationError
from cloudtask.queues import QueueConfig


def ids(**cloudtask: Any) -> list[tuple[str, str]]:
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, **cloudtask}):
        return [
            (m.id or "", m.msg)
            for m in check_settings()
            if (m.id or "").startswith("cloudtask.E03")
        ]


def test_unknown_queue_gets_cloud_tasks_defaults() -> None:
    config = queues.get("anything")
    assert config == QueueConfig(
        name="anything",
        max_dispatches_per_second=500.0,
        max_concurrent_dispatches=1000,
        max_attempts=100,
        max_retry_duration=timedelta(0),
        min_backoff=timedelta(seconds=0.1),
        max_backoff=timedelta(seconds=3600),
        max_doublings=16,
    )


def test_configured_queue_accepts_seconds_and_timedeltas() -> None:
    options = {
        "max_dispatches_per_second": 2.5,
        "max_concurrent_dispatches": 3,
        "max_attempts": -1,
        "max_retry_duration": timedelta(hours=1),
        "min_backoff": 1,
        "max_backoff": 60.5,
        "max_doublings": 0,
    }
    with override_settings(CLOUDTASK={"QUEUES": {"emails": options}}):
        config = queues.get("emails")
        assert queues.get("other").max_attempts == 100
    assert config.max_dispatches_per_second == 2.5
    assert config.max_concurrent_dispatches == 3
    assert config.max_attempts == -1
    assert config.max_retry_duration == timedelta(hours=1)
    assert config.min_backoff == timedelta(seconds=1)
    assert config.max_backoff == timedelta(seconds=60.5)
    assert config.max_doublings == 0


def test_override_settings_takes_effect_at_once() -> None:
    with override_settings(CLOUDTASK={"QUEUES": {"q": {"max_attempts": 2}}}):
        assert queues.get("q").max_attempts == 2
    with override_settings(CLOUDTASK={"QUEUES": {"q": {"max_attempts": 7}}}):
        assert queues.get("q").max_attempts == 7


def test_backoff_doubles_then_grows_linearly_then_caps() -> None:
    config = QueueConfig(
        name="q",
        min_backoff=timedelta(seconds=10),
        max_backoff=timedelta(seconds=300),
        max_doublings=3,
    )
    delays = [config.backoff(n).total_seconds() for n in range(1, 10)]
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300, 300]


def test_default_backoff_starts_at_a_tenth_of_a_second() -> None:
    config = QueueConfig(name="q")
    assert [config.backoff(n).total_seconds() for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert config.backoff(40) == timedelta(hours=1)


@pytest.mark.parametrize(
    ("max_attempts", "duration", "attempts", "elapsed", "expected"),
    [
        (3, 0, 2, 0, False),
        (3, 0, 3, 0, True),
        (3, 60, 3, 59, False),  # both limits must be reached
        (3, 60, 3, 60, True),
        (3, 60, 2, 600, False),
        (-1, 0, 10_000, 10**6, False),  # unlimited
        (-1, 60, 10_000, 59, False),
        (-1, 60, 1, 60, True),
    ],
)
def test_exhausted_needs_every_set_limit(
    max_attempts: int, duration: int, attempts: int, elapsed: int, expected: bool
) -> None:
    config = QueueConfig(
        name="q", max_attempts=max_attempts, max_retry_duration=timedelta(seconds=duration)
    )
    assert config.exhausted(attempts, timedelta(seconds=elapsed)) is expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"max_dispatches_per_second": 0},
            "CLOUDTASK['QUEUES']['q']['max_dispatches_per_second'] must be above 0 and at most "
            "500 (Cloud Tasks' range), not 0.",
        ),
        (
            {"max_dispatches_per_second": 501},
            "CLOUDTASK['QUEUES']['q']['max_dispatches_per_second'] must be above 0 and at most "
            "500 (Cloud Tasks' range), not 501.",
        ),
        (
            {"max_concurrent_dispatches": 5001},
            "CLOUDTASK['QUEUES']['q']['max_concurrent_dispatches'] must be between 1 and 5000 "
            "(Cloud Tasks' range), not 5001.",
        ),
        (
            {"max_concurrent_dispatches": 1.5},
            "CLOUDTASK['QUEUES']['q']['max_concurrent_dispatches'] must be an integer, not 1.5.",
        ),
        (
            {"max_attempts": 0},
            "CLOUDTASK['QUEUES']['q']['max_attempts'] must be -1 (unlimited) or at least 1, not 0.",
        ),
        (
            {"max_attempts": True},
            "CLOUDTASK['QUEUES']['q']['max_attempts'] must be an integer, not True.",
        ),
        (
            {"max_doublings": -1},
            "CLOUDTASK['QUEUES']['q']['max_doublings'] must be 0 or more, not -1.",
        ),
        (
            {"min_backoff": -1},
            "CLOUDTASK['QUEUES']['q']['min_backoff'] must not be negative, not -1.",
        ),
        (
            {"min_backoff": "10s"},
            "CLOUDTASK['QUEUES']['q']['min_backoff'] must be a number of seconds or a "
            "datetime.timedelta, not str.",
        ),
        (
            {"min_backoff": 10, "max_backoff": 5},
            "CLOUDTASK['QUEUES']['q']['max_backoff'] (5 s) must not be shorter than "
            "min_backoff (10 s).",
        ),
    ],
)
def test_bad_limits_are_refused_with_the_reason(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        queues.parse("q", options)
    assert str(excinfo.value) == message
    assert ids(QUEUES={"q": options}) == [("cloudtask.E033", message)]


def test_check_unknown_option() -> None:
    [(check_id, message)] = ids(QUEUES={"q": {"max_attempt": 3, "rate": 1}})
    assert check_id == "cloudtask.E032"
    assert message == "CLOUDTASK['QUEUES']['q'] has unknown option(s) 'max_attempt', 'rate'."


def test_check_queues_not_a_dict() -> None:
    assert ids(QUEUES=["emails"]) == [
        (
            "cloudtask.E030",
            "CLOUDTASK['QUEUES'] must be a dict of queue names to option dicts, not list.",
        )
    ]


def test_check_bad_queue_name_and_options_not_a_dict() -> None:
    assert ids(QUEUES={"bad name": {}, "ok": 3}) == [
        (
            "cloudtask.E031",
            "The queue name 'bad name' in CLOUDTASK['QUEUES'] is not a Cloud Tasks queue id "
            "(letters, digits and hyphens, 1 to 100 characters).",
        ),
        (
            "cloudtask.E033",
            "CLOUDTASK['QUEUES']['ok'] must be a dict of options such as {'max_attempts': 5}, "
            "not int.",
        ),
    ]


def test_check_dedup_window() -> None:
    assert ids(LOCAL_DEDUP_WINDOW=-5) == [
        (
            "cloudtask.E034",
            "CLOUDTASK['LOCAL_DEDUP_WINDOW'] must not be negative, not -5 seconds.",
        )
    ]
    assert ids(LOCAL_DEDUP_WINDOW=timedelta(minutes=5), QUEUES={"q": {"max_attempts": 5}}) == []


@pytest.mark.django_db  # model checks ask SQLite whether it supports JSONField
def test_manage_py_check_reports_bad_queue_config() -> None:
    settings = {"BACKEND": conf.LOCAL_BACKEND, "QUEUES": {"q": {"max_attempts": -2}}}
    with override_settings(CLOUDTASK=settings), pytest.raises(SystemCheckError) as excinfo:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "cloudtask.E033" in str(excinfo.value)
    assert "must be -1 (unlimited) or at least 1, not -2." in str(excinfo.value)
