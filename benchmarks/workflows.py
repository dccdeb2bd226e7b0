"""Workflows: the cost of one chain step, and chains on the local queue.

    .venv/bin/python benchmarks/workflows.py [--steps 100] [--rounds 20]
        [--chain 100] [--drains 3] [--concurrency 10]

(a) One chain step against a plain task that pushes the next one itself, in this process,
    through ``capture_tasks()`` on a SQLite file (WAL journal, ``synchronous=NORMAL``, as
    ``endpoint.py --results`` runs it). Each round delivers a fresh chain of ``--steps``
    steps (``add.s(a=0, b=1)`` then ``add.s(b=1)``) one step at a time with
    ``CapturedTask.run()`` (the real endpoint): the step claims its row, records its result,
    starts the next step and pushes it (captured). The baseline delivers a task whose
    function ``.delay()``s the next one, ``--steps`` times: one delivery and one push too,
    with no database work. For reference, the same baseline with ``CLOUDTASK["RESULTS"]``
    on: a row written at each push and updated at each delivery. Only the deliveries are
    timed; each side goes first in turn, and a ratio is the median of the rounds' ratios,
    shown with their range. The capture list is emptied before each delivery, so its
    duplicate-name check (workflow steps are pushed under derived names) reads no earlier
    pushes.
(b) Steps per second of a ``--chain``-step chain on the local queue: ``cloudtask_worker
    --burst`` POSTs each step over HTTP to ``runserver``, which runs it and pushes the next
    into the queue, as ``local.py`` runs it (its server and process helpers, a SQLite file).
    For comparison on the same setup: as many plain tasks each pushing the next (one at a
    time, as a chain), and as many independent plain tasks (``--concurrency`` in flight).
    Each drain is timed inside its process, around the worker command: 100 independent
    tasks drain in less time than a process start-up varies by, so local.py's "whole
    process minus an idle one" would mostly measure that variation. ``--drains`` rounds,
    each kind first in turn; medians and ranges.

Every role of (b) runs this file in a subprocess; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(__file__).resolve())
# As in local.py: this folder leaves sys.path (benchmarks/django_tasks.py would shadow the
# package of that name), the project root leads it.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]

from benchmarks.local import Bench, stop  # noqa: E402

#: The kinds of drain in (b): a workflow chain, plain tasks each pushing the next, and
#: independent plain tasks.
KINDS = ("chain", "hops", "plain")


def add(request: Any, a: int, b: int) -> int:
    """A workflow step (the first parameter: the request)."""
    return a + b


def hop(request: Any, a: int, b: int, left: int) -> int:
    """The baseline: the same sum, and the task pushes the next one itself while ``left``."""
    if left:
        sys.modules[__name__].hop(a=a + b, b=b, left=left - 1).delay()
    return a + b


def work(request: Any, n: int) -> int:
    """An independent plain task."""
    return n * 2


def __getattr__(name: str) -> Any:
    # This file is also the URLconf; it is built on demand, after settings exist.
    if name == "urlpatterns":
        from django.urls import include, path

        return [path("_tasks/", include("cloudtask.urls"))]
    raise AttributeError(name)


def database(db: str, *, wal: bool) -> dict[str, Any]:
    """Return a SQLite file's settings: endpoint.py's for (a), local.py's for (b)."""
    if wal:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": db,
            "CONN_MAX_AGE": 60,
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": db, "OPTIONS": {"timeout": 30}}


def setup(db: str, url: str, *, wal: bool = False) -> None:
    """Configure Django for one role, migrate, and register the tasks in this module."""
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-secret-key-long-enough-for-derivation-0123456789",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["cloudtask"],
        DATABASES={"default": database(db, wal=wal)},
        ROOT_URLCONF="benchmarks.workflows",
        USE_TZ=True,
        CLOUDTASK={"BACKEND": "cloudtask.backends.local.LocalBackend", "URL": url},
        LOGGING={"version": 1, "loggers": {"django": {"level": "ERROR"}}},
    )
    django.setup()
    from cloudtask import task

    main = sys.modules[__name__]
    # Registered at run time under their module-level names, so every process (this file
    # runs as __main__ in each) finds them where the other one put them.
    main.add = task(name="bench.workflow.add")(add)  # type: ignore[attr-defined]
    main.hop = task(name="bench.workflow.hop")(hop)  # type: ignore[attr-defined]
    main.work = task(name="bench.workflow.work")(work)  # type: ignore[attr-defined]


