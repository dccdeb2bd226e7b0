"""A throwaway PostgreSQL server from the distribution's packages, for marked tests.

A pytest plugin (see the root conftest): the session-wide ``postgres`` fixture starts one
server on first use, or skips the test when none is installed.

``apt-get install postgresql`` puts the server's programs in /usr/lib/postgresql/<version>/bin
without starting anything this needs: each test session makes its own cluster in a temporary
directory, listening on 127.0.0.1 on a free port, and removes it afterwards. As root, the
server runs as the ``postgres`` user the package creates (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Set in CI: a missing server fails the marked tests instead of skipping them.
REQUIRE_ENV = "CLOUDTASK_REQUIRE_POSTGRES"


def find_bindir() -> Path | None:
    """Return the directory of initdb and pg_ctl, newest version first (None: not installed)."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One cluster: ``start()``, ``database(name)`` for Django settings, ``stop()``."""

    user = "cloudtask"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="cloudtask-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.as_server_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_server_user, str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.base / "server.log"
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}{detail}")

    def start(self) -> None:
        if self.as_server_user:
            shutil.chown(self.base, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8")
        settings = (
            f"-p {self.port} -h 127.0.0.1 -k {self.base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.base / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", settings, "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, name: str) -> dict[str, Any]:
        """Create database ``name``; return its Django settings."""
        import psycopg

        with psycopg.connect(**self._connect("postgres"), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.user,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }

    def _connect(self, name: str) -> dict[str, Any]:
        return {"dbname": name, "user": self.user, "host": "127.0.0.1", "port": self.port}


@pytest.fixture(scope="session", name="postgres")
def postgres_fixture() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session; skipped without one, unless CI requires it."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no PostgreSQL server: apt-get install postgresql")
        pytest.skip("no PostgreSQL server (apt-get install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.stop()
