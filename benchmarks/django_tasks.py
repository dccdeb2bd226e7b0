"""django.tasks on cloudtask: enqueue and delivery cost against @cloudtask.task's own.

Run: .venv/bin/python benchmarks/django_tasks.py [--calls N] [--rounds R]

Results are not kept on either side (``OPTIONS["RESULTS"] = False``, ``CLOUDTASK["RESULTS"] =
False``). Each comparison times three sides in the same process, in rounds whose order is
shuffled (a fixed seed):

- enqueue: ``send.enqueue(...)`` of a Django task, ``add(...).delay()`` of a cloudtask task,
  both through ``capture_tasks()`` (bind, JSON checks, encode, sign, record), and the floor:
  the same ``.delay()`` followed by what Django's task API makes any backend do on enqueue
  (``Task.enqueue`` looks the backend up, a ``TaskResult`` is built, its arguments
  JSON-normalised, and ``task_enqueued`` goes to Django's log receiver);
- delivery: the signed request of each through Django's WSGI handler and the endpoint, and the
  floor: the delivery of a cloudtask task whose function does, around the Django task's
  ``call()``, what Django's API makes any backend do to run it (the result and its states as
  Django's ImmediateBackend sets them, ``task_started``, the return value normalised,
  ``task_finished``).

The floor does Django's share inside the same loop or request as cloudtask's own work, so it
pays the same cache misses: timed on its own, that share looks cheaper than it is. The floor
over cloudtask's side is the least any backend of Django's API built on cloudtask's push and
endpoint can reach; the Django task's side over the floor is what the backend adds of its own.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file's directory leaves the path: the script's name would shadow the django_tasks
# backport package.
sys.path[:] = [str(HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]

import django  # noqa: E402  (after the path is set above)
from django.conf import settings  # noqa: E402

settings.configure(
    SECRET_KEY="benchmark-secret-key-that-is-long-enough-0123456789",
    DEBUG=False,
    ALLOWED_HOSTS=["testserver"],
    INSTALLED_APPS=["cloudtask"] + (["django_tasks"] if django.VERSION < (6, 0) else []),
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    DATABASES={},
    USE_TZ=True,
    CLOUDTASK={"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"},
    TASKS={
        "default": {
            "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
            "OPTIONS": {"RESULTS": False},
        }
    },
)
django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.utils import timezone  # noqa: E402

from cloudtask import CloudTaskRequest, task  # noqa: E402
from cloudtask.django_tasks import (  # noqa: E402
    CloudTaskBackend,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)
from cloudtask.django_tasks import task as django_task  # noqa: E402
from cloudtask.request import cloud_tasks_headers, meta_key  # noqa: E402
from cloudtask.testing import capture_tasks  # noqa: E402

urlpatterns = [path("_tasks/", include("cloudtask.urls"))]
TEXT = "hello world " * 20


@task(name="bench.add")
def add(request: CloudTaskRequest, a: int, b: int, text: str) -> int:
    return a + b + len(text)


@django_task()
def send(a: int, b: int, text: str) -> int:
    return a + b + len(text)


def django_result(enqueued_at: Any) -> Any:
    """A READY result of ``send(1, 2, TEXT)``, built as every backend of Django's API does."""
    return TaskResult(
        task=send,
        id="benchmark",
        status=TaskResultStatus.READY,
        enqueued_at=enqueued_at,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=[1, 2, TEXT],
        kwargs={},
        backend="default",
        errors=[],
        worker_ids=[],
    )


def django_enqueue_share() -> None:
    """What Django's API adds to any backend's push: the lookup, the result, the signal."""
    backend = send.get_backend()
    task_enqueued.send(type(backend), task_result=django_result(timezone.now()))


def enqueue_floor() -> object:
    """``.delay()``, then what Django's API adds to any backend's push."""
    handle = add(a=1, b=2, text=TEXT).delay()
    django_enqueue_share()
    return handle


