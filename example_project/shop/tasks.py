"""The example's tasks: each shows one thing cloudtask does."""

from __future__ import annotations

import logging

from cloudtask import CloudTaskRequest, periodic, task

logger = logging.getLogger(__name__)


class PaymentDeclined(Exception):
    """The (pretend) payment provider said no."""


@task(queue="default")
def add(request: CloudTaskRequest, a: int = 5, b: int = 4) -> int:
    """The smallest task: its return value is in the endpoint's JSON answer."""
    return a + b


@task
def send_reminder(request: CloudTaskRequest, order_id: int) -> str:
    """Pushed with .schedule(countdown=...): runs when its ETA comes."""
    logger.info("reminder order=%s eta=%s", order_id, request.eta)
    return f"reminded about order {order_id}"


@task(named=True)
def rebuild_search_index(request: CloudTaskRequest) -> str:
    """Named: a second push while one is queued raises TaskAlreadyExists."""
    return "index rebuilt"


@task
def sync_inventory(request: CloudTaskRequest, sku: str) -> str:
    """Flaky on purpose: fails on the first two attempts, then succeeds."""
    if request.retry_count < 2:
        raise ConnectionError(f"warehouse unreachable (attempt {request.retry_count + 1})")
    return f"{sku} synced after {request.retry_count} retries"


@task(queue="payments")
def charge_card(request: CloudTaskRequest, order_id: int) -> None:
    """Always fails: the payments queue allows 3 attempts, then keeps it as failed."""
    raise PaymentDeclined(f"order {order_id}: card declined")


@periodic("0 3 * * *", time_zone="Europe/Zurich", name="nightly-digest")
@task
def nightly_digest(request: CloudTaskRequest, full: bool = False) -> str:
    """Periodic: a Cloud Scheduler job in production; here the local worker fires it."""
    return f"{'full' if full else 'short'} digest, run {request.call_id}"


@task
def total(request: CloudTaskRequest, numbers: list[int]) -> int:
    """A chord's body in the demo: it receives its group's results, in order."""
    return sum(numbers)
