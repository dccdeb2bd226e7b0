"""Local queue throughput and latency: cloudtask_worker vs django-tasks' db_worker.

    .venv/bin/python benchmarks/local.py [--tasks 1000] [--concurrency 10] [--samples 40]

(a) cloudtask: push N tasks to LocalBackend, then ``cloudtask_worker --burst`` POSTs each to
    the endpoint served by ``runserver`` (real HTTP, signed, Cloud Tasks headers);
(b) django-tasks with django-tasks-db: enqueue N tasks, then ``db_worker --batch`` runs them
    in-process. Both run the same function on their own SQLite file; each drain is timed
    as a whole process, minus the time the same command takes with nothing to do (start-up).
Then, with an idle worker of each (default polling), push-to-start latency p50/p95.

Needs ``pip install django-tasks django-tasks-db``. Every role runs this file in a
subprocess; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(__file__).resolve())
# Run as a script, this folder leads sys.path, where benchmarks/django_tasks.py would stand in
# for the django_tasks package: import from the project root instead.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]


def work(request: Any, n: int) -> int:
    """The benchmarked function, as a cloudtask task (first parameter: the request)."""
    return n * 2


def dt_work(n: int) -> int:
    """The same function as a django-tasks task."""
    return n * 2


def mark_start(request: Any, pushed_at: float, path: str) -> None:
    """Record how long after its push the task started."""
    with open(path, "a") as out:
        out.write(f"{time.time() - pushed_at}\n")


def dt_mark_start(pushed_at: float, path: str) -> None:
    """The same, as a django-tasks task."""
    with open(path, "a") as out:
        out.write(f"{time.time() - pushed_at}\n")


def __getattr__(name: str) -> Any:
    # This file is also the URLconf; it is built on demand, after settings exist.
    if name == "urlpatterns":
        from django.urls import include, path

        return [path("_tasks/", include("cloudtask.urls"))]
    raise AttributeError(name)


def setup(db: str, url: str) -> None:
    """Configure Django for one role and register the tasks in this module."""
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-secret-key-long-enough-for-derivation-0123456789",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["cloudtask", "django_tasks", "django_tasks_db"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": db,
                "OPTIONS": {"timeout": 30},
            }
        },
        ROOT_URLCONF="benchmarks.local",
        USE_TZ=True,
        CLOUDTASK={"BACKEND": "cloudtask.backends.local.LocalBackend", "URL": url},
        TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        LOGGING={"version": 1, "loggers": {"django": {"level": "ERROR"}}},
    )
    django.setup()
    import django_tasks

    from cloudtask import task

    main = sys.modules[__name__]
    # Registered at run time under their module-level names, so every process (this file
    # runs as __main__ in each) finds them where the other one put them.
    main.work = task(name="bench.work")(work)  # type: ignore[attr-defined]
    main.mark_start = task(name="bench.mark_start")(mark_start)  # type: ignore[attr-defined]
    main.dt_work = django_tasks.task()(dt_work)  # type: ignore[attr-defined]
    main.dt_mark_start = django_tasks.task()(dt_mark_start)  # type: ignore[attr-defined]


def role(args: argparse.Namespace) -> None:
    """Play one role in this process."""
    setup(args.db, args.url)
    from django.core.management import call_command

    main: Any = sys.modules[__name__]
    if args.role == "push":
        call_command("migrate", verbosity=0)
        for n in range(args.count):
            main.work(n=n).delay()
            main.dt_work.enqueue(n=n)
    elif args.role == "serve":
        call_command("runserver", args.url.split("/")[2], use_reloader=False, verbosity=0)
    elif args.role == "ours-drain":
        concurrency = str(args.concurrency)
        call_command("cloudtask_worker", "--burst", "--concurrency", concurrency, verbosity=0)
    elif args.role == "theirs-drain":
        call_command(
            "db_worker", batch=True, startup_delay=False, interval=0, reload=False, verbosity=0
        )
    elif args.role == "ours-idle":
        call_command("cloudtask_worker", verbosity=0)
    elif args.role == "theirs-idle":
        call_command("db_worker", startup_delay=False, reload=False, verbosity=0)
    elif args.role in ("ours-latency", "theirs-latency"):
        for _ in range(args.count):
            time.sleep(random.uniform(0.1, 0.4))
            if args.role == "ours-latency":
                main.mark_start(pushed_at=time.time(), path=args.out).delay()
            else:
                main.dt_mark_start.enqueue(pushed_at=time.time(), path=args.out)


class Bench:
    """Starts the roles as subprocesses against one temporary directory."""

    def __init__(self, workdir: Path, concurrency: int) -> None:
        self.workdir = workdir
        self.concurrency = concurrency
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/_tasks/"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)

    def command(self, name: str, db: str, *extra: str) -> list[str]:
        db_path = str(self.workdir / f"{db}.sqlite3")
        base = [sys.executable, SCRIPT, "--role", name, "--db", db_path, "--url", self.url]
        return [*base, "--concurrency", str(self.concurrency), *extra]

    def run(self, name: str, db: str, *extra: str) -> float:
        return self.run_measured(name, db, *extra)[0]

    def run_measured(self, name: str, db: str, *extra: str) -> tuple[float, float]:
        """Run one role to its end; return its wall time and the CPU time it used (s)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            self.command(name, db, *extra),
            env=self.env,
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=600,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu

    def start(self, name: str, db: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(name, db, *extra),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_for_server(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the benchmark server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def throughput(bench: Bench, count: int) -> dict[str, float]:
    """Drain ``count`` tasks with each worker; return tasks per second."""
    bench.run("push", "empty", "--count", "0")
    bench.run("push", "drain", "--count", str(count))
    server = bench.start("serve", "drain")
    try:
        bench.wait_for_server()
        ours_wall, ours_cpu = bench.run_measured("ours-drain", "drain")
        idle_wall, idle_cpu = bench.run_measured("ours-drain", "empty")
    finally:
        stop(server)
    theirs_wall, theirs_cpu = bench.run_measured("theirs-drain", "drain")
    theirs_idle_wall, theirs_idle_cpu = bench.run_measured("theirs-drain", "empty")
    return {
        "ours": count / (ours_wall - idle_wall),
        "theirs": count / (theirs_wall - theirs_idle_wall),
        # The worker process's own CPU per task, start-up left out (the endpoint's is not in it).
        "ours_cpu_ms": (ours_cpu - idle_cpu) / count * 1000,
        "theirs_cpu_ms": (theirs_cpu - theirs_idle_cpu) / count * 1000,
    }


def latency(bench: Bench, samples: int, side: str) -> list[float]:
    """Push ``samples`` tasks, spaced out, to an idle worker; return start delays (s)."""
    out = bench.workdir / f"latency-{side}.txt"
    bench.run("push", f"latency-{side}", "--count", "0")
    servers = [bench.start("serve", f"latency-{side}")] if side == "ours" else []
    worker = bench.start(f"{side}-idle", f"latency-{side}")
    try:
        if servers:
            bench.wait_for_server()
        time.sleep(2)  # the worker is idle and polling
        bench.run(f"{side}-latency", f"latency-{side}", "--count", str(samples), "--out", str(out))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= samples:
                break
            time.sleep(0.1)
    finally:
        for process in [worker, *servers]:
            stop(process)
    return [float(line) for line in out.read_text().splitlines()]


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role")
    parser.add_argument("--db")
    parser.add_argument("--url")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    if args.role:
        role(args)
        return
    with tempfile.TemporaryDirectory(prefix="cloudtask-bench-") as workdir:
        bench = Bench(Path(workdir), args.concurrency)
        rates = throughput(bench, args.tasks)
        delays = {side: latency(bench, args.samples, side) for side in ("ours", "theirs")}
    print(f"local queue, {args.tasks} tasks, cloudtask concurrency {args.concurrency}")
    print(f"  cloudtask_worker --burst (HTTP): {rates['ours']:8.1f} tasks/s")
    print(f"  django-tasks db_worker --batch : {rates['theirs']:8.1f} tasks/s")
    print(f"  ratio ours / django-tasks      : {rates['ours'] / rates['theirs']:8.2f}x")
    print(
        f"  worker CPU per task            : ours {rates['ours_cpu_ms']:.2f} ms (target <= 1 ms; "
        f"the endpoint's work is in runserver), db_worker {rates['theirs_cpu_ms']:.2f} ms "
        "(runs the task in-process)"
    )
    for side, label in (("ours", "cloudtask_worker"), ("theirs", "db_worker")):
        p50, p95 = percentiles(delays[side])
        print(
            f"  push-to-start, idle {label:<16}: p50 {p50 * 1000:6.0f} ms  "
            f"p95 {p95 * 1000:6.0f} ms  ({len(delays[side])} samples, default polling)"
        )
    print(json.dumps({"tasks_per_s": rates}, default=float))


if __name__ == "__main__":
    main()
