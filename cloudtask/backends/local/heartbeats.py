"""Worker heartbeats: each worker says it is alive; the others take back a dead one's tasks.

A lease alone lasts the dispatch deadline plus a grace (10 min 5 s by default), so a worker
killed mid-delivery would hold its tasks that long. Each worker beats every
:data:`BEAT_EVERY`; one silent for :data:`DEAD_AFTER` is dead, and its running tasks' leases
end at once. The next claim takes them, counting the lost attempt as Cloud Tasks counts a
dispatch that crashed. A worker that was only paused (a suspended laptop) and comes back
finds its answers superseded: its leases went to others, so nothing runs twice in one lease.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from ...models import LocalTask, LocalWorker

#: How often a worker records that it is alive.
BEAT_EVERY = timedelta(seconds=5)
#: How long a worker may stay silent before the others take its tasks back.
DEAD_AFTER = timedelta(seconds=30)
# Leases are due once they end strictly before the claim's clock reading.
_A_MOMENT = timedelta(milliseconds=1)


def beat(name: str, now: datetime) -> None:
    """Record that worker ``name`` (this process) is alive at ``now``."""
    updated = LocalWorker.objects.filter(name=name).update(seen_at=now)
    if not updated:
        # First beat, or the others took this worker for dead and removed it: (re)join.
        LocalWorker.objects.create(
            name=name, host=socket.gethostname()[:255], pid=os.getpid(), started_at=now, seen_at=now
        )


def reap(now: datetime) -> list[tuple[str, int]]:
    """End the leases of workers silent since ``now - DEAD_AFTER``; return (worker, tasks)."""
    dead = list(
        LocalWorker.objects.filter(seen_at__lt=now - DEAD_AFTER).values_list("name", flat=True)
    )
    if not dead:
        return []
    reaped = []
    for name in dead:
        count = LocalTask.objects.filter(status="running", lease_worker=name).update(
            lease_expires=now - _A_MOMENT
        )
        reaped.append((name, count))
    LocalWorker.objects.filter(name__in=dead, seen_at__lt=now - DEAD_AFTER).delete()
    return reaped


def leave(name: str, now: datetime) -> None:
    """Remove worker ``name``'s heartbeat as it stops.

    Tasks it still holds (it exits without waiting for their answers) go to other workers
    at once; an answer that still comes before another worker takes the task is recorded.
    """
    LocalTask.objects.filter(status="running", lease_worker=name).update(
        lease_expires=now - _A_MOMENT
    )
    LocalWorker.objects.filter(name=name).delete()
