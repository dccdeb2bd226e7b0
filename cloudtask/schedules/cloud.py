"""Periodic tasks on Cloud Scheduler: one HTTP job per schedule, synced from the declarations.

A job targets the task endpoint (``CLOUDTASK["URL"]``) with a POST of a signed body and an
OIDC token for ``SAE``, like a Cloud Tasks task of the same call; its body names the
schedule, and the endpoint gives each run its own call id from the scheduled time Cloud
Scheduler sends (``X-CloudScheduler-ScheduleTime``).

Only jobs cloudtask manages are ever changed: their id starts with :data:`JOB_PREFIX` and their
description with :data:`MARK`. Any other job in the location is left alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .. import conf, queues
from ..backends.cloudtasks.errors import code as status_code
from ..backends.cloudtasks.errors import describe
from ..backends.loading import get_backend
from ..exceptions import ManagementError, ScheduleNotFound
from ..message import build_message
from ..registry import registry
from . import client
from .declare import Schedule, retry_options, schedules
from .records import Action, ScheduleChange, ScheduleInfo

#: The id of every job cloudtask manages starts with this; the schedule name follows.
JOB_PREFIX = "cloudtask-"
#: ... and its description with this.
MARK = "cloudtask:"
#: How long Cloud Scheduler waits for a run when the task has no timeout (its default).
DEFAULT_ATTEMPT_DEADLINE = timedelta(minutes=3)
#: The time limit of one Cloud Scheduler call, in seconds.
CALL_TIMEOUT = 30.0
#: Headers Cloud Scheduler sets itself on every request (ignored when comparing jobs).
SERVICE_HEADERS = frozenset({"user-agent", "content-length", "host"})
#: The permission each call needs (roles/cloudscheduler.admin has them all).
PERMISSIONS = {
    "ListJobs": "cloudscheduler.jobs.list",
    "GetJob": "cloudscheduler.jobs.get",
    "CreateJob": "cloudscheduler.jobs.create",
    "UpdateJob": "cloudscheduler.jobs.update",
    "DeleteJob": "cloudscheduler.jobs.delete",
    "PauseJob": "cloudscheduler.jobs.pause",
    "ResumeJob": "cloudscheduler.jobs.resume",
    "RunJob": "cloudscheduler.jobs.run",
}
API = "cloudscheduler.googleapis.com"


def job_name(name: str, parent: str | None = None) -> str:
    """Return the full name of schedule ``name``'s job."""
    return f"{parent or client.parent()}/jobs/{JOB_PREFIX}{name}"


def is_managed(job: Any) -> bool:
    """Return whether ``job`` is one cloudtask made (its id and description say so)."""
    job_id = job.name.rsplit("/", 1)[-1]
    return bool(job_id.startswith(JOB_PREFIX) and job.description.startswith(MARK))


def description(schedule: Schedule) -> str:
    """Return the job description: the mark, the task, and the schedule's own text."""
    text = f"{MARK} {schedule.task}"
    return f"{text}: {schedule.description}" if schedule.description else text


def desired_job(schedule: Schedule, parent: str) -> Any:
    """Return the Cloud Scheduler job that runs ``schedule``."""
    from google.cloud import scheduler_v1

    task = registry.get(schedule.task)
    call = task(**schedule.kwargs)
    call.consume()  # not pushed: its message becomes the job's request
    message = build_message(
        call, get_backend(), eta=None, task_id=None, call_id=schedule.name, schedule=schedule.name
    )
    target = scheduler_v1.HttpTarget(
        uri=message.url,
        http_method=getattr(scheduler_v1.HttpMethod, message.method),
        headers=message.headers,
        body=message.body,
    )
    if message.oidc_token is not None:
        target.oidc_token = scheduler_v1.OidcToken(**message.oidc_token)
    elif message.oauth_token is not None:
        target.oauth_token = scheduler_v1.OAuthToken(**message.oauth_token)
    return scheduler_v1.Job(
        name=job_name(schedule.name, parent),
        description=description(schedule),
        schedule=schedule.cron,
        time_zone=schedule.time_zone,
        http_target=target,
        retry_config=retry_config(schedule),
        # The task's dispatch deadline, as for its Cloud Tasks tasks; else Cloud Scheduler's.
        attempt_deadline=message.timeout or DEFAULT_ATTEMPT_DEADLINE,
    )


