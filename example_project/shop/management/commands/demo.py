"""``manage.py demo``: run the example end to end on the local queue and check what happened.

Starts the example server and a ``cloudtask_worker`` on a free 127.0.0.1 port, pushes the
example tasks, waits (bounded) until each one has finished, prints a table and exits 0 only
when every task behaved as expected.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings
from django.utils import timezone

from cloudtask import TaskAlreadyExists, TaskHandle
from cloudtask.models import LocalQueue, LocalTask, Schedule
from cloudtask.schedules import get as get_schedule
from cloudtask.schedules import local as local_schedules
from cloudtask.workflows import WorkflowHandle, chord, group
from shop import tasks

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
TIMEOUT = 45.0


@dataclass
class Expected:
    """One push of the demo and what should become of it."""

    label: str
    push: Callable[[], TaskHandle]
    status: str
    attempts: int
    min_delay: float = 0.0
    handle: TaskHandle | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"the example server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"the example server did not listen on port {port} in {timeout:g}s")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Command(BaseCommand):
    help = "Run the example end to end on the local queue and print what happened."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        # A fresh queue each run: names of the last run's named task would still be taken.
        LocalTask.objects.all().delete()
        LocalQueue.objects.all().delete()
        # The server's log lives only as long as the demo: shown when something failed.
        with tempfile.TemporaryDirectory(prefix="cloudtask-demo-") as folder:
            log = Path(folder) / "server.log"
            failures = self._run(log)
            if failures:
                self.stdout.write(f"demo: the server's log:\n{log.read_text()}")
                raise CommandError(f"demo: {failures} expectation(s) not met (see the table above)")
        self.stdout.write(self.style.SUCCESS("demo: every task behaved as expected"))

    def _run(self, log: Path) -> int:
        """Start the server and a worker, push the example tasks, report; return failures."""
        port = free_port()
        server_log = log.open("w")
        self.stdout.write(f"demo: server on http://127.0.0.1:{port}/")
        # Workflow steps push the steps after them from the server: to this server.
        env = {**os.environ, "EXAMPLE_TASKS_URL": f"http://127.0.0.1:{port}/_tasks/"}
        server = subprocess.Popen(  # noqa: S603  (this interpreter and manage.py)
            [sys.executable, MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        worker: subprocess.Popen[str] | None = None
        try:
            wait_for_port(port, server, 20)
            url = f"http://127.0.0.1:{port}/_tasks/"
            worker = self._start_worker(url)
            with override_settings(CLOUDTASK={**settings.CLOUDTASK, "URL": url}):
                pushes, refused = self._push()
                # Two additions side by side, then their total: three steps, one result.
                workflow = chord(
                    group(tasks.add.s(a=1, b=2), tasks.add.s(a=3, b=4)), tasks.total.s()
                )
                flow = workflow.delay()
            rows = self._wait(pushes, flow)
        finally:
            if worker is not None:
                stop(worker)
            stop(server)
            server_log.close()
        return self._report(pushes, rows, refused) + self._report_workflow(flow)

    def _start_worker(self, url: str) -> subprocess.Popen[str]:
        # The worker pushes the runs of periodic tasks it fires: to this server too.
        env = {**os.environ, "EXAMPLE_TASKS_URL": url}
        worker = subprocess.Popen(  # noqa: S603  (this interpreter and manage.py)
            [sys.executable, MANAGE, "cloudtask_worker", "--poll-interval", "0.1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        ready = threading.Event()

        def relay() -> None:
            assert worker.stdout is not None
            for line in worker.stdout:
                ready.set()  # the worker prints its first line once it is polling
                self.stdout.write(f"  worker | {line.rstrip()}")

        threading.Thread(target=relay, daemon=True).start()
        if not ready.wait(20):
            raise CommandError("the worker did not start within 20s")
        return worker

    def _push(self) -> tuple[list[Expected], str]:
        pushes = [
            Expected("add(a=2, b=3)", lambda: tasks.add(a=2, b=3).delay(), "succeeded", 1),
            Expected(
                "send_reminder, countdown=3",
                lambda: tasks.send_reminder(order_id=7).schedule(countdown=3),
                "succeeded",
                1,
                min_delay=3.0,
            ),
            Expected(
                "rebuild_search_index (named)",
                lambda: tasks.rebuild_search_index().delay(),
                "succeeded",
                1,
            ),
            Expected(
                "sync_inventory (flaky)",
                lambda: tasks.sync_inventory(sku="ABC-1").delay(),
                "succeeded",
                3,
            ),
            Expected(
                "charge_card (always fails)",
                lambda: tasks.charge_card(order_id=7).delay(),
                "failed",
                3,
            ),
            Expected("nightly_digest (periodic)", self._make_due, "succeeded", 1),
        ]
        for expected in pushes:
            expected.handle = expected.push()
        try:
            tasks.rebuild_search_index().delay()
            refused = ""
        except TaskAlreadyExists as exc:
            refused = str(exc)
        self.stdout.write(
            f"demo: pushed {len(pushes)} tasks; second named push refused: "
            f"{'yes' if refused else 'NO'}"
        )
        return pushes, refused

    def _make_due(self) -> TaskHandle:
        """Make the nightly schedule due now: the worker fires it on its next look."""
        local_schedules.sync()
        due = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
        Schedule.objects.filter(name="nightly-digest").update(next_run=due)
        call_id = get_schedule("nightly-digest").run_call_id(due)
        return TaskHandle(name=local_schedules.run_task_id(call_id), queue="default", eta=None)

    def _wait(self, pushes: list[Expected], flow: WorkflowHandle) -> dict[str, LocalTask]:
        names = [p.handle.name for p in pushes if p.handle is not None]
        deadline = time.monotonic() + TIMEOUT
        while True:
            rows = {row.name: row for row in LocalTask.objects.filter(name__in=names)}
            done = all(row.status in ("succeeded", "failed") for row in rows.values())
            done = done and len(rows) == len(names) and flow.status != "running"
            if done or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def _report_workflow(self, flow: WorkflowHandle) -> int:
        """Say how the chord went; return 1 unless it added up to 10."""
        row = flow.row()
        steps = ", ".join(
            f"{step.task.rsplit('.', 1)[-1]}={step.result!r}" for step in flow.steps()
        )
        ok = row.status == "succeeded" and row.result == 10  # 1+2 + 3+4
        check = "ok" if ok else "FAIL: expected succeeded with 10"
        self.stdout.write(
            f"{'chord(add, add) | total':<30} {row.status:<10} {row.result!r:>4}  {check}"
        )
        self.stdout.write(f"  steps: {steps}\n")
        return 0 if ok else 1

    def _report(self, pushes: list[Expected], rows: dict[str, LocalTask], refused: str) -> int:
        header = f"{'task':<30} {'queue':<9} {'status':<10} {'attempts':>8} {'last':>5} "
        header += f"{'first try':>10} {'done':>8}  check"
        self.stdout.write("\n" + header + "\n" + "-" * len(header))
        failures = 0
        for expected in pushes:
            assert expected.handle is not None
            row = rows.get(expected.handle.name)
            problem = _problem(expected, row)
            failures += bool(problem)
            self.stdout.write(_line(expected, row, problem or "ok"))
        named_ok = bool(refused)
        failures += not named_ok
        second = "refused: TaskAlreadyExists" if named_ok else "ACCEPTED (expected a refusal)"
        self.stdout.write(f"{'rebuild_search_index again':<30} {'default':<9} {second}")
        self.stdout.write("")
        return failures


def _seconds(start: datetime, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.2f}s" if end else "-"


def _result(row: LocalTask) -> str:
    try:
        return repr(json.loads(row.last_response).get("result"))
    except (ValueError, AttributeError):
        return ""


def _line(expected: Expected, row: LocalTask | None, check: str) -> str:
    if row is None:
        return f"{expected.label:<30} (missing)  {check}"
    result = _result(row) if row.status == "succeeded" else row.retry_reason
    return (
        f"{expected.label:<30} {row.queue:<9} {row.status:<10} {row.dispatch_count:>8} "
        f"{row.last_response_status or '-':>5} {_seconds(row.created_at, row.first_attempt_at):>10} "
        f"{_seconds(row.created_at, row.finished_at):>8}  {check}  {result}"
    )


def _problem(expected: Expected, row: LocalTask | None) -> str:
    if row is None:
        return "FAIL: not stored"
    if row.status != expected.status:
        return f"FAIL: expected {expected.status}"
    if row.dispatch_count != expected.attempts:
        return f"FAIL: expected {expected.attempts} attempts"
    waited = (row.first_attempt_at or row.created_at) - row.created_at
    if waited.total_seconds() < expected.min_delay - 0.05:
        return f"FAIL: ran before its ETA ({waited.total_seconds():.2f}s)"
    return ""