# --- (a) One chain step through capture_tasks() -----------------------------------------


def deliver(captured: Any, client: Any) -> tuple[list[float], Any]:
    """Deliver pushed tasks one at a time until none is left; return times and last result."""
    times, result = [], None
    while captured:
        current = captured.pop()
        if captured:
            raise RuntimeError("more than one task pushed at a time")
        started = time.perf_counter()
        response = current.run(client)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{current.task.name} answered {response.status_code}")
        result = response.json()["result"]
    return times, result


def expect(delivered: int, result: Any, steps: int) -> None:
    """Refuse a run that did not deliver every step and end with their sum."""
    if (delivered, result) != (steps, steps):
        raise RuntimeError(
            f"{delivered} deliveries ending with {result!r}, not {steps} and {steps}"
        )


def workflow_side(captured: Any, client: Any, steps: int) -> list[float]:
    from cloudtask.workflows import chain

    main: Any = sys.modules[__name__]
    handle = chain([main.add.s(a=0, b=1)] + [main.add.s(b=1)] * (steps - 1)).delay()
    times, result = deliver(captured, client)
    expect(len(times), result, steps)
    expect(len(times), handle.result(), steps)
    return times


def plain_side(captured: Any, client: Any, steps: int, *, results: bool = False) -> list[float]:
    """The baseline; with ``results``, each call's row kept (``CLOUDTASK["RESULTS"]``)."""
    from django.conf import settings

    from cloudtask import results as stored_results

    main: Any = sys.modules[__name__]
    settings.CLOUDTASK["RESULTS"] = results
    stored_results.sync_receivers()
    try:
        main.hop(a=0, b=1, left=steps - 1).delay()
        times, result = deliver(captured, client)
    finally:
        settings.CLOUDTASK["RESULTS"] = False
        stored_results.sync_receivers()
    expect(len(times), result, steps)
    return times


#: The sides of (a): the workflow step, the baseline, and the baseline keeping results.
SIDES = ("workflow", "plain", "results")


def step_cost(workdir: Path, steps: int, rounds: int) -> dict[str, list[float]]:
    """Time (a); return each side's mean seconds per delivery, one per round."""
    setup(str(workdir / "steps.sqlite3"), "http://127.0.0.1/_tasks/", wal=True)
    from django.core.management import call_command
    from django.test import Client

    from cloudtask.testing import capture_tasks

    call_command("migrate", verbosity=0)
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    sides = {
        "workflow": lambda captured: workflow_side(captured, client, steps),
        "plain": lambda captured: plain_side(captured, client, steps),
        "results": lambda captured: plain_side(captured, client, steps, results=True),
    }
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    with capture_tasks() as captured:
        for side in SIDES:  # warm up
            sides[side](captured)
        for round_number in range(rounds):
            # Each side goes first in turn, so a burst of load elsewhere hits all alike.
            shift = round_number % len(SIDES)
            for side in SIDES[shift:] + SIDES[:shift]:
                times[side].append(statistics.fmean(sides[side](captured)))
    return times


# --- (b) Chains on the local queue -------------------------------------------------------


class WorkflowBench(Bench):
    """local.py's roles runner, running this file's roles on SQLite files."""

    def command(self, name: str, db: str, *extra: str) -> list[str]:
        db_path = str(self.workdir / f"{db}.sqlite3")
        base = [sys.executable, SCRIPT, "--role", name, "--db", db_path, "--url", self.url]
        return [*base, "--concurrency", str(self.concurrency), *extra]


def role(args: argparse.Namespace) -> None:
    """Play one role of (b) in this process."""
    setup(args.db, args.url)
    from django.core.management import call_command

    main: Any = sys.modules[__name__]
    count = args.count
    if args.role == "push":
        call_command("migrate", verbosity=0)
        if args.kind == "chain":
            from cloudtask.workflows import chain

            chain([main.add.s(a=0, b=1)] + [main.add.s(b=1)] * (count - 1)).delay()
        elif args.kind == "hops":
            main.hop(a=0, b=1, left=count - 1).delay()
        elif args.kind == "plain":
            for n in range(count):
                main.work(n=n).delay()
    elif args.role == "serve":
        call_command("runserver", args.url.split("/")[2], use_reloader=False, verbosity=0)
    elif args.role == "drain":
        concurrency = str(args.concurrency)
        started = time.perf_counter()
        call_command("cloudtask_worker", "--burst", "--concurrency", concurrency, verbosity=0)
        Path(args.out).write_text(f"{time.perf_counter() - started}\n")
    elif args.role == "check":
        from cloudtask.models import LocalTask, Workflow

        # Every chain succeeded with the sum of its steps; every delivery succeeded.
        results = list(Workflow.objects.values_list("status", "result"))
        other = LocalTask.objects.exclude(status="succeeded").count()
        if any(row != ("succeeded", count) for row in results) or other:
            raise SystemExit(f"unfinished: workflows {results}, {other} tasks not succeeded")


