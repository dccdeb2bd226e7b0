"""Local queue throughput and latency: cloudtask_worker vs django-tasks' db_worker.

    .venv/bin/python benchmarks/local.py [--tasks 1000] [--concurrency 10] [--samples 40]
    .venv/bin/python benchmarks/local.py --postgres [--workers 4] [--conn-max-age 60]

(a) cloudtask: push N tasks to LocalBackend, then ``cloudtask_worker --burst`` POSTs each to
    the endpoint served by ``runserver`` (real HTTP, signed, Cloud Tasks headers);
(b) django-tasks with django-tasks-db: enqueue N tasks, then ``db_worker --batch`` runs them
    in-process. Both run the same function on their own SQLite file; each drain is timed
    as a whole process, minus the time the same command takes with nothing to do (start-up).
Then, with an idle worker of each (default polling), push-to-start latency p50/p95.

``--postgres`` runs both sides on a PostgreSQL server of its own, started from the
distribution's packages (``apt-get install postgresql``), as the marked tests do; kept
connections (``--conn-max-age 60``, the default there) or a connection per request (0), as a
project would configure it. ``--workers N`` drains with N worker processes of each side at
once (each ``--concurrency`` deliveries in flight for cloudtask): cloudtask's workers claim
with leases and POST each task to the one ``runserver`` process, which runs it; db_worker
claims with ``SELECT ... FOR UPDATE SKIP LOCKED`` and runs the task in its own process.
cloudtask's tasks go round ``--queues`` queues (4): like Cloud Tasks, the local queue
dispatches at most 500 tasks a second from one queue, whatever the number of workers, so on
one queue (``--queues 1``) that limit is what is measured. db_worker's queue has no limit.

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


def database(db: str) -> dict[str, Any]:
    """Return the database settings of ``db``: a SQLite file, or PostgreSQL (``--postgres``)."""
    server = os.environ.get("BENCH_POSTGRES")
    if server:
        return {**json.loads(server), "NAME": db}
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": db, "OPTIONS": {"timeout": 30}}


def setup(db: str, url: str) -> None:
    """Configure Django for one role and register the tasks in this module."""
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-secret-key-long-enough-for-derivation-0123456789",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["cloudtask", "django_tasks", "django_tasks_db"],
        DATABASES={"default": database(db)},
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
        # cloudtask's tasks go round the queues; each queue's rate limit is its own.
        queues = [main.work.using(queue=queue_name(i)) for i in range(args.queues)]
        for n in range(args.count):
            queues[n % len(queues)](n=n).delay()
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


def queue_name(index: int) -> str:
    """The name of cloudtask's queue ``index`` (the first is the default queue)."""
    return "default" if index == 0 else f"bench-{index}"


