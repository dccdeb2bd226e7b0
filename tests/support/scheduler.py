"""An in-process Cloud Scheduler on 127.0.0.1, on the real client's proto definitions.

Google offers no Cloud Scheduler emulator. This gRPC server speaks the API the official
``google-cloud-scheduler`` client speaks (its proto-plus types (de)serialize every request
and answer), keeps jobs in memory and, on ``RunJob`` (or :meth:`FakeScheduler.fire`, a
scheduled run), sends the job's HTTP request as Cloud Scheduler does. Each behaviour stands
on a documented Cloud Scheduler fact, named where it is implemented:

- Jobs are named ``projects/P/locations/L/jobs/ID``; CreateJob on a taken name answers
  ALREADY_EXISTS; calls on a missing job answer NOT_FOUND.
- A new job is ENABLED; PauseJob/ResumeJob set PAUSED/ENABLED; ``schedule_time`` is the
  next scheduled run (computed here with croniter).
- Unset retry options read as Cloud Scheduler's defaults (no retry, 5 s to 1 h backoff, 5
  doublings) and an unset attempt deadline as 3 minutes.
- UpdateJob changes only the fields named in ``update_mask``.
- A run is an HTTP request to ``http_target.uri`` with the job's method, headers and body,
  plus ``User-Agent: Google-Cloud-Scheduler``, ``X-CloudScheduler: true``,
  ``X-CloudScheduler-JobName`` and ``X-CloudScheduler-ScheduleTime`` (RFC 3339, UTC), and an
  ``Authorization: Bearer`` OIDC token for ``oidc_token`` (minted here by ``mint``, with the
  job's audience, or its URI when none is set). A 2xx answer is a success; the job records
  ``last_attempt_time`` and ``status``.
- A project without the API enabled answers PERMISSION_DENIED "Cloud Scheduler API has not
  been used in project ... before or it is disabled" (:meth:`FakeScheduler.disable_api`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
import requests
from croniter import croniter
from google.cloud import scheduler_v1
from google.protobuf import empty_pb2

PROJECT = "test-project"
LOCATION = "europe-west6"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SERVICE = "google.cloud.scheduler.v1.CloudScheduler"

#: (request type, response type) of every method the fake serves.
METHODS: dict[str, tuple[Any, Any]] = {
    "ListJobs": (scheduler_v1.ListJobsRequest, scheduler_v1.ListJobsResponse),
    "GetJob": (scheduler_v1.GetJobRequest, scheduler_v1.Job),
    "CreateJob": (scheduler_v1.CreateJobRequest, scheduler_v1.Job),
    "UpdateJob": (scheduler_v1.UpdateJobRequest, scheduler_v1.Job),
    "DeleteJob": (scheduler_v1.DeleteJobRequest, None),
    "PauseJob": (scheduler_v1.PauseJobRequest, scheduler_v1.Job),
    "ResumeJob": (scheduler_v1.ResumeJobRequest, scheduler_v1.Job),
    "RunJob": (scheduler_v1.RunJobRequest, scheduler_v1.Job),
}


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class FakeScheduler:
    """Cloud Scheduler's jobs API in memory, served over gRPC on 127.0.0.1."""

    def __init__(self, mint: Callable[[str, str], str] | None = None) -> None:
        self.jobs: dict[str, scheduler_v1.Job] = {}
        #: Every call, as (method name, request), in arrival order.
        self.calls: list[tuple[str, Any]] = []
        #: Every HTTP run: (job name, status code).
        self.runs: list[tuple[str, int]] = []
        self.faults: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.mint = mint
        self.api_enabled = True
        self._lock = threading.RLock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._handler(name),
                request_deserializer=request_type.deserialize,
                response_serializer=(
                    response_type.serialize
                    if response_type is not None
                    else empty_pb2.Empty.SerializeToString
                ),
            )
            for name, (request_type, response_type) in METHODS.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.host = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    # -- serving -------------------------------------------------------------------------

    def start(self) -> FakeScheduler:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=0).wait(2)

    def reset(self) -> None:
        with self._lock:
            self.jobs.clear()
            self.calls.clear()
            self.runs.clear()
            self.faults.clear()
            self.api_enabled = True
            self.mint = None

    def _handler(self, name: str) -> Callable[[Any, Any], Any]:
        method = getattr(self, f"_{name}")

        def handle(request: Any, context: Any) -> Any:
            with self._lock:
                self.calls.append((name, request))
                queued = self.faults.get(name)
                fault = queued.pop(0) if queued else None
            if fault is not None:
                context.abort(*fault)
            if not self.api_enabled:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Cloud Scheduler API has not been used in project {PROJECT} before or it "
                    "is disabled. Enable it by visiting https://console.developers.google.com/"
                    f"apis/api/cloudscheduler.googleapis.com/overview?project={PROJECT}",
                )
            try:
                answer = method(request)
            except Abort as exc:
                context.abort(exc.code, exc.details)
            return empty_pb2.Empty() if answer is None else answer

        return handle

    def fail_next(self, method: str, code: grpc.StatusCode, details: str) -> None:
        """Answer the next call of ``method`` with ``code``."""
        with self._lock:
            self.faults.setdefault(method, []).append((code, details))

    def disable_api(self) -> None:
        """Answer every call as a project without the Cloud Scheduler API enabled."""
        self.api_enabled = False

    # -- the API -------------------------------------------------------------------------

    def _job(self, name: str) -> scheduler_v1.Job:
        with self._lock:
            job = self.jobs.get(name)
        if job is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Job not found: {name}.")
        return job

    def _ListJobs(self, request: Any) -> Any:
        with self._lock:
            jobs = [
                job
                for name, job in sorted(self.jobs.items())
                if name.startswith(request.parent + "/jobs/")
            ]
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = jobs[start : start + size]
        token = str(start + size) if start + size < len(jobs) else ""
        return scheduler_v1.ListJobsResponse(jobs=page, next_page_token=token)

    def _GetJob(self, request: Any) -> Any:
        return self._job(request.name)

    def _CreateJob(self, request: Any) -> Any:
        job = scheduler_v1.Job(request.job)
        if not job.name.startswith(request.parent + "/jobs/"):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "Job name must be in its parent.")
        with self._lock:
            if job.name in self.jobs:
                raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"Job {job.name} already exists.")
            _fill_defaults(job)
            job.state = scheduler_v1.Job.State.ENABLED
            job.user_update_time = datetime.now(timezone.utc)
            _schedule_next(job)
            self.jobs[job.name] = job
            return job

    def _UpdateJob(self, request: Any) -> Any:
        with self._lock:
            job = self._job(request.job.name)
            for path in request.update_mask.paths:
                setattr(job, path, getattr(request.job, path))
            _fill_defaults(job)
            job.user_update_time = datetime.now(timezone.utc)
            _schedule_next(job)
            return job

    def _DeleteJob(self, request: Any) -> None:
        with self._lock:
            self._job(request.name)
            del self.jobs[request.name]

    def _PauseJob(self, request: Any) -> Any:
        with self._lock:
            job = self._job(request.name)
            job.state = scheduler_v1.Job.State.PAUSED
            return job

    def _ResumeJob(self, request: Any) -> Any:
        with self._lock:
            job = self._job(request.name)
            job.state = scheduler_v1.Job.State.ENABLED
            _schedule_next(job)
            return job

    def _RunJob(self, request: Any) -> Any:
        job = self._job(request.name)
        self.fire(job.name, datetime.now(timezone.utc))
        return self._job(request.name)

    # -- runs ----------------------------------------------------------------------------

    def fire(self, name: str, schedule_time: datetime) -> int:
        """Send job ``name``'s request as its run due at ``schedule_time``; return the status."""
        job = self._job(name)
        target = job.http_target
        headers = dict(target.headers)
        headers.update(
            {
                "User-Agent": "Google-Cloud-Scheduler",
                "X-CloudScheduler": "true",
                "X-CloudScheduler-JobName": name.rsplit("/", 1)[-1],
                "X-CloudScheduler-ScheduleTime": schedule_time.astimezone(timezone.utc)
                .isoformat()
                .replace("+00:00", "Z"),
            }
        )
        if target.oidc_token.service_account_email and self.mint is not None:
            audience = target.oidc_token.audience or target.uri
            token = self.mint(audience, target.oidc_token.service_account_email)
            headers["Authorization"] = f"Bearer {token}"
        method = scheduler_v1.HttpMethod(target.http_method).name
        try:
            answer = requests.request(
                method, target.uri, headers=headers, data=target.body or None, timeout=30
            )
            status = answer.status_code
        except requests.RequestException:
            status = 0
        with self._lock:
            job.last_attempt_time = datetime.now(timezone.utc)
            ok = 200 <= status < 300
            job.status = {"code": 0} if ok else {"code": 2, "message": f"HTTP {status}"}
            self.runs.append((name, status))
        return status

    # -- for tests -----------------------------------------------------------------------

    def called(self, method: str) -> list[Any]:
        with self._lock:
            return [request for name, request in self.calls if name == method]

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A CLOUDTASK dict whose schedules go to this fake (and tasks to nowhere)."""
        return {
            "BACKEND": "cloudtask.backends.cloudtasks.CloudTasksBackend",
            "PROJECT": PROJECT,
            "LOCATION": LOCATION,
            "URL": "http://127.0.0.1:9/_tasks/",
            "SAE": "scheduler@test-project.iam.gserviceaccount.com",
            "SCHEDULER_EMULATOR_HOST": self.host,
            **extra,
        }


def _fill_defaults(job: scheduler_v1.Job) -> None:
    retry = job.retry_config
    if not retry.min_backoff_duration:
        retry.min_backoff_duration = timedelta(seconds=5)
    if not retry.max_backoff_duration:
        retry.max_backoff_duration = timedelta(hours=1)
    if not retry.max_doublings:
        retry.max_doublings = 5
    if not job.attempt_deadline:
        job.attempt_deadline = timedelta(minutes=3)


def _schedule_next(job: scheduler_v1.Job) -> None:
    zone = ZoneInfo(job.time_zone or "UTC")
    now = datetime.now(zone)
    job.schedule_time = croniter(job.schedule, now).get_next(datetime).astimezone(timezone.utc)


@pytest.fixture(scope="session", name="scheduler_server")
def scheduler_server_fixture() -> Iterator[FakeScheduler]:
    fake = FakeScheduler().start()
    yield fake
    fake.stop()


@pytest.fixture(name="scheduler")
def scheduler_fixture(scheduler_server: FakeScheduler) -> Iterator[FakeScheduler]:
    """The session's fake Cloud Scheduler, emptied for this test."""
    scheduler_server.reset()
    yield scheduler_server
    scheduler_server.reset()
