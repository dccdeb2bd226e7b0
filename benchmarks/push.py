"""Push cost against the in-process Cloud Tasks emulator, three comparisons in one run.

Run: .venv/bin/python benchmarks/push.py [--pushes N] [--batch N] [--latency-ms MS]

(a) N ``.delay()`` with CloudTasksBackend vs N raw ``client.create_task`` calls over one
    shared client (the body JSON-encoded, the task built from proto-plus types, as the peers
    do): ours / raw is what envelope, signature, naming, checks and signals add.
(b) ``push_many`` of a batch vs the same calls pushed one by one, with a simulated API round
    trip of --latency-ms (the in-process emulator answers in about a millisecond; Cloud Tasks
    across a network does not), and again with no added latency; then one round of each at
    5, 20 and 50 ms, the curve.
(c) The peers' "new client per push" vs our shared client, on the same emulator.
(d) N ``push_http`` of a JSON payload vs N raw ``client.create_task`` calls of the same HTTP
    request over one shared client: what the argument checks and the push path add.

The emulator runs in a child process, as Cloud Tasks runs elsewhere: in this process its
server threads would take the GIL from the client after every call. ``--same-process`` puts
it back here, for comparison. Rounds alternate between the two sides of each comparison;
medians are reported. Needs ``pip install --no-deps gcloud-tasks-emulator==0.6.2``. Listens on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.support.emulator import LOCATION, PROJECT, UNREACHABLE_URL, Emulator, queue_path  # noqa: E402


class ChildEmulator:
    """The emulator in a child process, told what to do over its standard input."""

    def __init__(self) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-emulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.host = self._read()

    def _read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        assert self._read() == "ok"

    def settings(self) -> dict[str, Any]:
        return Emulator.settings(self)  # type: ignore[arg-type]  # it only reads .host

    def set_latency(self, seconds: float) -> None:
        self._say(f"latency {seconds}")

    def purge(self) -> None:
        self._say("purge")

    def stop(self) -> None:
        self._say("stop")
        self.process.wait(10)


class LocalEmulator(Emulator):
    """The emulator in this process (``--same-process``)."""

    def set_latency(self, seconds: float) -> None:
        self.servicer.latency = seconds

    def purge(self) -> None:
        self.state.purge_queue(queue_path("default"))


def serve_emulator() -> None:
    """The child's side of :class:`ChildEmulator`: serve until told to stop."""
    emulator = LocalEmulator(queues=("default",)).start(dispatch=False)
    print(emulator.host, flush=True)
    for line in sys.stdin:
        command, *value = line.split()
        if command == "latency":
            emulator.set_latency(float(value[0]))
        elif command == "purge":
            emulator.purge()
        elif command == "stop":
            emulator.stop()
            print("ok", flush=True)
            return
        print("ok", flush=True)


if __name__ == "__main__" and "--serve-emulator" in sys.argv:
    serve_emulator()
    sys.exit(0)

SAME_PROCESS = "--same-process" in sys.argv
EMULATOR: Any = LocalEmulator(queues=("default",)) if SAME_PROCESS else ChildEmulator()
settings.configure(
    SECRET_KEY="benchmark-secret-key-that-is-long-enough-0123456789",
    DEBUG=False,
    INSTALLED_APPS=["cloudtask"],
    DATABASES={},
    USE_TZ=True,
    CLOUDTASK=EMULATOR.settings(),
)
django.setup()

import grpc  # noqa: E402
from google.cloud import tasks_v2  # noqa: E402
from google.cloud.tasks_v2.services.cloud_tasks.transports import (  # noqa: E402
    CloudTasksGrpcTransport,
)

from cloudtask import CloudTaskRequest, push_http, push_many, task  # noqa: E402

ARGS = {"a": 1, "b": 2, "text": "hello world " * 20}
PARENT = queue_path("default")


@task(name="bench.add")
def add(request: CloudTaskRequest, a: int, b: int, text: str) -> int:
    return a + b + len(text)


def new_client() -> Any:
    channel = grpc.insecure_channel(EMULATOR.host)  # a new channel: a new connection
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def raw_push(client: Any) -> None:
    """What a hand-written push does: encode the payload, build the task, create it."""
    body = json.dumps({"task": "bench.add", "kwargs": ARGS}).encode()
    http_request = tasks_v2.HttpRequest(
        url=UNREACHABLE_URL,
        http_method=tasks_v2.HttpMethod.POST,
        headers={"Content-Type": "application/json"},
        body=body,
    )
    client.create_task(parent=PARENT, task=tasks_v2.Task(http_request=http_request))


def timed(run: Callable[[], None]) -> float:
    # Every side starts alike: no tasks piled up by earlier rounds, no garbage left by them.
    EMULATOR.purge()
    gc.collect()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def compare(
    name: str, ours: Callable[[], None], other: Callable[[], None], rounds: int
) -> tuple[float, float, float]:
    """Alternate rounds of both, each side first in every other round.

    Returns the median seconds of each side and the median of the per-round ratios
    (ours / other), which a burst of load elsewhere skews least.
    """
    ours(), other()  # warm up: connections, caches, imports
    mine, theirs = [], []
    for round_number in range(rounds):
        if round_number % 2:
            theirs.append(timed(other))
            mine.append(timed(ours))
        else:
            mine.append(timed(ours))
            theirs.append(timed(other))
    ratio = statistics.median(m / t for m, t in zip(mine, theirs, strict=True))
    return statistics.median(mine), statistics.median(theirs), ratio


