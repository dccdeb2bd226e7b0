"""``manage.py cloudtask_worker``: options, --burst exit status and the summary line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from cloudtask import conf
from cloudtask.models import LocalTask
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def endpoint(static_url: None, live_server: Any) -> Iterator[str]:
    url = live_server.url + "/_tasks/"
    settings = {
        "BACKEND": conf.LOCAL_BACKEND,
        "URL": url,
        "QUEUES": {"default": {"max_attempts": 2, "min_backoff": 0}},
    }
    with override_settings(CLOUDTASK=settings):
        yield url


def run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("cloudtask_worker", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_burst_drains_and_exits_zero(endpoint: str) -> None:
    handles = [tasks.add(a=n, b=1).delay() for n in range(5)]
    code, output = run("--burst", "--concurrency", "2")
    lines = output.splitlines()
    assert code == 0
    assert lines[0].startswith("cloudtask_worker mode=burst queues=* pid=")
    assert len([line for line in lines if "outcome=succeeded" in line]) == 5
    assert re.fullmatch(
        r"cloudtask_worker dispatched=5 succeeded=5 retried=0 failed=0 superseded=0 "
        r"elapsed_s=\d+\.\d\d",
        lines[-1],
    )
    assert sorted(c[1] for c in tasks.calls) == [(n, 1) for n in range(5)]
    assert set(LocalTask.objects.values_list("status", flat=True)) == {"succeeded"}
    assert {h.name for h in handles} == set(LocalTask.objects.values_list("name", flat=True))


def test_burst_exits_one_when_a_task_failed(endpoint: str) -> None:
    tasks.fails_with_value_error().delay()
    tasks.noop().delay()
    code, output = run("--burst")
    assert code == 1
    assert output.splitlines()[-1].startswith(
        "cloudtask_worker dispatched=3 succeeded=1 retried=1 failed=1 superseded=0 "
    )
    failed = LocalTask.objects.get(task="tests.tasks.fails_with_value_error")
    assert (failed.status, failed.dispatch_count, failed.last_response_status) == (
        "failed",
        2,
        500,
    )


def test_burst_exits_one_while_a_retry_is_pending(endpoint: str) -> None:
    settings = {"BACKEND": conf.LOCAL_BACKEND, "URL": endpoint, "QUEUES": {}}
    with override_settings(CLOUDTASK={**settings, "QUEUES": {"default": {"min_backoff": 60}}}):
        tasks.fails_with_value_error().delay()
        code, output = run("--burst", "-v", "0")
    assert code == 1
    assert output.splitlines() == [
        output.splitlines()[0],
    ]
    assert output.startswith("cloudtask_worker dispatched=1 succeeded=0 retried=1 failed=0")


def test_queue_option_limits_what_is_delivered(endpoint: str) -> None:
    tasks.noop().delay()
    tasks.send_email(to="x@example.com").delay()
    code, output = run("--burst", "--queue", "emails")
    assert code == 0
    assert "queues=emails " in output
    assert [c[0] for c in tasks.calls] == ["send_email"]
    assert LocalTask.objects.get(queue="default").status == "queued"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "argument --concurrency: invalid _positive_int value: '0'"),
        (["--poll-interval", "-1"], "argument --poll-interval: invalid _positive_float value"),
        (
            ["--queue", "bad name"],
            "The --queue option must be a Cloud Tasks queue id (letters, digits and hyphens, "
            "1 to 100 characters), not 'bad name'.",
        ),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command("cloudtask_worker", "--burst", *args, stdout=StringIO())
    assert message in str(excinfo.value)


def test_bad_queue_config_is_refused_before_starting() -> None:
    settings = {"BACKEND": conf.LOCAL_BACKEND, "QUEUES": {"q": {"max_attempts": 0}}}
    with override_settings(CLOUDTASK=settings), pytest.raises(CommandError) as excinfo:
        call_command("cloudtask_worker", "--burst", stdout=StringIO())
    assert str(excinfo.value) == (
        "CLOUDTASK['QUEUES']['q']['max_attempts'] must be -1 (unlimited) or at least 1, not 0."
    )