@task(name="bench.django_run")
def delivery_floor(request: CloudTaskRequest, a: int, b: int, text: str) -> Any:
    """Run ``send`` as Django's API makes any backend run it, as its ImmediateBackend does:
    the result, its changes of state, the two signals, the return value normalised."""
    result = django_result(None)
    put = object.__setattr__
    started = timezone.now()
    put(result, "status", TaskResultStatus.RUNNING)
    put(result, "started_at", started)
    put(result, "last_attempted_at", started)
    result.worker_ids.append("worker")
    task_started.send(CloudTaskBackend, task_result=result)
    value = normalize_json(send.call(a, b, text))
    put(result, "_return_value", value)
    put(result, "finished_at", timezone.now())
    put(result, "status", TaskResultStatus.SUCCESSFUL)
    task_finished.send(CloudTaskBackend, task_result=result)
    return value


def timed(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - started


def requests(push: Callable[[], object], n: int) -> list[tuple[dict[str, Any], bytes]]:
    with capture_tasks() as captured:
        for _ in range(n):
            push()
    batch = []
    for c in captured:
        headers = {
            **c.http_request.headers,
            **cloud_tasks_headers(queue=c.queue, name=c.name, eta=None),
        }
        env = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/_tasks/",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "CONTENT_LENGTH": str(len(c.http_request.body)),
            **{meta_key(k): v for k, v in headers.items()},
        }
        batch.append((env, c.http_request.body))
    return batch


def serve(handler: WSGIHandler, batch: list[tuple[dict[str, Any], bytes]]) -> float:
    def start_response(status: str, headers: list[Any]) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"unexpected status {status}")

    started = time.perf_counter()
    for env, body in batch:
        request_env = {**env, "wsgi.input": io.BytesIO(body)}
        response = handler(request_env, start_response)
        b"".join(response)
        response.close()
    return time.perf_counter() - started


def report(name: str, n: int, sides: dict[str, list[float]]) -> None:
    """Print each side's median cost, then the median of each round's ratio of two sides."""
    for label, seconds in sides.items():
        print(f"  {label:24s}: {statistics.median(seconds) / n * 1e6:7.1f} us")
    ours, theirs, floor = sides.values()

    def ratio(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    print(f"  ratio {name:18s}: {ratio(ours, theirs):.3f}   (target <= 1.15)")
    print(f"  least reachable ratio   : {ratio(floor, theirs):.3f}   (cloudtask + Django's share)")
    print(f"  over the least reachable: {ratio(ours, floor):.3f}   (what the backend adds itself)")


def rounds(sides: dict[str, Callable[[], float]], count: int) -> dict[str, list[float]]:
    """Time each side once a round, ``count`` rounds, in an order shuffled each round."""
    order = random.Random(20261203)
    times: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(count):
        labels = list(sides)
        order.shuffle(labels)
        for label in labels:
            times[label].append(sides[label]())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    options = parser.parse_args()
    n = options.calls

    def ours() -> object:
        return send.enqueue(1, 2, TEXT)

    def theirs() -> object:
        return add(a=1, b=2, text=TEXT).delay()

    with capture_tasks() as captured:

        def batch(push: Callable[[], object]) -> Callable[[], float]:
            def run() -> float:
                captured.clear()  # every round starts from the same empty list
                return timed(push, n)

            return run

        enqueue = {
            "django task .enqueue()": batch(ours),
            "cloudtask task .delay()": batch(theirs),
            "least reachable": batch(enqueue_floor),
        }
        for run in enqueue.values():
            run()  # warm up
        times = rounds(enqueue, options.rounds)
    print(f"enqueue: {n} calls x {options.rounds} rounds through capture_tasks()")
    report("enqueue/delay", n, times)

    handler = WSGIHandler()
    batches = {
        "django task": requests(ours, n),
        "cloudtask task": requests(theirs, n),
        "least reachable": requests(lambda: delivery_floor(a=1, b=2, text=TEXT).delay(), n),
    }
    for requests_ in batches.values():
        serve(handler, requests_[:100])  # warm up
    times = rounds({k: partial(serve, handler, v) for k, v in batches.items()}, options.rounds)
    print(f"delivery: {n} signed requests x {options.rounds} rounds, WSGI + endpoint")
    report("django/cloudtask", n, times)


if __name__ == "__main__":
    main()