def retry_config(schedule: Schedule) -> Any:
    """Return the job's retry policy: the schedule's ``retry``, else its task's queue's.

    From the queue: ``max_attempts`` - 1 retries (at most 5, Cloud Scheduler's limit; 5 for
    unlimited), and its backoff and retry duration.
    """
    from google.cloud import scheduler_v1

    task = registry.get(schedule.task)
    queue = queues.get(task.queue or conf.get("QUEUE"))
    attempts = queue.max_attempts
    given = retry_options(schedule.retry)
    return scheduler_v1.RetryConfig(
        retry_count=given.get("retry_count", 5 if attempts == -1 else min(attempts - 1, 5)),
        max_retry_duration=given.get("max_retry_duration", queue.max_retry_duration),
        min_backoff_duration=given.get("min_backoff", queue.min_backoff),
        max_backoff_duration=given.get("max_backoff", queue.max_backoff),
        max_doublings=given.get("max_doublings", queue.max_doublings),
    )


def differences(want: Any, have: Any) -> tuple[str, ...]:
    """Return the job fields in which ``have`` differs from ``want``."""
    found = [
        key
        for key in ("description", "schedule", "time_zone", "retry_config", "attempt_deadline")
        if getattr(want, key) != getattr(have, key)
    ]
    if _target(want.http_target) != _target(have.http_target):
        found.append("http_target")
    return tuple(found)


def _target(target: Any) -> tuple[Any, ...]:
    headers = {
        key.lower(): value
        for key, value in target.headers.items()
        if key.lower() not in SERVICE_HEADERS
    }
    return (
        target.uri,
        target.http_method,
        target.body,
        sorted(headers.items()),
        target.oidc_token.service_account_email,
        target.oidc_token.audience,
        target.oauth_token.service_account_email,
        target.oauth_token.scope,
    )


def _call(rpc: str, subject: str, *, sae: str = "", **request: Any) -> Any:
    """Make one Cloud Scheduler call; errors become cloudtask's, naming what is missing."""
    from google.api_core.exceptions import GoogleAPICallError

    method = getattr(client.client(), _snake(rpc))
    try:
        return method(request=request, timeout=CALL_TIMEOUT)
    except GoogleAPICallError as exc:
        raise translate(exc, rpc, subject, sae) from exc


def _snake(rpc: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in rpc).lstrip("_")


def translate(exc: BaseException, rpc: str, subject: str, sae: str = "") -> Exception:
    """Return the cloudtask error for a failed Cloud Scheduler call."""
    status = status_code(exc)
    text = str(getattr(exc, "message", "") or exc)
    if status == "NOT_FOUND" and "/jobs/" in subject:
        name = subject.rsplit("/", 1)[-1].removeprefix(JOB_PREFIX)
        return ScheduleNotFound(
            name,
            f"Cloud Scheduler has no job {subject}: run manage.py cloudtask_schedules sync "
            "to create the jobs of the declared schedules.",
        )
    if status in ("PERMISSION_DENIED", "UNAUTHENTICATED") and _api_disabled(text):
        return ManagementError(
            f"The Cloud Scheduler API ({API}) is not enabled in the project of {subject}: "
            f"enable it (gcloud services enable {API}) and run the command again. Nothing "
            "was changed."
        )
    if status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        act_as = (
            f" and iam.serviceAccounts.actAs on {sae} (roles/iam.serviceAccountUser), for "
            "the OIDC token of its jobs"
            if sae and rpc in ("CreateJob", "UpdateJob")
            else ""
        )
        return ManagementError(
            f"Cloud Scheduler refused {rpc} on {subject}: {describe(exc)}. The account "
            f"needs {PERMISSIONS[rpc]} (roles/cloudscheduler.admin){act_as}."
        )
    return ManagementError(f"Cloud Scheduler {rpc} on {subject} failed: {describe(exc)}")


def _api_disabled(text: str) -> bool:
    lowered = text.lower()
    return (
        "service_disabled" in lowered
        or "has not been used" in lowered
        or ("api" in lowered and "disabled" in lowered)
    )


def managed_jobs(parent: str) -> dict[str, Any]:
    """Return the jobs cloudtask manages in ``parent``, by schedule name."""
    found = {}
    page = _call("ListJobs", parent, parent=parent, page_size=500)
    for job in page:  # the client's pager asks for further pages itself
        if is_managed(job):
            found[job.name.rsplit("/", 1)[-1].removeprefix(JOB_PREFIX)] = job
    return found


