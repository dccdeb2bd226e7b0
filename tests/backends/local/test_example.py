"""The example project end to end: ``manage.py demo`` and ``manage.py cloudtask_dev``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudtask.management.commands.cloudtask_dev import worker_command
from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow

EXAMPLE = REPO_ROOT / "example_project"


def example_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "EXAMPLE_DB": str(tmp_path / "example.sqlite3"), **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # As under a process manager: output to a pipe is buffered unless the commands flush it.
    env.pop("PYTHONUNBUFFERED", None)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_runs_everything_and_exits_zero(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    output = manage(example_env(tmp_path, TMPDIR=str(temporary)), "demo", timeout=90)
    assert list(temporary.iterdir()) == []  # the demo leaves no temporary folders behind
    rows = {line.split("  ")[0]: line for line in output.splitlines()}
    assert "demo: every task behaved as expected" in output
    assert " succeeded         1 " in rows["add(a=2, b=3)"]
    assert rows["add(a=2, b=3)"].endswith("ok  5")
    assert " succeeded         1 " in rows["send_reminder, countdown=3"]
    assert " succeeded         3 " in rows["sync_inventory (flaky)"]
    assert " failed            3 " in rows["charge_card (always fails)"]
    assert "refused: TaskAlreadyExists" in rows["rebuild_search_index again"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_dev(tmp_path: Path) -> tuple[dict[str, str], subprocess.Popen[str]]:
    """Migrate the example project, then start cloudtask_dev on a free port."""
    port = free_port()
    env = example_env(tmp_path, EXAMPLE_TASKS_URL=f"http://127.0.0.1:{port}/_tasks/")
    manage(env, "migrate", "--verbosity", "0")
    dev = subprocess.Popen(
        [sys.executable, "manage.py", "cloudtask_dev", f"127.0.0.1:{port}", "--noreload"],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return env, dev


def test_cloudtask_dev_serves_and_delivers(tmp_path: Path) -> None:
    env, dev = start_dev(tmp_path)
    try:
        push = "from shop.tasks import add; print(add(a=20, b=22).delay(name='dev-check').name)"
        assert manage(env, "shell", "-v", "0", "-c", push).strip() == "dev-check"
        show = (
            "from cloudtask.models import LocalTask; t = LocalTask.objects.get(name='dev-check'); "
            "print(t.status, t.last_response)"
        )
        deadline = time.monotonic() + 30
        while not (status := manage(env, "shell", "-v", "0", "-c", show)).startswith("succeeded"):
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert '"result":42' in status
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=30)
    assert "cloudtask_worker mode=watching" in output
    assert "task=shop.tasks.add name=dev-check queue=default attempt=1 status=200" in output


def test_worker_command_line_runs_the_same_manage_py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/srv/app/manage.py", "cloudtask_dev"])
    assert worker_command("--concurrency=3") == [
        sys.executable,
        "/srv/app/manage.py",
        "cloudtask_worker",
        "--concurrency=3",
    ]
    monkeypatch.setattr(sys, "argv", ["/venv/lib/django/__main__.py", "cloudtask_dev"])
    assert worker_command()[:4] == [sys.executable, "-m", "django", "cloudtask_worker"]
    assert worker_command()[4] == "--settings=tests.settings"


def test_closing_the_terminal_stops_the_worker_too(tmp_path: Path) -> None:
    _, dev = start_dev(tmp_path)
    assert dev.stdout is not None
    lines = []
    while "cloudtask_worker mode=watching" not in (line := dev.stdout.readline()):
        assert line, "".join(lines)  # the process ended before its worker started
        lines.append(line)
    worker_pid = int(line.rsplit("pid=", 1)[1])
    dev.send_signal(signal.SIGHUP)  # what the terminal sends when its window closes
    output, _ = dev.communicate(timeout=40)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and worker_alive(worker_pid):
        time.sleep(0.1)
    assert not worker_alive(worker_pid), output
    assert "cloudtask_worker dispatched=" in output, output  # it finished as after a SIGTERM
    assert "Traceback" not in output, output
    assert dev.returncode == 129  # 128 + SIGHUP, as a shell reports a hang-up


def worker_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
