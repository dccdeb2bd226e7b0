"""The limits of a local queue, shared by every worker through the queue's database row.

Cloud Tasks applies ``max_dispatches_per_second``, ``max_concurrent_dispatches`` and the
Retry-After of a 429/503 answer to the queue, not to one dispatcher. So do we: the token
bucket and the hold live on the ``LocalQueue`` row, the concurrency limit counts the queue's
running tasks whose lease holds, and claims of one queue are serialized on that row.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import Q

from ...models import LocalQueue
from .sql import RUNNING, execute, fetch, sql, when

if TYPE_CHECKING:
    from ...queues import QueueConfig


#: A stored bucket time this far ahead of a worker's clock is another clock (a test's, a host
#: set wrong), not a race between claims: the bucket starts again from the worker's time.
CLOCK_JUMP = 60.0


class TokenBucket:
    """Cloud Tasks-style rate limit: ``rate`` tokens a second, a burst of one second's worth."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, min(rate, 100.0))
        self.tokens = self.capacity
        self.updated = now

    def available(self, now: float) -> int:
        """Return how many dispatches may start now."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return math.floor(self.tokens + 1e-9)

    def take(self, count: int) -> None:
        """Spend ``count`` tokens."""
        self.tokens -= count


def lock_queue(queue: str) -> None:
    """Serialize the claims of ``queue`` on its row until the transaction ends."""
    if not execute(sql("lock"), [queue]):
        LocalQueue.objects.get_or_create(name=queue)
        execute(sql("lock"), [queue])


def within_limits(
    queue: str, limit: int, now: datetime, config: QueueConfig | None
) -> tuple[TokenBucket | None, int, bool]:
    """Return the queue's token bucket, how many may start now, and whether the rate binds."""
    if config is None:
        return None, limit, False
    moment = when(now)
    [(tokens, tokens_at, held, running)] = fetch(
        sql("limits"), [moment, queue, RUNNING, moment, queue]
    )
    if held:
        return None, 0, False  # a 429/503 Retry-After holds the whole queue
    stamp = now.timestamp()
    bucket = TokenBucket(config.max_dispatches_per_second, stamp)
    if tokens is not None and tokens_at is not None and tokens_at - stamp < CLOCK_JUMP:
        # A worker may have read its clock before another worker's later claim committed: the
        # bucket's time never moves back, so no interval is refilled twice.
        bucket.tokens, bucket.updated = min(tokens, bucket.capacity), tokens_at
        stamp = max(stamp, tokens_at)
    available = bucket.available(stamp)
    room = min(limit, config.max_concurrent_dispatches - int(running))
    return bucket, min(room, available), available < room


def save_bucket(queue: str, bucket: TokenBucket) -> None:
    """Store the token bucket of ``queue`` after a claim spent some of it."""
    execute(sql("bucket"), [bucket.tokens, bucket.updated, queue])


def hold(queue: str, until: datetime) -> None:
    """Start no task of ``queue`` before ``until`` (a 429/503 answer's Retry-After)."""
    LocalQueue.objects.filter(name=queue).filter(
        Q(held_until__isnull=True) | Q(held_until__lt=until)
    ).update(held_until=until)
