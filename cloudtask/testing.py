"""Helpers for testing code that pushes tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .backends.capture import CaptureBackend, CapturedHttpRequest, CapturedTask, CapturedTasks
from .backends.loading import override_backend

__all__ = ["CapturedHttpRequest", "CapturedTask", "CapturedTasks", "capture_tasks"]


@contextmanager
def capture_tasks() -> Iterator[CapturedTasks]:
    """Record every push made inside the block instead of sending it.

    The yielded list holds a :class:`CapturedTask` per push; ``run_all()`` POSTs each one
    through the real endpoint, in-process, as Cloud Tasks would.
    """
    backend = CaptureBackend()
    with override_backend(backend):
        yield backend.captured