def on_local_queue(workdir: Path, length: int, drains: int, concurrency: int) -> dict[str, Any]:
    """Time (b); return each kind's rates (per second), one per drain."""
    bench = WorkflowBench(workdir, concurrency)
    bench.run("push", "queue", "--kind", "none")
    out = workdir / "drain.txt"
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    server = bench.start("serve", "queue")
    try:
        bench.wait_for_server()
        for round_number in range(drains):
            shift = round_number % len(KINDS)
            for kind in KINDS[shift:] + KINDS[:shift]:
                bench.run("push", "queue", "--kind", kind, "--count", str(length))
                bench.run("drain", "queue", "--out", str(out))
                rates[kind].append(length / float(out.read_text()))
    finally:
        stop(server)
    bench.run("check", "queue", "--count", str(length))
    return rates


# --- Report -------------------------------------------------------------------------------


def spread(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}-{format(max(values), fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role")
    parser.add_argument("--db")
    parser.add_argument("--url")
    parser.add_argument("--kind", choices=(*KINDS, "none"), default="none")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--steps", type=int, default=100, help="steps per chain in (a)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of (a)")
    parser.add_argument("--chain", type=int, default=100, help="steps per chain in (b)")
    parser.add_argument("--drains", type=int, default=3, help="rounds of (b)")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    if args.role:
        role(args)
        return
    with tempfile.TemporaryDirectory(prefix="cloudtask-bench-") as workdir:
        # (b) first: this process configures Django for (a), its roles do it for themselves.
        rates = on_local_queue(Path(workdir), args.chain, args.drains, args.concurrency)
        cost = step_cost(Path(workdir), args.steps, args.rounds)

    ours, plain, kept = cost["workflow"], cost["plain"], cost["results"]
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    kept_ratios = [o / k for o, k in zip(ours, kept, strict=True)]
    print(
        f"(a) one chain step vs a plain task pushing the next: {args.rounds} rounds of "
        f"{args.steps} deliveries per side, capture_tasks(), SQLite WAL (medians, range)"
    )
    print(f"  workflow step (claim, record, push next) : {statistics.median(ours) * 1e6:7.0f} us")
    print(f"  plain task .delay()ing the next          : {statistics.median(plain) * 1e6:7.0f} us")
    print(f"  the same, RESULTS on (a row per call)    : {statistics.median(kept) * 1e6:7.0f} us")
    print(
        f"  ratio workflow/plain            : {statistics.median(ratios):5.2f} "
        f"({spread(ratios, '.2f')})   (target <= 2.0)"
    )
    print(
        f"  ratio workflow/plain, RESULTS on: {statistics.median(kept_ratios):5.2f} "
        f"({spread(kept_ratios, '.2f')})   (reference)"
    )
    print(
        f"(b) local queue on SQLite, cloudtask_worker --burst over HTTP to runserver, "
        f"{args.drains} drains of {args.chain} each (medians, range)"
    )
    labels = {
        "chain": "workflow chain                        ",
        "hops": "plain tasks, each pushing the next    ",
        "plain": f"independent plain tasks, {args.concurrency:2d} in flight ",
    }
    for kind in KINDS:
        values = rates[kind]
        unit = "steps/s" if kind == "chain" else "tasks/s"
        print(
            f"  {labels[kind]}: {statistics.median(values):6.1f} {unit} ({spread(values, '.1f')})"
        )
    per_delivery_us = {side: statistics.median(cost[side]) * 1e6 for side in SIDES}
    print(json.dumps({"us_per_delivery": per_delivery_us, "per_s": rates}, default=float))


if __name__ == "__main__":
    main()