def overhead(pushes: int, rounds: int) -> None:
    client = new_client()

    def ours() -> None:
        for _ in range(pushes):
            add(**ARGS).delay()

    def raw() -> None:
        for _ in range(pushes):
            raw_push(client)

    mine, theirs, ratio = compare("overhead", ours, raw, rounds)
    print(
        f"(a) {rounds} rounds of {pushes} pushes: ours {mine / pushes * 1e6:.0f} us, raw "
        f"create_task {theirs / pushes * 1e6:.0f} us per push -> ours/raw = {ratio:.3f} "
        "(target <= 1.05)"
    )


def batch(size: int, latency: float, rounds: int) -> None:
    EMULATOR.set_latency(latency)
    # With no round trip to overlap, threads only share one GIL: shown for reference.
    target = "(target >= 20x)" if latency else "(reference: nothing to overlap)"
    calls = [add(**ARGS) for _ in range(size)]

    def many() -> None:
        push_many(calls)

    def loop() -> None:
        for call in calls:
            call.delay()

    together, one_by_one, ratio = compare("batch", many, loop, rounds)
    print(
        f"(b) {size} calls, {latency * 1000:g} ms round trip: push_many {together:.2f} s, "
        f"loop {one_by_one:.2f} s -> speed-up {1 / ratio:.1f}x {target}"
    )
    EMULATOR.set_latency(0.0)


def curve(size: int, latencies: list[float]) -> None:
    """One round of each side at each round trip (after batch() warmed everything up)."""
    calls = [add(**ARGS) for _ in range(size)]
    points = []
    for latency in latencies:
        EMULATOR.set_latency(latency)
        together = timed(lambda: push_many(calls))
        one_by_one = timed(lambda: [call.delay() for call in calls])
        points.append(f"{latency * 1000:g} ms {one_by_one / together:.1f}x")
    EMULATOR.set_latency(0.0)
    print(f"(b) push_many speed-up over a loop, {size} calls, one round each: " + ", ".join(points))


def client_reuse(pushes: int, rounds: int) -> None:
    def ours() -> None:
        for _ in range(pushes):
            add(**ARGS).delay()

    def new_per_push() -> None:
        for _ in range(pushes):
            raw_push(new_client())

    mine, theirs, ratio = compare("reuse", ours, new_per_push, rounds)
    print(
        f"(c) {pushes} pushes: new client per push {theirs / pushes * 1e6:.0f} us, ours "
        f"{mine / pushes * 1e6:.0f} us per push -> speed-up {1 / ratio:.1f}x"
    )


HOOK = "https://hooks.example.com/order"
PAYLOAD = {"id": 7, "items": ["a", "b"], "note": "hello world " * 20}


def http_tasks(pushes: int, rounds: int) -> None:
    client = new_client()

    def ours() -> None:
        for _ in range(pushes):
            push_http(HOOK, json=PAYLOAD, auth=None)

    def raw() -> None:
        for _ in range(pushes):
            body = json.dumps(PAYLOAD, separators=(",", ":")).encode()
            http_request = tasks_v2.HttpRequest(
                url=HOOK,
                http_method=tasks_v2.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=body,
            )
            client.create_task(parent=PARENT, task=tasks_v2.Task(http_request=http_request))

    mine, theirs, ratio = compare("http", ours, raw, rounds)
    print(
        f"(d) {rounds} rounds of {pushes} HTTP tasks: push_http {mine / pushes * 1e6:.0f} us, "
        f"raw create_task {theirs / pushes * 1e6:.0f} us per push -> push_http/raw = "
        f"{ratio:.3f} (target <= 1.05)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=1000, help="pushes per round in (a)")
    parser.add_argument("--batch", type=int, default=1000, help="calls per batch in (b)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated RTT in (b)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--same-process", action="store_true", help="run the emulator in this process"
    )
    args = parser.parse_args()
    if SAME_PROCESS:
        EMULATOR.start(dispatch=False)  # tasks stay queued: nothing but the API is measured
    try:
        where = "this process" if SAME_PROCESS else "a child process"
        print(f"emulator on {EMULATOR.host} in {where}, project {PROJECT}, location {LOCATION}")
        # Many short rounds: the ratio is a median of paired rounds, steadier than long ones.
        overhead(max(1, args.pushes // 5), args.rounds * 3)
        batch(args.batch, args.latency_ms / 1000, max(1, args.rounds // 2))
        batch(args.batch, 0.0, args.rounds)
        curve(args.batch, [0.005, 0.020, 0.050])
        client_reuse(max(1, args.pushes // 5), args.rounds)
        http_tasks(max(1, args.pushes // 5), args.rounds * 3)
    finally:
        EMULATOR.stop()


if __name__ == "__main__":
    main()
