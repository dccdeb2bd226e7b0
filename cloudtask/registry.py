"""Task names to task definitions: the only way the endpoint finds a function."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .exceptions import DuplicateTaskName, UnknownTask

if TYPE_CHECKING:
    from .task import Task


class Registry:
    """A thread-safe mapping of registry names to task definitions."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._lock = threading.Lock()
        self._audiences: frozenset[str] | None = None

    def register(self, task: Task[Any, Any]) -> None:
        """Add ``task``; a different function under the same name is an error."""
        with self._lock:
            existing = self._tasks.get(task.name)
            if existing is not None and existing.path != task.path:
                raise DuplicateTaskName(
                    f"Task name {task.name!r} is registered twice: by {existing.path} and by "
                    f"{task.path}. Give one of them another name with @task(name=...)."
                )
            # The same function seen again is a module re-import (autoreload): replace it.
            self._tasks[task.name] = task
            self._audiences = None

    def unregister(self, name: str) -> None:
        """Remove the task registered under ``name``, if any."""
        with self._lock:
            self._tasks.pop(name, None)
            self._audiences = None

    def get(self, name: str) -> Task[Any, Any]:
        """Return the task registered under ``name`` or raise UnknownTask."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(f"no task is registered under {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    @contextmanager
    def isolated(self) -> Iterator[Registry]:
        """Restore the registry as it was when the block is left (a reset hook for tests)."""
        with self._lock:
            saved = dict(self._tasks)
        try:
            yield self
        finally:
            with self._lock:
                self._tasks = saved
                self._audiences = None

    def audiences(self) -> frozenset[str]:
        """Return the OIDC audiences registered tasks declare (``@task(audience=...)``)."""
        found = self._audiences
        if found is None:
            with self._lock:
                tasks = list(self._tasks.values())
            found = self._audiences = frozenset(t.audience for t in tasks if t.audience)
        return found


#: The process-wide registry that @task fills and the endpoint reads.
registry = Registry()
