"""The local worker's test helpers: a fake clock, a scripted HTTP server, draining a worker.

A pytest plugin (see the root conftest): the ``scripted`` fixture pushes to the local queue
and delivers to a ScriptedServer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from cloudtask import conf
from cloudtask.backends.local.worker import Worker

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    """The worker's clock, moved by hand so backoff and rate limits are exact."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 answering with scripted statuses; records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        #: (status, headers) or (status, headers, body) per request; then 200 "ok".
        self.answers: list[tuple[Any, ...]] = []
        self.delay = 0.0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "at": time.monotonic(),
                        }
                    )
                    answer = server.answers.pop(0) if server.answers else (200, {})
                status, headers, *rest = answer
                content = rest[0] if rest else b"ok"
                time.sleep(server.delay)
                with server._lock:
                    server.active -= 1
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has headers only
                    self.wfile.write(content)

            # Cloud Tasks sends any of its HTTP methods (push_http); each is answered alike.
            do_GET = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/_tasks/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def drain(worker: Worker, rounds: int = 20) -> None:
    """Run the worker until nothing is due or in flight (bounded)."""
    for _ in range(rounds):
        had_in_flight = worker.in_flight
        started = worker.run_once()
        worker.finish_in_flight(timeout=10)
        if not started and not had_in_flight:
            break
    worker.close()


@pytest.fixture(name="scripted")
def scripted_fixture() -> Iterator[ScriptedServer]:
    """Push to the local queue, delivering to a ScriptedServer on 127.0.0.1."""
    server = ScriptedServer()
    with override_settings(CLOUDTASK={"BACKEND": conf.LOCAL_BACKEND, "URL": server.url}):
        yield server
    server.close()