class Plan:
    """What ``sync`` does: the changes, and the jobs to write for them."""

    def __init__(self, parent: str) -> None:
        self.parent = parent
        self.changes: list[ScheduleChange] = []
        self.jobs: dict[str, Any] = {}
        self.pause: set[str] = set()


def plan() -> Plan:
    """Compare the declared schedules with the managed jobs; change nothing."""
    from google.cloud import scheduler_v1

    parent = client.parent()
    result = Plan(parent)
    existing = managed_jobs(parent)
    for name, schedule in sorted(schedules().items()):
        want = desired_job(schedule, parent)
        have = existing.pop(name, None)
        result.jobs[name] = want
        paused = scheduler_v1.Job.State.PAUSED
        if have is None:
            result.changes.append(ScheduleChange(name, "create", job=want.name))
            if schedule.paused:
                result.pause.add(name)
            continue
        fields = differences(want, have)
        if schedule.paused and have.state != paused:
            fields += ("paused",)
            result.pause.add(name)
        action: Action = "update" if fields else "unchanged"
        result.changes.append(ScheduleChange(name, action, fields, job=have.name))
    for name, job in sorted(existing.items()):
        result.changes.append(ScheduleChange(name, "delete", job=job.name))
    return result


def sync(*, dry_run: bool = False) -> list[ScheduleChange]:
    """Create, update and delete the managed jobs so that they match the declarations."""
    result = plan()
    if dry_run:
        return result.changes
    sae = str(conf.get("SAE") or "")
    for change in result.changes:
        if change.action == "delete":
            _call("DeleteJob", change.job, name=change.job)
            continue
        job = result.jobs[change.name]
        if change.action == "create":
            _call("CreateJob", job.name, sae=sae, parent=result.parent, job=job)
        fields = sorted(set(change.fields) - {"paused"})
        if change.action == "update" and fields:
            _call("UpdateJob", job.name, sae=sae, job=job, update_mask={"paths": fields})
        if change.name in result.pause:
            _call("PauseJob", job.name, name=job.name)
    return result.changes


def list_schedules() -> list[ScheduleInfo]:
    """Return every declared schedule with its job's state, and managed undeclared jobs."""
    parent = client.parent()
    existing = managed_jobs(parent)
    found = []
    for name, schedule in sorted(schedules().items()):
        job = existing.pop(name, None)
        found.append(_info(name, schedule.task, schedule.cron, schedule.time_zone, schedule, job))
    for name, job in sorted(existing.items()):
        task = job.description.removeprefix(MARK).strip().split(":", 1)[0]
        found.append(_info(name, task, job.schedule, job.time_zone, None, job))
    return found


def _info(
    name: str, task: str, cron: str, zone: str, schedule: Schedule | None, job: Any
) -> ScheduleInfo:
    from google.cloud import scheduler_v1

    state: Any = "not-synced" if job is None else "enabled"
    if job is not None and job.state == scheduler_v1.Job.State.PAUSED:
        state = "paused"
    if schedule is None:
        state = "undeclared"
    return ScheduleInfo(
        name=name,
        task=task,
        cron=cron,
        time_zone=zone,
        kwargs=dict(schedule.kwargs) if schedule else {},
        state=state,
        next_run=job.schedule_time if job is not None and state == "enabled" else None,
        last_run=job.last_attempt_time if job is not None and job.last_attempt_time else None,
        last_status=_last_status(job),
        job=job.name if job is not None else "",
        raw=job,
    )


def _last_status(job: Any) -> str:
    if job is None or not job.last_attempt_time:
        return ""
    if not job.status.code:
        return "ok"
    return f"code {job.status.code}: {job.status.message}".strip()


def _existing(name: str) -> str:
    if name not in schedules():
        raise ScheduleNotFound(name)
    return job_name(name)


def pause(name: str) -> None:
    """Pause schedule ``name``'s job (PauseJob)."""
    job = _existing(name)
    _call("PauseJob", job, name=job)


def resume(name: str) -> None:
    """Resume schedule ``name``'s job (ResumeJob): it runs again from its next due time."""
    job = _existing(name)
    _call("ResumeJob", job, name=job)


def run(name: str) -> str:
    """Run schedule ``name``'s job now (RunJob); return the job's name."""
    job = _existing(name)
    _call("RunJob", job, name=job)
    return job
