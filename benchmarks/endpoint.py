"""Endpoint overhead: signed task requests through the full view vs a bare JSON view.

Run: .venv/bin/python benchmarks/endpoint.py [--requests N] [--rounds R] [--otel MODE]
     [--oidc] [--results] [--profile]

``--otel absent`` (the default) runs as a project without OpenTelemetry (its import is
blocked); ``api`` with the API installed and no SDK (spans are no-ops); ``sdk`` with the
SDK's tracer provider recording every span (no exporter), the cost of tracing itself.
``--oidc`` requires an OIDC token on top of the signature: every request carries the same
real RS256 token (Cloud Tasks reuses a token while it lasts), verified against certificates
served on 127.0.0.1; the certificates server stops once they are fetched (they are kept for
their max-age, an hour), since Google's is not a thread of the measured process (a thread
serving in this process costs every request a GIL hand-off). ``--results`` keeps stored results (``CLOUDTASK["RESULTS"]``) in a
SQLite file database as a production project would run it (WAL journal, ``synchronous=
NORMAL``, connections kept: ``--conn-max-age``, default 60): each call's row is written when
it is pushed, and each delivery records its outcome on it; the bare view does no database
work. ``--profile`` then prints where each view's time goes (cProfile, one round of each).

Both views are served by the same Django WSGI handler with the same middleware, in the same
process, alternating rounds, so the ratio (ours / bare) is what the signature check, envelope
validation, registry lookup, argument binding, request object and JSON answer cost.
Also reports pushes per second through capture_tasks() against json.dumps of the arguments.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OTEL_MODES = ("absent", "api", "sdk")
_early = argparse.ArgumentParser(add_help=False)
_early.add_argument("--otel", choices=OTEL_MODES, default="absent")
_early.add_argument("--oidc", action="store_true")
_early.add_argument("--results", action="store_true")
_early.add_argument("--conn-max-age", type=int, default=60)
_EARLY = _early.parse_known_args()[0]
OTEL = _EARLY.otel
if OTEL == "absent":
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed
elif OTEL == "sdk":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())

import tempfile  # noqa: E402

import django  # noqa: E402  (after the OpenTelemetry set-up above)
from django.conf import settings  # noqa: E402

from tests.support.oidc import AUDIENCE, SERVICE_ACCOUNT, CertsServer, make_key, sign  # noqa: E402

CERTS = CertsServer([make_key("bench-key")]).start() if _EARLY.oidc else None
DATABASE = str(Path(tempfile.mkdtemp()) / "results.sqlite3")
CLOUDTASK: dict[str, Any] = {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}
if CERTS is not None:
    CLOUDTASK.update(SAE=SERVICE_ACCOUNT, URL=AUDIENCE, OIDC={"CERTS_URL": CERTS.url})
if _EARLY.results:
    CLOUDTASK["RESULTS"] = True

settings.configure(
    SECRET_KEY="benchmark-secret-key-that-is-long-enough-0123456789",
    DEBUG=False,
    ALLOWED_HOSTS=["testserver"],
    INSTALLED_APPS=["cloudtask"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATABASE,
            "CONN_MAX_AGE": _EARLY.conn_max_age,
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }
    if _EARLY.results
    else {},
    USE_TZ=True,
    CLOUDTASK=CLOUDTASK,
)
django.setup()
if _EARLY.results:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from cloudtask import CloudTaskRequest, task  # noqa: E402
from cloudtask.request import cloud_tasks_headers, meta_key  # noqa: E402
from cloudtask.testing import capture_tasks  # noqa: E402


def work(a: int, b: int, text: str) -> int:
    """The function both views call."""
    return a + b + len(text)


@task(name="bench.add")
def add(request: CloudTaskRequest, a: int, b: int, text: str) -> int:
    return work(a, b, text)


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    data = json.loads(request.body)
    return JsonResponse({"result": work(**data["kwargs"])})


# The bare view is mounted through include() too, so both pay the same URL resolution.
urlpatterns = [
    path("_tasks/", include("cloudtask.urls")),
    path("bare/", include(([path("", bare)], "bare"))),
]

ARGS = {"a": 1, "b": 2, "text": "hello world " * 20}


def environ(url_path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": url_path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": None,
    }
    env.update({meta_key(k): v for k, v in headers.items()})
    return env


def requests_for(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with capture_tasks() as captured:
        for _ in range(n):
            add(**ARGS).delay()
    ours, plain = [], []
    token = {"Authorization": f"Bearer {sign(make_key('bench-key'))}"} if CERTS else {}
    for c in captured:
        headers = {
            **c.http_request.headers,
            **cloud_tasks_headers(queue=c.queue, name=c.name, eta=None),
            **token,
        }
        ours.append((environ("/_tasks/", c.http_request.body, headers), c.http_request.body))
        plain.append(
            (
                environ("/bare/", c.http_request.body, {"Content-Type": "application/json"}),
                c.http_request.body,
            )
        )
    return ours, plain  # type: ignore[return-value]


def serve(handler: WSGIHandler, batch: list[Any]) -> float:
    def start_response(status: str, headers: list[Any]) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"unexpected status {status}")

    started = time.perf_counter()
    for env, body in batch:
        request_env = dict(env)
        request_env["wsgi.input"] = io.BytesIO(body)
        response = handler(request_env, start_response)
        b"".join(response)
        response.close()
    return time.perf_counter() - started


def timed(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - started


def profile(label: str, handler: WSGIHandler, batch: list[Any]) -> None:
    """Print the functions that take the most of one round's time, per request."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(serve, handler, batch)
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:15]  # type: ignore[attr-defined]
    n = len(batch)
    print(f"  {label}: own time per request (cProfile, which inflates small calls)")
    for (filename, line, name), (_, calls, own, _cumulative, _) in rows:
        where = filename.split("site-packages/")[-1].split("/work/")[-1]
        print(f"    {own / n * 1e6:6.1f} us  {calls / n:4.1f}x  {name}  ({where}:{line})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--otel", choices=OTEL_MODES, default="absent")
    parser.add_argument("--oidc", action="store_true", help="require an OIDC token too")
    parser.add_argument("--results", action="store_true", help="keep stored results (SQLite)")
    parser.add_argument("--conn-max-age", type=int, default=60, help="with --results")
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    options = parser.parse_args()
    handler = WSGIHandler()
    ours, plain = requests_for(options.requests)
    serve(handler, ours[:200])  # warm up both paths
    serve(handler, plain[:200])
    if CERTS is not None:
        CERTS.stop()  # fetched and kept: nothing is asked of it any more
    ours_times, bare_times, ratios = [], [], []
    for _ in range(options.rounds):
        # Alternate short rounds so a burst of load elsewhere hits both sides alike.
        ours_times.append(serve(handler, ours))
        bare_times.append(serve(handler, plain))
        ratios.append(ours_times[-1] / bare_times[-1])
    ours_t, bare_t = statistics.median(ours_times), statistics.median(bare_times)
    n = options.requests
    mode = "OIDC required" if options.oidc else "signature only"
    if options.results:
        mode += f", results kept (SQLite WAL, CONN_MAX_AGE={options.conn_max_age})"
    target = 2.5 if options.results else 1.30 if options.oidc else 1.10
    print(
        f"endpoint: {n} requests x {options.rounds} alternating rounds (medians), "
        f"OpenTelemetry {OTEL}, {mode}"
    )
    print(f"  cloudtask view : {ours_t / n * 1e6:8.1f} us/request")
    print(f"  bare json view : {bare_t / n * 1e6:8.1f} us/request")
    print(f"  ratio ours/bare: {statistics.median(ratios):.3f}   (target <= {target})")
    if options.profile:
        for label, batch in (("cloudtask view", ours), ("bare json view", plain)):
            profile(label, handler, batch)

    with capture_tasks() as captured:
        push_t = statistics.median(
            timed(lambda: add(**ARGS).delay(), n) for _ in range(options.rounds)
        )
        assert len(captured) == n * options.rounds
    dumps_t = statistics.median(
        timed(lambda: json.dumps({"kwargs": ARGS}), n) for _ in range(options.rounds)
    )
    print(f"push: {n} calls through capture_tasks (bind + JSON check + encode + sign)")
    print(f"  capture push   : {n / push_t:10.0f} pushes/s")
    print(f"  json.dumps     : {n / dumps_t:10.0f} dumps/s")
    print(f"  ratio push/dumps time: {push_t / dumps_t:.1f}")


if __name__ == "__main__":
    main()
