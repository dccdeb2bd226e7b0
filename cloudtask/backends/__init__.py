"""Backends move finished task messages; this package loads the configured one.

``base`` holds what every backend shares, ``loading`` finds the configured backend; each
backend lives in its own module or package (``cloudtasks/``, ``local/``, ``immediate``,
``capture``). Code imports from those modules: this module only re-exports for users.
"""

from .base import BaseBackend, TaskMessage
from .loading import get_backend, load_backend, override_backend

__all__ = ["BaseBackend", "TaskMessage", "get_backend", "load_backend", "override_backend"]
