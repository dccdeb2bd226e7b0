"""Building and posting task requests, and running commands, in tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from cloudtask import signing
from cloudtask.request import cloud_tasks_headers

ENDPOINT = "/_tasks/"


def post(
    body: bytes,
    *,
    signature: str | None = "auto",
    path: str = ENDPOINT,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Any:
    """POST ``body`` to the endpoint with a real signature unless one is given."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    sent = dict(headers or {})
    if signature == "auto":
        sent[signing.SIGNATURE_HEADER] = signing.sign(path, body)
    elif signature is not None:
        sent[signing.SIGNATURE_HEADER] = signature
    return client.generic(method, path, body, content_type="application/json", headers=sent)


def delivery_headers(**overrides: Any) -> dict[str, str]:
    """Return Cloud Tasks delivery headers (queue default, task name t1)."""
    options: dict[str, Any] = {"queue": "default", "name": "t1", "eta": None, **overrides}
    return cloud_tasks_headers(**options)


def run_command(*argv: str) -> str:
    """Run a management command; return what it printed on stdout."""
    out = io.StringIO()
    call_command(*argv, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def command_exit(*argv: str) -> tuple[int, str]:
    """Run a command that must fail; return its exit code and message."""
    with pytest.raises(CommandError) as caught:
        run_command(*argv)
    return caught.value.returncode, str(caught.value)


@contextmanager
def no_receiver_errors() -> Iterator[None]:
    """Fail if a signal receiver (the results recorder, say) raised inside the block.

    Receivers' errors are logged, never raised, so a delivery goes on; a test must look.
    """
    failures: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "signal_receiver_failed" in record.getMessage():
                failures.append(record)

    handler = Collect()
    logger = logging.getLogger("cloudtask")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not failures, [f"{r.getMessage()}: {r.exc_info and r.exc_info[1]}" for r in failures]
