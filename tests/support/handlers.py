"""Requests made straight to Django's WSGI and ASGI handlers, with any headers and framing.

The test client fills in Content-Length and refuses to read past the body it was given; a
real server does neither, so hostile framing is tested against the handlers themselves.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@contextmanager
def _connections_kept() -> Iterator[None]:
    """Keep the test's database connection open across the request, as Django's Client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def call_wsgi(
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
) -> Answer:
    """Send one request through Django's WSGI handler; headers are sent exactly as given."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = "HTTP_" + key
        environ[key] = value
    started: list[Any] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
        started.extend([int(status.split()[0]), dict(response_headers)])

    with _connections_kept():
        chunks = WSGIHandler()(environ, start_response)
        content = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
    return Answer(started[0], started[1], content)


def call_asgi(
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    chunks: Sequence[bytes],
) -> Answer:
    """Send one request through Django's ASGI handler, the body in ``chunks`` as they arrive.

    No Content-Length is added: without one in ``headers`` the body is chunked.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with _connections_kept():
        asyncio.run(ASGIHandler()(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return Answer(start["status"], response_headers, content)