class Bench:
    """Starts the roles as subprocesses against one temporary directory."""

    def __init__(
        self,
        workdir: Path,
        concurrency: int,
        workers: int = 1,
        postgres: Any = None,
        queues: int = 1,
    ) -> None:
        self.workdir = workdir
        self.concurrency = concurrency
        self.workers = workers
        self.queues = queues
        #: A tests.support.postgres.PostgresServer, or None for SQLite files.
        self.postgres = postgres
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/_tasks/"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.created: set[str] = set()

    def use_postgres(self, conn_max_age: int) -> None:
        """Run every role on the PostgreSQL server, with this CONN_MAX_AGE."""
        settings = {**self.postgres.create_database("bench_setup"), "CONN_MAX_AGE": conn_max_age}
        self.env["BENCH_POSTGRES"] = json.dumps(settings)

    def command(self, name: str, db: str, *extra: str) -> list[str]:
        if self.postgres is not None:
            db_path = f"bench_{db}".replace("-", "_")
            if db_path not in self.created:
                self.postgres.create_database(db_path)
                self.created.add(db_path)
        else:
            db_path = str(self.workdir / f"{db}.sqlite3")
        base = [sys.executable, SCRIPT, "--role", name, "--db", db_path, "--url", self.url]
        return [*base, "--concurrency", str(self.concurrency), *extra]

    def run(self, name: str, db: str, *extra: str) -> float:
        return self.run_measured(name, db, *extra)[0]

    def run_measured(
        self, name: str, db: str, *extra: str, processes: int = 1
    ) -> tuple[float, float]:
        """Run ``processes`` copies of one role to their end; return wall and CPU time (s)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        running = [
            subprocess.Popen(
                self.command(name, db, *extra), env=self.env, stdout=subprocess.DEVNULL
            )
            for _ in range(processes)
        ]
        for process in running:
            if process.wait(timeout=600) != 0:
                raise RuntimeError(f"{name} exited with {process.returncode}")
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


def process_cpu(pid: int) -> float:
    """Return the CPU seconds process ``pid`` has used (Linux's /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_cpu() -> float:
    """Return the CPU seconds all cores have been busy since boot (Linux's /proc; or 0.0)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def throughput(bench: Bench, count: int) -> dict[str, float]:
    """Drain ``count`` tasks with each worker; return tasks per second and CPU per task."""
    bench.run("push", "empty", "--count", "0")
    bench.run("push", "drain", "--count", str(count), "--queues", str(bench.queues))
    server = bench.start("serve", "drain")
    workers = bench.workers
    try:
        bench.wait_for_server()
        endpoint_before, machine_before = process_cpu(server.pid), machine_cpu()
        ours_wall, ours_cpu = bench.run_measured("ours-drain", "drain", processes=workers)
        endpoint_cpu = process_cpu(server.pid) - endpoint_before
        ours_machine, machine_before = machine_cpu() - machine_before, machine_cpu()
        idle_wall, idle_cpu = bench.run_measured("ours-drain", "empty", processes=workers)
        ours_machine -= machine_cpu() - machine_before
    finally:
        stop(server)
    machine_before = machine_cpu()
    theirs_wall, theirs_cpu = bench.run_measured("theirs-drain", "drain", processes=workers)
    theirs_machine, machine_before = machine_cpu() - machine_before, machine_cpu()
    theirs_idle_wall, theirs_idle_cpu = bench.run_measured(
        "theirs-drain", "empty", processes=workers
    )
    theirs_machine -= machine_cpu() - machine_before
    return {
        "ours": count / (ours_wall - idle_wall),
        "theirs": count / (theirs_wall - theirs_idle_wall),
        # The worker process's own CPU per task, start-up left out (the endpoint's is not in it).
        "ours_cpu_ms": (ours_cpu - idle_cpu) / count * 1000,
        "theirs_cpu_ms": (theirs_cpu - theirs_idle_cpu) / count * 1000,
        # What serving the deliveries cost the one runserver process, and how busy it was:
        # its threads share one interpreter lock, so near 100% of a core it is the bound.
        "endpoint_cpu_ms": endpoint_cpu / count * 1000,
        "endpoint_busy": endpoint_cpu / ours_wall,
        # Every process on the machine (workers, runserver, the database server) per task,
        # the same run with nothing to do left out: what each side costs the machine.
        "ours_machine_ms": ours_machine / count * 1000,
        "theirs_machine_ms": theirs_machine / count * 1000,
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


def start_postgres() -> Any:
    """Start a throwaway PostgreSQL server from the distribution's packages."""
    from tests.support.postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("--postgres needs a PostgreSQL server: apt-get install postgresql")
    server = PostgresServer(bindir)
    server.start()
    return server


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role")
    parser.add_argument("--db")
    parser.add_argument("--url")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument(
        "--queues",
        type=int,
        default=4,
        help="cloudtask queues the tasks go round (each allows Cloud Tasks' 500 a second)",
    )
    parser.add_argument("--out")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each side")
    parser.add_argument("--postgres", action="store_true", help="run on PostgreSQL, not SQLite")
    parser.add_argument("--conn-max-age", type=int, default=60, help="PostgreSQL CONN_MAX_AGE")
    args = parser.parse_args()
    if args.role:
        role(args)
        return
    postgres = start_postgres() if args.postgres else None
    try:
        with tempfile.TemporaryDirectory(prefix="cloudtask-bench-") as workdir:
            bench = Bench(Path(workdir), args.concurrency, args.workers, postgres, args.queues)
            if postgres is not None:
                bench.use_postgres(args.conn_max_age)
            rates = throughput(bench, args.tasks)
            delays = {side: latency(bench, args.samples, side) for side in ("ours", "theirs")}
    finally:
        if postgres is not None:
            postgres.stop()
    where = f"PostgreSQL, CONN_MAX_AGE={args.conn_max_age}" if postgres is not None else "SQLite"
    print(
        f"local queue on {where}, {args.tasks} tasks, {args.workers} worker process(es) per "
        f"side, cloudtask concurrency {args.concurrency}"
    )
    # Cloud Tasks dispatches at most 500 tasks a second from one queue (a burst of 100), and
    # the local queue holds every queue to its rate across workers: on one queue, that limit
    # and not the worker would be measured.
    print(
        f"  cloudtask's tasks go round {args.queues} queue(s), each limited to Cloud Tasks' "
        f"maximum of 500 dispatches a second: at most {500 * args.queues} tasks/s"
    )
    print(f"  cloudtask_worker --burst (HTTP): {rates['ours']:8.1f} tasks/s")
    print(f"  django-tasks db_worker --batch : {rates['theirs']:8.1f} tasks/s")
    ratio = rates["ours"] / rates["theirs"]
    target = "  (target >= 2.0 on PostgreSQL)" if postgres is not None else ""
    print(f"  ratio ours / django-tasks      : {ratio:8.2f}x{target}")
    print(
        f"  worker CPU per task            : ours {rates['ours_cpu_ms']:.2f} ms (target <= 1 ms; "
        f"the endpoint's work is in runserver), db_worker {rates['theirs_cpu_ms']:.2f} ms "
        "(runs the task in-process)"
    )
    print(
        f"  endpoint (runserver) CPU       : {rates['endpoint_cpu_ms']:.2f} ms per task, "
        f"{rates['endpoint_busy']:.0%} of one core while draining"
    )
    print(
        f"  machine CPU per task, all processes: ours {rates['ours_machine_ms']:.2f} ms, "
        f"db_worker {rates['theirs_machine_ms']:.2f} ms ({os.cpu_count()} cores)"
    )
    # Once a side keeps every core busy, only less CPU per task makes it faster: the ratio
    # at that point is what the machine allows, whatever the workers do.
    cores = os.cpu_count() or 1
    in_use = {side: rates[side] * rates[f"{side}_machine_ms"] / 1000 for side in ("ours", "theirs")}
    most = {side: cores * 1000 / rates[f"{side}_machine_ms"] for side in ("ours", "theirs")}
    print(
        f"  cores in use while draining    : ours {in_use['ours']:.2f}, db_worker "
        f"{in_use['theirs']:.2f} (of {cores})"
    )
    print(
        f"  with every core busy, at most  : ours {most['ours']:.0f} tasks/s, db_worker "
        f"{most['theirs']:.0f} tasks/s (cores / machine CPU per task)"
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
