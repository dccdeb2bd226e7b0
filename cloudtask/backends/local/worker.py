"""The local worker: delivers LocalBackend tasks over HTTP as Cloud Tasks would.

``manage.py cloudtask_worker`` is a thin shell around :class:`Worker`. The main thread
claims due tasks and records outcomes in the database; a small pool of daemon threads only
makes the HTTP requests, each keeping its connections open between deliveries.
"""

from __future__ import annotations

import contextlib
import logging
import queue as queue_module
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ... import queues
from ...exceptions import ConfigurationError
from ...queues import QueueConfig
from . import claims, heartbeats, store
from .claims import Claimed, DueQueue
from .delivery import (
    Answer,
    close_session,
    dispatch,
    dispatch_line,
    outcome_fields,
    unreachable_line,
)
from .limits import hold
from .manager import load_config

logger = logging.getLogger("cloudtask.worker")

PRUNE_EVERY = timedelta(minutes=1)
#: How often the worker's ``tick`` (periodic tasks) runs at most.
TICK_EVERY = timedelta(seconds=1)
#: How long a finished delivery may wait for others, to be recorded with them.
BATCH_WAIT = 0.02


@dataclass
class Summary:
    """What one worker run did."""

    dispatched: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    #: Answers not recorded because the task was no longer this worker's: its lease ran out
    #: (or this worker was taken for dead) and another worker took it, or it was deleted or
    #: purged meanwhile. The task itself is not lost: its current holder records it.
    superseded: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """Return the summary as one ``key=value`` line."""
        elapsed = time.monotonic() - self.started
        return (
            f"dispatched={self.dispatched} succeeded={self.succeeded} retried={self.retried} "
            f"failed={self.failed} superseded={self.superseded} elapsed_s={elapsed:.2f}"
        )


