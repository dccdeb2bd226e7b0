"""django.tasks on cloudtask: enqueue and delivery cost against @cloudtask.task's own.

Run: .venv/bin/python benchmarks/django_tasks.py [--calls N] [--rounds R]

Both sides do the same work in the same process, alternating rounds, results not kept
(``OPTIONS["RESULTS"] = False``, ``CLOUDTASK["RESULTS"] = False``):

- enqueue: ``send.enqueue(...)`` of a Django task against ``add(...).delay()`` of a cloudtask
  task, through ``capture_tasks()`` (bind, JSON checks, encode, sign, record);
- delivery: the signed request of each through Django's WSGI handler and the endpoint.

Each comparison also times, in the same alternating rounds, what Django's task API makes any
backend do on top of a plain push or run (its share): ``Task.enqueue`` looks the backend up,
a ``TaskResult`` is built (its arguments JSON-normalised), and ``task_enqueued`` (on delivery
``task_started`` and ``task_finished``) is sent to Django's own log receivers. The ratio
``.delay()`` plus that share over ``.delay()`` is the least any backend of Django's API could
reach here; the ratio without it is what cloudtask adds of its own.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
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


def django_delivery_share() -> None:
    """What Django's API adds to any backend's run of a call, as its ImmediateBackend runs it:
    the result, its changes of state, the two signals, the return value normalised."""
    result = django_result(None)
    put = object.__setattr__
    started = timezone.now()
    put(result, "status", TaskResultStatus.RUNNING)
    put(result, "started_at", started)
    put(result, "last_attempted_at", started)
    result.worker_ids.append("worker")
    task_started.send(CloudTaskBackend, task_result=result)
    put(result, "_return_value", normalize_json(send.call(1, 2, TEXT)))
    put(result, "finished_at", timezone.now())
    put(result, "status", TaskResultStatus.SUCCESSFUL)
    task_finished.send(CloudTaskBackend, task_result=result)


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


def report(
    name: str, n: int, sides: dict[str, list[float]], ratios: list[float], shares: list[float]
) -> None:
    """Print each side's median cost and the ratios, with and without Django's share."""
    for label, seconds in sides.items():
        print(f"  {label:24s}: {statistics.median(seconds) / n * 1e6:7.1f} us")
    ours, theirs = sides.values()
    floors = [(c + s) / c for c, s in zip(theirs, shares, strict=True)]
    own = [(d - s) / c for d, c, s in zip(ours, theirs, shares, strict=True)]
    print(f"  Django's share          : {statistics.median(shares) / n * 1e6:7.1f} us")
    print(f"  ratio {name:18s}: {statistics.median(ratios):.3f}   (target <= 1.15)")
    print(
        f"  least reachable ratio   : {statistics.median(floors):.3f}   (cloudtask + Django's share)"
    )
    print(
        f"  ratio without the share : {statistics.median(own):.3f}   (what cloudtask adds itself)"
    )


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

    enqueue_ratios, django_t, cloud_t, shares = [], [], [], []
    with capture_tasks():
        timed(ours, 200), timed(theirs, 200), timed(django_enqueue_share, 200)  # warm up
        for _ in range(options.rounds):
            django_t.append(timed(ours, n))
            cloud_t.append(timed(theirs, n))
            shares.append(timed(django_enqueue_share, n))
            enqueue_ratios.append(django_t[-1] / cloud_t[-1])
    print(f"enqueue: {n} calls x {options.rounds} alternating rounds through capture_tasks()")
    sides = {"django task .enqueue()": django_t, "cloudtask task .delay()": cloud_t}
    report("enqueue/delay", n, sides, enqueue_ratios, shares)

    handler = WSGIHandler()
    django_batch = requests(ours, n)
    cloud_batch = requests(theirs, n)
    serve(handler, django_batch[:100]), serve(handler, cloud_batch[:100])
    ratios, d_t, c_t, shares = [], [], [], []
    for _ in range(options.rounds):
        d_t.append(serve(handler, django_batch))
        c_t.append(serve(handler, cloud_batch))
        shares.append(timed(django_delivery_share, n))
        ratios.append(d_t[-1] / c_t[-1])
    print(f"delivery: {n} signed requests x {options.rounds} alternating rounds, WSGI + endpoint")
    sides = {"django task": d_t, "cloudtask task": c_t}
    report("django/cloudtask", n, sides, ratios, shares)


if __name__ == "__main__":
    main()
