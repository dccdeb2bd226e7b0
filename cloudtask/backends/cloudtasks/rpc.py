"""One Cloud Tasks API call, with transient errors retried under a deadline.

Pushes and management calls share it: the process's client, a time limit per call, jittered
exponential backoff on UNAVAILABLE and DEADLINE_EXCEEDED, and one clear error when the
deadline passes.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from ...exceptions import CloudTasksUnavailable
from . import errors

logger = logging.getLogger("cloudtask")


@dataclass(frozen=True)
class RetryPolicy:
    """How long one call keeps retrying, and how it paces its attempts (seconds)."""

    #: How long the call keeps retrying transient errors.
    deadline: float
    #: The time limit of one attempt.
    attempt_timeout: float
    #: The first pause after a transient error; it doubles up to ``max_backoff``.
    initial_backoff: float
    max_backoff: float

    def backoff(self, attempts: int) -> float:
        """Return the pause after failed attempt number ``attempts``."""
        # Full jitter, so callers that failed together do not retry together.
        ceiling = min(self.initial_backoff * 2 ** (attempts - 1), self.max_backoff)
        return random.uniform(ceiling / 2, ceiling)


def call(
    method: Any,
    request: Any,
    *,
    policy: RetryPolicy,
    what: str,
    exists_ok_after: int | None = None,
    retry: bool = True,
    action: str = "accept the task",
    again: str = "push again later",
) -> Any:
    """Call the API, retrying transient errors with backoff until the policy's deadline.

    Returns None for ALREADY_EXISTS on an attempt after the first ``exists_ok_after``.
    Other errors are raised as they come; a transient one that outlasts the deadline (or
    any transient one when ``retry`` is false) as ``CloudTasksUnavailable``. ``what``
    names the call in log lines; ``action`` and ``again`` word that error.
    """
    from google.api_core.exceptions import GoogleAPICallError

    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        remaining = policy.deadline - (time.monotonic() - started)
        try:
            timeout = max(min(policy.attempt_timeout, remaining), 0.1)
            return method(request=request, retry=None, timeout=timeout)
        except GoogleAPICallError as exc:
            status = errors.code(exc)
            landed = exists_ok_after is not None and attempts > exists_ok_after
            if landed and status == "ALREADY_EXISTS":
                return None
            if not errors.is_transient(exc):
                raise
            pause = policy.backoff(attempts)
            elapsed = time.monotonic() - started
            if not retry or elapsed + pause >= policy.deadline:
                raise CloudTasksUnavailable(
                    attempts, elapsed, errors.describe(exc), action, again
                ) from exc
            logger.warning("%s status=retry attempt=%d reason=%s", what, attempts, status)
            time.sleep(pause)
