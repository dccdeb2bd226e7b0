"""Periodic tasks on Cloud Scheduler: sync, list, pause, resume and run, through the real client.

The jobs API is tests/support/scheduler.py's in-process Cloud Scheduler (Google offers no
emulator), served over gRPC to the official ``google-cloud-scheduler`` client; its module
docstring lists the Cloud Scheduler facts it stands on. Runs reach the real endpoint of
live_server over HTTP, signed and with real RSA-signed OIDC tokens where required.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from django.test import override_settings
from google.cloud import scheduler_v1

from cloudtask import signing
from cloudtask.exceptions import ManagementError, ScheduleNotFound
from cloudtask.models import TaskResult
from cloudtask.schedules import cloud
from cloudtask.schedules.manage import (
    list_schedules,
    pause_schedule,
    resume_schedule,
    run_schedule,
    sync_schedules,
)
from tests import tasks
from tests.support.helpers import command_exit, run_command
from tests.support.oidc import SERVICE_ACCOUNT, CertsServer, Key, make_key, sign
from tests.support.scheduler import PARENT, FakeScheduler

NIGHTLY = {"task": "tests.tasks.periodic_report", "cron": "0 3 * * *", "kwargs": {"full": True}}
WEEKLY = {
    "task": "tests.tasks.periodic_report",
    "cron": "0 12 * * MON",
    "time_zone": "Europe/Zurich",
    "kwargs": {"label": "weekly"},
    "retry": {"retry_count": 2, "min_backoff": 30},
}

#: The endpoint checks the HMAC signature only (tokens: see the OIDC test below).
HMAC_ONLY = {"REQUIRED": False}


@pytest.fixture(name="configured")
def configured_fixture(scheduler: FakeScheduler) -> Iterator[FakeScheduler]:
    with override_settings(CLOUDTASK=scheduler.settings(SCHEDULES={"nightly": NIGHTLY})):
        yield scheduler


def schedules(fake: FakeScheduler, **entries: Any) -> Any:
    return override_settings(CLOUDTASK=fake.settings(SCHEDULES=entries))


def job(fake: FakeScheduler, name: str) -> scheduler_v1.Job:
    return fake.jobs[f"{PARENT}/jobs/cloudtask-{name}"]


def changes(fake: FakeScheduler) -> list[str]:
    return [name for name, _ in fake.calls if name not in ("ListJobs", "GetJob")]


def test_sync_creates_one_http_job_per_schedule(configured: FakeScheduler) -> None:
    with schedules(configured, nightly=NIGHTLY, weekly=WEEKLY):
        result = sync_schedules()
    assert [(c.name, c.action) for c in result] == [("nightly", "create"), ("weekly", "create")]
    nightly = job(configured, "nightly")
    assert (nightly.schedule, nightly.time_zone) == ("0 3 * * *", "UTC")
    assert nightly.description == "cloudtask: tests.tasks.periodic_report"
    target = nightly.http_target
    assert target.uri == "http://127.0.0.1:9/_tasks/"
    assert target.http_method == scheduler_v1.HttpMethod.POST
    assert target.oidc_token.service_account_email == configured.settings()["SAE"]
    assert target.oidc_token.audience == "http://127.0.0.1:9/_tasks/"
    body = json.loads(target.body)
    assert body["task"] == "tests.tasks.periodic_report"
    assert (body["schedule"], body["kwargs"]) == ("nightly", {"full": True})
    assert "exp" not in body  # sent again at every run: it cannot expire
    assert target.headers[signing.SIGNATURE_HEADER] == signing.sign("/_tasks/", target.body)
    assert target.headers["Content-Type"] == "application/json"
    # The queue's retry policy (Cloud Tasks' defaults: 100 attempts) within Cloud Scheduler's.
    assert nightly.retry_config.retry_count == 5
    assert nightly.retry_config.max_backoff_duration == timedelta(hours=1)
    assert nightly.attempt_deadline == timedelta(minutes=3)
    weekly = job(configured, "weekly")
    assert (weekly.retry_config.retry_count, weekly.retry_config.min_backoff_duration) == (
        2,
        timedelta(seconds=30),
    )
    assert weekly.state == scheduler_v1.Job.State.ENABLED


def test_a_second_sync_changes_nothing(configured: FakeScheduler) -> None:
    sync_schedules()
    configured.calls.clear()
    assert [c.action for c in sync_schedules()] == ["unchanged"]
    assert changes(configured) == []
    run_command("cloudtask_schedules", "sync", "--check")  # exit 0


def test_a_changed_schedule_is_updated_in_place(configured: FakeScheduler) -> None:
    sync_schedules()
    moved = {**NIGHTLY, "cron": "30 4 * * *", "kwargs": {"full": False}}
    with schedules(configured, nightly=moved):
        code, _message = command_exit("cloudtask_schedules", "sync", "--check")
        assert code == 5
        out = run_command("cloudtask_schedules", "sync", "--dry-run")
        assert "update    nightly (schedule, http_target)" in out
        configured.calls.clear()
        sync_schedules()
        [update] = configured.called("UpdateJob")
        assert sorted(update.update_mask.paths) == ["http_target", "schedule"]
        assert job(configured, "nightly").schedule == "30 4 * * *"
        assert json.loads(job(configured, "nightly").http_target.body)["kwargs"] == {"full": False}
        assert [c.action for c in sync_schedules()] == ["unchanged"]


def test_a_new_secret_re_signs_the_bodies(configured: FakeScheduler) -> None:
    sync_schedules()
    with override_settings(
        CLOUDTASK={**configured.settings(SCHEDULES={"nightly": NIGHTLY}), "SECRET": "x" * 40}
    ):
        [change] = sync_schedules(dry_run=True)
    assert (change.action, change.fields) == ("update", ("http_target",))


def test_sync_deletes_only_the_jobs_it_manages(configured: FakeScheduler) -> None:
    with schedules(configured, nightly=NIGHTLY, weekly=WEEKLY):
        sync_schedules()
    foreign = scheduler_v1.Job(
        name=f"{PARENT}/jobs/billing-export",
        schedule="0 1 * * *",
        http_target=scheduler_v1.HttpTarget(uri="https://billing.example.com/export"),
    )
    lookalike = scheduler_v1.Job(
        name=f"{PARENT}/jobs/cloudtask-handmade",
        description="made by hand",
        schedule="0 1 * * *",
        http_target=scheduler_v1.HttpTarget(uri="https://example.com/"),
    )
    client = scheduler_v1.CloudSchedulerClient(
        transport=scheduler_v1.services.cloud_scheduler.transports.CloudSchedulerGrpcTransport(
            channel=grpc.insecure_channel(configured.host)
        )
    )
    client.create_job(parent=PARENT, job=foreign)
    client.create_job(parent=PARENT, job=lookalike)
    configured.calls.clear()
    result = sync_schedules()  # weekly is no longer declared
    assert [(c.name, c.action) for c in result] == [("nightly", "unchanged"), ("weekly", "delete")]
    assert [r.name for r in configured.called("DeleteJob")] == [f"{PARENT}/jobs/cloudtask-weekly"]
    assert sorted(configured.jobs) == [
        f"{PARENT}/jobs/billing-export",
        f"{PARENT}/jobs/cloudtask-handmade",
        f"{PARENT}/jobs/cloudtask-nightly",
    ]
    assert [s.name for s in list_schedules()] == ["nightly"]


def test_declared_pause_is_synced_and_a_pause_by_hand_survives_sync(
    configured: FakeScheduler,
) -> None:
    with schedules(configured, nightly={**NIGHTLY, "paused": True}):
        sync_schedules()
        assert job(configured, "nightly").state == scheduler_v1.Job.State.PAUSED
    resume_schedule("nightly")
    assert job(configured, "nightly").state == scheduler_v1.Job.State.ENABLED
    pause_schedule("nightly")
    assert [c.action for c in sync_schedules()] == ["unchanged"]
    assert job(configured, "nightly").state == scheduler_v1.Job.State.PAUSED
    [info] = list_schedules()
    assert (info.state, info.next_run) == ("paused", None)
    run_command("cloudtask_schedules", "resume", "nightly")
    [info] = list_schedules()
    assert info.state == "enabled"
    assert info.next_run is not None


@pytest.mark.django_db(transaction=True)
def test_a_run_reaches_the_endpoint_and_runs_the_task_once(
    scheduler: FakeScheduler, task_endpoint: str
) -> None:
    settings = scheduler.settings(
        URL=task_endpoint, SCHEDULES={"nightly": NIGHTLY}, RESULTS=True, OIDC=HMAC_ONLY
    )
    with override_settings(CLOUDTASK=settings):
        sync_schedules()
        ran = json.loads(run_command("cloudtask_schedules", "run", "nightly", "--json"))
        assert ran["run"] == f"{PARENT}/jobs/cloudtask-nightly"
        assert scheduler.runs == [(ran["run"], 200)]
        [(name, (call_id, label, full))] = tasks.calls
        assert (name, label, full) == ("periodic_report", "daily", True)
        assert call_id.startswith("nightly.")
        # Scheduled runs: each its own call, named after its scheduled time; the retry of a
        # run (the same scheduled time again) is the same call.
        due = datetime(2026, 12, 3, 3, 0, tzinfo=timezone.utc)
        assert scheduler.fire(ran["run"], due) == 200
        assert scheduler.fire(ran["run"], due + timedelta(days=1)) == 200
        ids = [args[0] for _, args in tasks.calls]
        assert ids[1:] == ["nightly.20261203T030000Z", "nightly.20261204T030000Z"]
        results = TaskResult.objects.filter(call_id__startswith="nightly.")
        assert sorted(results.values_list("status", flat=True)) == ["succeeded"] * 3
        [info] = list_schedules()
        assert (info.last_status, info.state) == ("ok", "enabled")
        assert info.last_run is not None


@pytest.mark.django_db(transaction=True)
def test_a_tampered_job_body_is_refused_and_nothing_runs(
    scheduler: FakeScheduler, task_endpoint: str
) -> None:
    with override_settings(
        CLOUDTASK=scheduler.settings(
            URL=task_endpoint, SCHEDULES={"nightly": NIGHTLY}, OIDC=HMAC_ONLY
        )
    ):
        sync_schedules()
        target = job(scheduler, "nightly").http_target
        body = json.loads(target.body)
        body["kwargs"] = {"label": "forged"}
        target.body = json.dumps(body).encode()
        assert scheduler.fire(job(scheduler, "nightly").name, datetime.now(timezone.utc)) == 403
        # A body of one schedule sent with another task's name is refused alike.
        body["task"] = "tests.tasks.noop"
        target.body = json.dumps(body).encode()
        assert scheduler.fire(job(scheduler, "nightly").name, datetime.now(timezone.utc)) == 403
    assert tasks.calls == []


@pytest.fixture(name="key")
def key_fixture() -> Key:
    return make_key("scheduler-key")


@pytest.mark.django_db(transaction=True)
def test_with_oidc_required_a_run_carries_a_token_the_endpoint_verifies(
    scheduler: FakeScheduler, task_endpoint: str, key: Key
) -> None:
    with CertsServer(keys=[key]) as certs:
        settings = scheduler.settings(
            URL=task_endpoint,
            SAE=SERVICE_ACCOUNT,
            SCHEDULES={"nightly": NIGHTLY},
            OIDC={"CERTS_URL": certs.url, "AUDIENCE": task_endpoint},
        )
        with override_settings(CLOUDTASK=settings):
            sync_schedules()
            name = job(scheduler, "nightly").name
            assert scheduler.fire(name, datetime.now(timezone.utc)) == 403  # no token minted
            scheduler.mint = lambda audience, email: sign(key, aud=audience, email=email)
            assert scheduler.fire(name, datetime.now(timezone.utc)) == 200
            scheduler.mint = lambda audience, email: sign(key, aud="https://elsewhere/")
            assert scheduler.fire(name, datetime.now(timezone.utc)) == 403
    assert len(tasks.calls) == 1


def test_a_project_without_the_api_gets_a_clear_error_and_no_change(
    configured: FakeScheduler,
) -> None:
    configured.disable_api()
    code, message = command_exit("cloudtask_schedules", "sync")
    assert code == 1
    assert "cloudscheduler.googleapis.com" in message
    assert "Nothing was changed" in message
    assert changes(configured) == []


def test_a_refused_permission_is_named(configured: FakeScheduler) -> None:
    configured.fail_next("CreateJob", grpc.StatusCode.PERMISSION_DENIED, "The caller lacks it.")
    with pytest.raises(ManagementError) as caught:
        sync_schedules()
    text = str(caught.value)
    assert "cloudscheduler.jobs.create" in text
    assert f"iam.serviceAccounts.actAs on {configured.settings()['SAE']}" in text
    assert configured.jobs == {}


def test_management_of_an_unknown_or_unsynced_schedule(configured: FakeScheduler) -> None:
    with pytest.raises(ScheduleNotFound, match="No schedule named 'weekly'"):
        run_schedule("weekly")
    # Declared, never synced: the job is missing.
    code, message = command_exit("cloudtask_schedules", "pause", "nightly")
    assert code == 3
    assert "cloudtask_schedules sync" in message
    [info] = list_schedules()
    assert info.state == "not-synced"


def test_list_shows_state_next_run_and_undeclared_jobs(configured: FakeScheduler) -> None:
    with schedules(configured, nightly=NIGHTLY, weekly=WEEKLY):
        sync_schedules()
    table = run_command("cloudtask_schedules", "list")
    assert table.splitlines()[0].split() == list(
        ("NAME", "TASK", "CRON", "TIME_ZONE", "STATE", "NEXT_RUN", "LAST_RUN", "LAST_STATUS")
    )
    listed = json.loads(run_command("cloudtask_schedules", "list", "--json"))
    assert [(s["name"], s["state"]) for s in listed] == [
        ("nightly", "enabled"),
        ("weekly", "undeclared"),
    ]
    assert listed[0]["next_run"].endswith("T03:00:00+00:00")
    assert listed[0]["job"] == f"{PARENT}/jobs/cloudtask-nightly"


def test_jobs_of_a_location_other_than_the_queues(scheduler: FakeScheduler) -> None:
    settings = scheduler.settings(SCHEDULES={"nightly": NIGHTLY}, SCHEDULER_LOCATION="us-central1")
    with override_settings(CLOUDTASK=settings):
        sync_schedules()
    assert list(scheduler.jobs) == [
        "projects/test-project/locations/us-central1/jobs/cloudtask-nightly"
    ]
    assert cloud.job_name("x", "p") == "p/jobs/cloudtask-x"


@pytest.mark.django_db(transaction=True)
def test_a_job_body_is_accepted_while_signature_max_age_is_set(
    scheduler: FakeScheduler, task_endpoint: str
) -> None:
    settings = scheduler.settings(
        URL=task_endpoint, SCHEDULES={"nightly": NIGHTLY}, OIDC=HMAC_ONLY, SIGNATURE_MAX_AGE=60
    )
    with override_settings(CLOUDTASK=settings):
        sync_schedules()
        name = job(scheduler, "nightly").name
        assert "exp" not in json.loads(job(scheduler, "nightly").http_target.body)
        assert scheduler.fire(name, datetime.now(timezone.utc)) == 200
    assert len(tasks.calls) == 1
