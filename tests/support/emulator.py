"""gcloud-tasks-emulator, run in-process on 127.0.0.1, plus scripted faults it cannot show.

The emulator package binds every interface; here its queue state, servicer and dispatcher
are served by our own gRPC server bound to 127.0.0.1 on a free port. The servicer records
every CreateTask/CreateQueue request (the client's own proto-plus types, so tests compare
them with ``==``) and can answer the next calls with a gRPC error, for the Cloud Tasks
behaviours the emulator lacks (ALREADY_EXISTS, FAILED_PRECONDITION, UNAVAILABLE,
PERMISSION_DENIED). Everything else is the emulator's own behaviour, including the real
HTTP POST of each task to its URL once its schedule_time has passed.

Test modules import the ``*_fixture`` functions; pytest knows them by their ``name``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from datetime import datetime, timezone
from typing import Any

import grpc
import pytest
from gcloud_tasks_emulator import server as emulator_server
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server
from google.cloud import tasks_v2
from google.protobuf import empty_pb2

PROJECT = "test-project"
LOCATION = "europe-west6"
LOCATION_PATH = f"projects/{PROJECT}/locations/{LOCATION}"
UNREACHABLE_URL = "http://127.0.0.1:9/_tasks/"


def queue_path(queue: str) -> str:
    return f"{LOCATION_PATH}/queues/{queue}"


class ScriptedServicer(emulator_server.Greeter):  # type: ignore[misc]
    """The emulator's servicer, recording requests and failing on demand."""

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.requests: list[tuple[str, Any]] = []
        self.faults: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.latency = 0.0
        #: Names of deleted queues: Cloud Tasks refuses them to CreateQueue for 7 days.
        self.deleted: set[str] = set()
        self._lock = threading.Lock()

    def fail_next(self, method: str, code: grpc.StatusCode, details: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``code`` and ``details``."""
        with self._lock:
            self.faults.setdefault(method, []).extend([(code, details)] * times)

    def _intercept(self, method: str, request: Any, context: Any) -> None:
        if self.latency:
            time.sleep(self.latency)  # a network round trip; releases the GIL like one
        # A copy: the emulator's own handler fills in fields (name, method) in place.
        copy = type(request).deserialize(type(request).serialize(request))
        with self._lock:
            self.requests.append((method, copy))
            fault = self.faults.get(method, []).pop(0) if self.faults.get(method) else None
        if fault is not None:
            context.abort(*fault)

    def CreateTask(self, request: Any, context: Any) -> Any:
        self._intercept("CreateTask", request, context)
        # Fact: Cloud Tasks sets create_time, to the second (the emulator leaves it unset).
        request.task.create_time = datetime.now(timezone.utc).replace(microsecond=0)
        return super().CreateTask(request, context)

    # Management RPCs. Where the emulator's answer differs from Cloud Tasks', the Cloud Tasks
    # behaviour is supplied here, each with the fact it stands on; the rest is the emulator's.

    def _queue(self, name: str, context: Any) -> Any:
        # Fact: every call on a queue that does not exist answers NOT_FOUND (the emulator
        # raises KeyError or ValueError, which gRPC turns into UNKNOWN).
        if name not in self._state.queue_names():
            context.abort(grpc.StatusCode.NOT_FOUND, "Requested entity was not found.")
        return self._state.queue(name)

    def _find_task(self, name: str, context: Any) -> Any:
        queue = name.rsplit("/tasks/", 1)[0]
        self._queue(queue, context)
        for task in self._state.list_tasks(queue):
            if task.name == name:
                return task
        context.abort(grpc.StatusCode.NOT_FOUND, "Requested entity was not found.")

    def CreateQueue(self, request: Any, context: Any) -> Any:
        self._intercept("CreateQueue", request, context)
        name = request.queue.name
        # Fact: CreateQueue of an existing queue answers ALREADY_EXISTS (the emulator returns
        # the existing queue), and a name deleted within 7 days FAILED_PRECONDITION.
        if name in self._state.queue_names():
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "Queue already exists")
        if name in self.deleted:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "The queue cannot be created because a queue with this name existed too recently.",
            )
        return super().CreateQueue(request, context)

    def GetQueue(self, request: Any, context: Any) -> Any:
        self._intercept("GetQueue", request, context)
        return self._queue(request.name, context)

    def UpdateQueue(self, request: Any, context: Any) -> Any:
        self._intercept("UpdateQueue", request, context)
        # Fact: UpdateQueue sets the fields named in update_mask, all of them without one
        # (the emulator ignores the update).
        queue = self._queue(request.queue.name, context)
        paths = list(request.update_mask.paths) or ["rate_limits", "retry_config"]
        for path in paths:
            group, _, field = path.partition(".")
            if field:
                setattr(getattr(queue, group), field, getattr(getattr(request.queue, group), field))
            else:
                setattr(queue, group, getattr(request.queue, group))
        return queue

    def _on_queue(self, method: str, request: Any, context: Any) -> Any:
        """Record, answer NOT_FOUND for a missing queue, else let the emulator answer."""
        self._intercept(method, request, context)
        self._queue(request.name, context)
        return getattr(super(), method)(request, context)

    def PauseQueue(self, request: Any, context: Any) -> Any:
        return self._on_queue("PauseQueue", request, context)

    def ResumeQueue(self, request: Any, context: Any) -> Any:
        return self._on_queue("ResumeQueue", request, context)

    def PurgeQueue(self, request: Any, context: Any) -> Any:
        return self._on_queue("PurgeQueue", request, context)

    def DeleteQueue(self, request: Any, context: Any) -> Any:
        self._intercept("DeleteQueue", request, context)
        # Fact: deleting a missing queue answers NOT_FOUND (the emulator says nothing), and
        # the name of a deleted queue stays blocked for 7 days.
        self._queue(request.name, context)
        self.deleted.add(request.name)
        return super().DeleteQueue(request, context)

    def ListQueues(self, request: Any, context: Any) -> Any:
        self._intercept("ListQueues", request, context)
        return super().ListQueues(request, context)

    def ListTasks(self, request: Any, context: Any) -> Any:
        self._intercept("ListTasks", request, context)
        # Fact: ListTasks pages by page_size and next_page_token and, in the BASIC view
        # (the default), leaves out request bodies. The emulator returns everything at once.
        tasks = self._state.list_tasks(self._queue(request.parent, context).name)
        start = int(request.page_token or 0)
        size = request.page_size or 1000
        page = [self._view(task, request.response_view) for task in tasks[start : start + size]]
        more = start + size < len(tasks)
        return tasks_v2.ListTasksResponse(
            tasks=page, next_page_token=str(start + size) if more else ""
        )

    def GetTask(self, request: Any, context: Any) -> Any:
        self._intercept("GetTask", request, context)
        # Fact: GetTask returns the task, NOT_FOUND once it has finished or was deleted
        # (UNIMPLEMENTED in the emulator).
        return self._view(self._find_task(request.name, context), request.response_view)

    def DeleteTask(self, request: Any, context: Any) -> Any:
        self._intercept("DeleteTask", request, context)
        # Fact: DeleteTask removes a waiting task, NOT_FOUND when there is none
        # (UNIMPLEMENTED in the emulator).
        task = self._find_task(request.name, context)
        self._state.list_tasks(request.name.rsplit("/tasks/", 1)[0]).remove(task)
        return empty_pb2.Empty()

    def RunTask(self, request: Any, context: Any) -> Any:
        self._intercept("RunTask", request, context)
        self._find_task(request.name, context)
        return super().RunTask(request, context)

    @staticmethod
    def _view(task: Any, view: int) -> Any:
        if view == tasks_v2.Task.View.FULL:
            return task
        basic = tasks_v2.Task(task)  # a copy: the stored task keeps its body
        target = "app_engine_http_request" if "app_engine_http_request" in basic else "http_request"
        getattr(basic, target).body = b""
        basic.view = tasks_v2.Task.View.BASIC
        return basic


class Emulator:
    """The emulator's queues and HTTP dispatcher behind a gRPC server on 127.0.0.1."""

    def __init__(
        self, *, queues: tuple[str, ...] = ("default", "emails", "reports"), workers: int = 64
    ) -> None:
        # max_retries=0: a task whose delivery fails is dropped, not retried every 0.1 s.
        self.state = emulator_server.QueueState("127.0.0.1", 80, 0)
        for queue in queues:
            self.create_queue(queue)
        self.servicer = ScriptedServicer(self.state)
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        add_CloudTasksServicer_to_server(self.servicer, self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{port}"
        self._processor = emulator_server.Processor(self.state)

    def start(self, *, dispatch: bool = True) -> Emulator:
        """Serve the API; ``dispatch=False`` keeps tasks queued instead of POSTing them."""
        self._grpc.start()
        if dispatch:
            self._processor.start()
        return self

    def stop(self) -> None:
        if self._processor.is_alive():
            self._processor.join(timeout=2)
        self._grpc.stop(grace=0).wait(2)

    def create_queue(self, queue: str) -> None:
        from google.cloud import tasks_v2

        self.state.create_queue(LOCATION_PATH, tasks_v2.Queue(name=queue_path(queue)))

    def queue_names(self) -> list[str]:
        return [name.rsplit("/", 1)[-1] for name in self.state.queue_names()]

    def tasks(self, queue: str) -> list[Any]:
        """The tasks still waiting in ``queue`` (delivered ones are removed)."""
        return list(self.state.list_tasks(queue_path(queue)))

    def reset(self) -> None:
        """Forget recorded requests, pending faults and the latency."""
        self.servicer.requests.clear()
        self.servicer.faults.clear()
        self.servicer.latency = 0.0

    def created(self, method: str = "CreateTask") -> list[Any]:
        """The recorded requests of ``method``, in arrival order."""
        return [request for name, request in self.servicer.requests if name == method]

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Return a CLOUDTASK dict that pushes to this emulator."""
        return {
            "BACKEND": "cloudtask.backends.cloudtasks.CloudTasksBackend",
            "PROJECT": PROJECT,
            "LOCATION": LOCATION,
            # Nothing listens on port 9: the emulator's delivery attempt fails at once, locally.
            "URL": UNREACHABLE_URL,
            "EMULATOR_HOST": self.host,
            **extra,
        }


@pytest.fixture(scope="session", name="emulator_server")
def emulator_server_fixture() -> Iterator[Emulator]:
    emulator = Emulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session", name="quiet_emulator_server")
def quiet_emulator_server_fixture() -> Iterator[Emulator]:
    emulator = Emulator().start(dispatch=False)
    yield emulator
    emulator.stop()


@pytest.fixture(name="quiet_emulator")
def quiet_emulator_fixture(quiet_emulator_server: Emulator) -> Iterator[Emulator]:
    """An emulator that never dispatches, so tasks stay queued until a test acts on them."""
    quiet_emulator_server.reset()
    yield quiet_emulator_server
    quiet_emulator_server.reset()


@pytest.fixture(name="emulator")
def emulator_fixture(emulator_server: Emulator) -> Iterator[Emulator]:
    """The session's emulator, with recordings and faults cleared for this test."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()


def wait_for(predicate: Any, *, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(name="task_endpoint")
def task_endpoint_fixture(static_url: None, live_server: Any, transactional_db: None) -> str:
    """The absolute URL of the task endpoint served by live_server."""
    return str(live_server.url) + "/_tasks/"
