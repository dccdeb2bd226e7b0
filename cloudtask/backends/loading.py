"""Loading the configured backend, in one place, and the overrides ``capture_tasks()`` uses."""

from __future__ import annotations

import threading
from functools import cache

from django.utils.module_loading import import_string

from .. import conf
from ..exceptions import ConfigurationError
from .base import BaseBackend

_overrides: list[BaseBackend] = []
_lock = threading.Lock()


def load_backend(path: str) -> BaseBackend:
    """Import and instantiate the backend at ``path``, explaining any failure."""
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(
            f"CLOUDTASK['BACKEND'] = {path!r} could not be imported ({exc}). Use one of "
            f"{conf.CLOUD_TASKS_BACKEND!r}, {conf.LOCAL_BACKEND!r} or {conf.IMMEDIATE_BACKEND!r}."
        ) from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, BaseBackend)):
        raise ConfigurationError(
            f"CLOUDTASK['BACKEND'] = {path!r} is not a subclass of "
            "cloudtask.backends.base.BaseBackend."
        )
    return backend_class()


@cache
def configured_backend() -> BaseBackend:
    """Return the backend ``CLOUDTASK["BACKEND"]`` names (made once per settings)."""
    conf.require_installed()
    return load_backend(conf.backend_path())


conf.on_change(configured_backend.cache_clear)


def get_backend() -> BaseBackend:
    """Return the backend pushes go to: an active override, else the configured one."""
    if _overrides:
        return _overrides[-1]
    return configured_backend()


def overridden_by_trusting_backend() -> bool:
    """Return whether an active override trusts development tokens (``capture_tasks()``)."""
    return any(backend.trusts_development_tokens for backend in _overrides)


class override_backend:
    """Send every push in the block to ``backend`` (process-wide, so threads see it too)."""

    def __init__(self, backend: BaseBackend) -> None:
        self.backend = backend

    def __enter__(self) -> BaseBackend:
        with _lock:
            _overrides.append(self.backend)
        return self.backend

    def __exit__(self, *exc_info: object) -> None:
        with _lock:
            _overrides.remove(self.backend)
