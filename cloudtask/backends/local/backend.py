"""The local development queue: tasks wait in the project's database for ``cloudtask_worker``.

A push stores exactly the HTTP request Cloud Tasks would make. ``manage.py cloudtask_worker``
claims due tasks with a lease and POSTs them to the endpoint with Cloud Tasks' headers,
retries and limits, so development runs the production code path. Without
``CLOUDTASK["URL"]`` tasks go to ``http://127.0.0.1:8000`` plus the endpoint's path, where
``runserver`` listens by default.
"""

from __future__ import annotations

from django.db import DatabaseError, connection

from ...models import LocalQueue
from ...queues import QueueConfig
from ..base import BaseBackend, TaskMessage, endpoint_path, generated_task_id
from . import claims, store
from .manager import LocalManager, load_config

#: Where ``runserver`` listens unless told otherwise.
DEFAULT_ORIGIN = "http://127.0.0.1:8000"


class LocalBackend(BaseBackend):
    """Stores each push in the database; ``manage.py cloudtask_worker`` delivers it."""

    development = True
    #: The worker signs development OIDC tokens where Cloud Tasks would send real ones.
    trusts_development_tokens = True
    #: Queue changes made with the admin or the commands show within seconds.
    queue_config_ttl = 5.0

    def default_url(self) -> str:
        """Return runserver's default address plus the endpoint's path."""
        return DEFAULT_ORIGIN + endpoint_path()

    def manager(self) -> LocalManager:
        """Return the manager of the local queues (see ``cloudtask.control``)."""
        return LocalManager()

    def push(self, message: TaskMessage) -> str:
        task_id = message.task_id or generated_task_id()
        for tries in range(1, claims.CLAIM_TRIES + 1):
            try:
                return store.add(message, task_id)
            except DatabaseError as exc:
                # Under REPEATABLE READ or SERIALIZABLE a push can lose to a worker's claim;
                # outside a transaction of the caller's, it can simply be made again.
                retry = claims.is_conflict(exc) and not connection.in_atomic_block
                if not retry or tries == claims.CLAIM_TRIES:
                    store.require_tables()  # before migrate: say so, not "no such table"
                    raise
        raise AssertionError("unreachable")

    def read_queue_config(self, name: str) -> QueueConfig | None:
        """Read the queue's stored retry policy (None for a queue not in the database)."""
        try:
            row = LocalQueue.objects.filter(name=name, deleted_at=None).first()
        except DatabaseError:
            return None  # before migrate; the push and the worker say so
        return None if row is None else load_config(name, row.config)
