"""A local queue's rate limit: one token bucket on the queue's row, shared by every worker."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import transaction

from cloudtask.backends.local.limits import lock_queue, save_bucket, within_limits
from cloudtask.models import LocalQueue
from cloudtask.queues import QueueConfig
from tests.support.worker import T0

pytestmark = pytest.mark.django_db

FOUR_A_SECOND = QueueConfig(name="q", max_dispatches_per_second=4)


def claim(now: datetime, wanted: int = 100) -> int:
    """Take what the bucket allows at ``now``, as one worker's claim does; return how many."""
    with transaction.atomic():
        lock_queue("q")
        bucket, allowed, _ = within_limits("q", wanted, now, FOUR_A_SECOND)
        assert bucket is not None
        bucket.take(allowed)
        save_bucket("q", bucket)
    return allowed


def test_a_full_bucket_allows_one_seconds_worth_then_one_per_interval() -> None:
    assert claim(T0) == 4
    assert claim(T0 + timedelta(seconds=0.2)) == 0
    assert claim(T0 + timedelta(seconds=0.25)) == 1
    assert claim(T0 + timedelta(seconds=1.25)) == 4


def test_a_claim_with_an_older_clock_reading_refills_no_interval_twice() -> None:
    # Worker A claims at T0; worker B read its clock 0.1 s earlier and claims just after.
    assert claim(T0) == 4
    assert claim(T0 - timedelta(seconds=0.1)) == 0
    # The bucket's time stays at A's claim: B's older reading must not move it back, or the
    # 0.1 s between the readings would be refilled a second time.
    assert LocalQueue.objects.get(name="q").tokens_at == T0.timestamp()
    assert claim(T0 + timedelta(seconds=0.2)) == 0
    assert claim(T0 + timedelta(seconds=0.25)) == 1


def test_a_clock_far_behind_the_bucket_starts_it_again() -> None:
    # A stored time a minute or more ahead is another clock, not a race: no queue waits for it.
    assert claim(T0) == 4
    assert claim(T0 - timedelta(minutes=5)) == 4