class Worker:
    """Claims due tasks with a lease and delivers them, honouring each queue's limits.

    A queue's rate and concurrency limits and its Retry-After hold are kept in the database
    (see :mod:`cloudtask.backends.local.limits`), so they hold across worker processes.
    """

    def __init__(
        self,
        *,
        queues: Iterable[str] | None = None,
        concurrency: int = 10,
        poll_interval: float = 0.5,
        clock: Callable[[], datetime] = timezone.now,
        log: Callable[[str], None] | None = None,
        tick: Callable[[datetime], object] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}.")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}.")
        self.queues = sorted(set(queues)) if queues else None
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.clock = clock
        self.log = log or logger.info
        #: Called with the time at most every TICK_EVERY while the worker runs (the
        #: firing of periodic tasks), returning how many tasks it pushed; what it raises
        #: is logged, never fatal.
        self.tick = tick
        self._last_tick: datetime | None = None
        self.summary = Summary()
        #: This worker's heartbeat name (``LocalWorker.name``), which its leases carry.
        self.name = uuid.uuid4().hex
        self._last_beat: datetime | None = None
        self.stopping = False
        self.stopped = False
        self._in_flight: dict[int, Claimed] = {}
        #: Each queue's config as read at the last poll that served it.
        self._configs: dict[str, QueueConfig] = {}
        self._jobs: queue_module.Queue[Claimed | None] = queue_module.Queue()
        self._results: queue_module.Queue[tuple[Claimed, Answer]] = queue_module.Queue()
        self._unrecorded: list[tuple[Claimed, Answer]] = []
        self._threads: list[threading.Thread] = []
        self._last_prune: datetime | None = None
        self._wake = threading.Event()
        #: URLs where nothing answered, said once until something answers there again.
        self._unreachable: set[str] = set()
        self._throttled = False
        #: What a signal handler has to say; the loop says it, outside the handler.
        self._notice = ""

    @property
    def in_flight(self) -> int:
        """The number of deliveries started and not yet recorded."""
        return len(self._in_flight)

    def run_once(self) -> int:
        """Record finished deliveries, then claim and start what the limits allow."""
        self._record_finished()
        started, self._throttled = 0, False
        try:
            now = self.clock()
            # Beating even while full or stopping: deliveries under way keep their leases.
            self._beat(now)
            if self.stopping or len(self._in_flight) >= self.concurrency:
                return 0
            self._prune(now)
            if self._tick(now):
                now = self.clock()  # what it pushed is due from its push on
            for due in claims.serve(now, self.queues):
                started += self._start_queue(due, now)
        except DatabaseError as exc:
            _database_error(exc, "claim")
        return started

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for a delivery to finish; record all that did."""
        if not self._in_flight:
            self._wake.wait(timeout)
            return 0
        try:
            self._unrecorded.append(self._results.get(timeout=timeout))
        except queue_module.Empty:
            return 0
        # Let a few more finish: recording and claiming in batches saves database round trips.
        batch_end = time.monotonic() + BATCH_WAIT
        while len(self._unrecorded) < len(self._in_flight) // 2:
            try:
                remaining = batch_end - time.monotonic()
                self._unrecorded.append(self._results.get(timeout=max(remaining, 0.0)))
            except queue_module.Empty:
                break
        return self._record_finished()

    def finish_in_flight(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until every started delivery is recorded."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            self.wait(min(0.1, max(deadline - time.monotonic(), 0.0)))
            self._record_finished()

    def run(self, *, burst: bool = False) -> Summary:
        """Deliver until stopped; with ``burst``, until no task is due and none in flight."""
        while not self.stopped:
            self._say_notice()
            started = self.run_once()
            if self.stopping and not self._in_flight:
                break
            if burst and not started and not self._in_flight and not self._anything_due():
                break
            if not started:
                self.wait(self._idle_timeout())
        self.stopped = True
        self._say_notice()
        if self._in_flight:
            self._leave()  # exiting at once: what it holds goes to other workers now
        else:
            self.close()
        return self.summary

    def _beat(self, now: datetime) -> None:
        """Say this worker is alive; take back the tasks of workers that stopped saying so."""
        if self._last_beat is not None and now - self._last_beat < heartbeats.BEAT_EVERY:
            return
        heartbeats.beat(self.name, now)
        self._last_beat = now
        for name, count in heartbeats.reap(now):
            if count:
                self.log(
                    f"worker {name} gave no sign of life for "
                    f"{heartbeats.DEAD_AFTER.total_seconds():g} s: its {count} running "
                    "tasks are attempted again"
                )

    def _tick(self, now: datetime) -> bool:
        """Call ``tick`` if it is time; return whether it says it pushed something."""
        if self.tick is None or (
            self._last_tick is not None and abs(now - self._last_tick) < TICK_EVERY
        ):
            return False
        self._last_tick = now
        try:
            return bool(self.tick(now))
        except DatabaseError as exc:
            _database_error(exc, "tick")  # the deliveries go on; the next tick tries again
        except Exception:
            logger.exception("worker status=tick-failed")
        return False

    def _leave(self) -> None:
        """Remove this worker's heartbeat; tasks it still holds go to others at once."""
        try:
            heartbeats.leave(self.name, self.clock())
        except DatabaseError as exc:
            _database_error(exc, "leave")

    def _say_notice(self) -> None:
        notice, self._notice = self._notice, ""
        if notice:
            self.log(notice)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery threads once they are idle, closing their connections.

        The worker's heartbeat goes too: it holds no lease any more.
        """
        self._leave()
        threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def request_stop(self) -> None:
        """First call: finish in-flight deliveries and stop; second call: stop at once."""
        self._mark_stop()
        self._wake.set()

    def _mark_stop(self) -> None:
        if self.stopping:
            self.stopped = True
        self.stopping = True

    def install_signal_handlers(self) -> Callable[[], None]:
        """Make SIGINT and SIGTERM call :meth:`request_stop`; return a function undoing it."""

        def handle(signum: int, frame: FrameType | None) -> None:
            # No I/O here: the signal may arrive in the middle of a write to the same stream,
            # which Python refuses to re-enter. The loop says it (:meth:`_say_notice`).
            if self.stopping:
                self._notice = (
                    "second signal: exiting now; unfinished tasks return after their lease"
                )
            else:
                self._notice = (
                    f"finishing {len(self._in_flight)} in-flight deliveries; "
                    "send the signal again to exit at once"
                )
            # Flags only, no Event.set(): the handler runs in the main thread, possibly inside
            # the Event's own wait() holding its lock, which set() would wait for forever. The
            # loop sees the flags within one poll interval.
            self._mark_stop()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _idle_timeout(self) -> float:
        # A queue held back by its rate limit gets a token within 1/rate seconds.
        return min(self.poll_interval, 0.05) if self._throttled else self.poll_interval

    def _anything_due(self) -> bool:
        try:
            return bool(claims.due_queues(self.clock(), self.queues))
        except DatabaseError:
            connection.close()
            return True

    def _config(self, name: str) -> QueueConfig:
        return self._configs.get(name) or queues.get(name)

    def _start_queue(self, due: DueQueue, now: datetime) -> int:
        name = due.name
        try:
            # Read once per poll: update_queue takes effect at the next one.
            self._configs[name] = load_config(name, due.config)
        except ConfigurationError as exc:
            logger.error("worker status=bad_config queue=%s error=%s", name, exc)
            return 0
        capacity = self.concurrency - len(self._in_flight)
        if capacity <= 0:
            return 0
        taken = claims.lease(
            name,
            capacity,
            now,
            config=self._configs[name],
            forced_only=due.forced_only,
            worker=self.name,
        )
        self._throttled |= taken.throttled
        for item in taken.claimed:
            self._start(item, now)
        return len(taken.claimed)

    def _start(self, claimed: Claimed, now: datetime) -> None:
        while len(self._threads) < self.concurrency:
            thread = threading.Thread(target=self._deliver_forever, daemon=True)
            thread.name = f"cloudtask-worker-{len(self._threads)}"
            thread.start()
            self._threads.append(thread)
        self._in_flight[claimed.id] = claimed
        config = self._config(claimed.queue)
        previous = claimed.dispatch_count - 1
        if claimed.reclaimed and config.exhausted(previous, now - claimed.first_attempt_at):
            # The worker making the last allowed attempt stopped before recording an answer;
            # its attempt counts, as Cloud Tasks counts one that timed out.
            answer = Answer(None, "the lease ran out", "DEADLINE_EXCEEDED", dispatched=False)
            self._results.put((claimed, answer))
            return
        self.summary.dispatched += 1
        self._jobs.put(claimed)

    def _deliver_forever(self) -> None:
        while True:
            claimed = self._jobs.get()
            if claimed is None:
                close_session()
                return
            try:
                answer = dispatch(claimed)
            except Exception as exc:  # a bug must not kill the thread and strand the task
                logger.exception("worker status=dispatch_error name=%s", claimed.task_id)
                answer = Answer(status=None, excerpt="", reason=type(exc).__name__)
            self._results.put((claimed, answer))
            self._wake.set()

    def _record_finished(self) -> int:
        while True:
            try:
                self._unrecorded.append(self._results.get_nowait())
            except queue_module.Empty:
                break
        self._wake.clear()
        if not self._unrecorded:
            return 0
        now = self.clock()
        batch = self._unrecorded
        decided = [
            outcome_fields(claimed, answer, self._config(claimed.queue), now)
            for claimed, answer in batch
        ]
        try:
            pairs = list(zip(batch, decided, strict=True))
            # 429/503 with Retry-After: the whole queue waits, in every worker.
            holds = [
                (claimed.queue, now + answer.retry_after)
                for (claimed, answer), (outcome, _) in pairs
                if outcome == "retry" and answer.retry_after
            ]
            # The batch is one statement (see claims.record); with holds, one transaction,
            # so that an answer is never recorded without the hold it asks for.
            with transaction.atomic() if holds else contextlib.nullcontext():
                stored = claims.record([(claimed, fields) for (claimed, _), (_, fields) in pairs])
                for queue, until in holds:
                    hold(queue, until)
        except DatabaseError as exc:
            # Kept and recorded on a later iteration; the lease keeps the tasks ours.
            _database_error(exc, "record")
            return 0
        self._unrecorded = []
        for (claimed, answer), (outcome, fields) in zip(batch, decided, strict=True):
            outcome = outcome if claimed.id in stored else "superseded"
            self._finished(claimed, answer, outcome, fields)
        return len(batch)

    def _finished(
        self, claimed: Claimed, answer: Answer, outcome: str, fields: dict[str, Any]
    ) -> None:
        del self._in_flight[claimed.id]
        counter = _COUNTERS[outcome]
        setattr(self.summary, counter, getattr(self.summary, counter) + 1)
        self.log(dispatch_line(claimed, answer, outcome, fields))
        if answer.reason != "UNAVAILABLE":
            self._unreachable.discard(claimed.url)  # it answers (again): say it anew next time
        elif claimed.url not in self._unreachable:
            self._unreachable.add(claimed.url)
            self.log(unreachable_line(claimed, answer))

    def _prune(self, now: datetime) -> None:
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            store.prune(now)


def _database_error(exc: DatabaseError, during: str) -> None:
    """Note a failed database step; the loop tries it again at its next turn."""
    if claims.is_conflict(exc):
        # Another worker's transaction won (strict isolation levels, deadlocks): normal
        # under load, and the connection is fine.
        logger.debug("worker status=conflict during=%s error=%s", during, exc)
        return
    # The database may be restarting or locked by another writer: reconnect next time.
    logger.warning("worker status=db_error during=%s error=%s", during, exc)
    connection.close()


_COUNTERS = {
    "succeeded": "succeeded",
    "retry": "retried",
    "failed": "failed",
    "superseded": "superseded",
}
