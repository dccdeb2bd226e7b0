"""The workflow engine: steps stored in the database, advanced exactly once per step.

Cloud Tasks delivers each step at least once. A step is advanced by the transaction that
records its result, and every such transaction first writes the workflow's row, so the
transitions of one workflow are serialized: whether a group is complete is decided by
reading its members under that lock, never by a counter. The steps that become ready are
pushed after the commit under ids derived from the workflow and step, so a repeated push is
refused by Cloud Tasks as a duplicate; a push that fails makes the delivery answer 500, and
the redelivery of the finished step pushes the queued steps again (those pushed before are
refused by their id). The statements every delivery runs are written out once (see
:func:`_statements`); the rest uses the ORM.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .. import conf, envelope, failures, signals
from ..control import delete_task, get_task
from ..exceptions import (
    CloudTaskError,
    MalformedEnvelope,
    TaskAlreadyExists,
    WorkflowNotFound,
)
from ..message import WORKFLOW_FIELD, new_call_id
from ..models import Workflow, WorkflowStep
from ..push import TaskHandle, push
from ..registry import registry
from ..task_ids import make_task_id

if TYPE_CHECKING:
    from ..task import Task
    from .canvas import Canvas

logger = logging.getLogger("cloudtask")

# The values of WorkflowStep.Status and .Kind (and Workflow.Status), as plain strings.
PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED, REVOKED = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "revoked",
)
TASK, CHAIN, GROUP, ERRBACK = "task", "chain", "group", "errback"
#: A step in one of these states has finished; a delivery of it runs nothing.
FINISHED = (SUCCEEDED, FAILED, SKIPPED, REVOKED)
#: Steps a failure skips and a revocation revokes: not started yet.
NOT_STARTED = (PENDING, QUEUED)

#: The steps waiting to be pushed by the push loop running in this context, if any: under
#: ImmediateBackend a push runs the step at once, and its successors join this loop instead
#: of nesting another, so a 1,000-step chain runs without recursion.
_pushing: contextvars.ContextVar[deque[WorkflowStep] | None] = contextvars.ContextVar(
    "cloudtask_workflow_pushing", default=None
)


class StepInputError(CloudTaskError, ValueError):
    """A step's result cannot be given to the step after it (not JSON, too large)."""


@dataclass
class Progress:
    """What one transaction did to a workflow: the steps it made ready, whether it ended it."""

    ready: list[WorkflowStep] = field(default_factory=list)
    ended: bool = False

    def after_commit(self, workflow_id: str) -> None:
        """Push the ready steps and announce the end once the transaction commits."""
        actions = [lambda: push_steps(self.ready)]
        if self.ended:
            actions.insert(0, lambda: _announce(workflow_id))
        _after_commit(*actions)


# --- Starting ---------------------------------------------------------------------------


def start(canvas: Canvas) -> str:
    """Store the workflow (in the caller's transaction) and push its first steps at commit."""
    workflow_id = uuid.uuid4().hex
    with transaction.atomic():
        now = timezone.now()
        Workflow.objects.create(id=workflow_id, description=canvas.describe()[:255])
        root = _store(canvas, workflow_id)
        progress = Progress()
        _start(root, _NOTHING, now, progress)
        progress.after_commit(workflow_id)  # an empty group has ended already
    return workflow_id


def start_call(
    task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], eta: datetime | None
) -> TaskHandle:
    """Store one call as a one-step workflow and push it at commit: it can be revoked by its
    call id until it runs (``.delay(revocable=True)``)."""
    workflow_id = uuid.uuid4().hex
    with transaction.atomic():
        Workflow.objects.create(id=workflow_id, description=task.name[:255])
        row = WorkflowStep(
            workflow_id=workflow_id,
            key="0",
            kind=TASK,
            task=task.name,
            args=args,
            kwargs=kwargs,
            call_id=new_call_id(),
            queue=task.queue or conf.get("QUEUE") or "",
            eta=eta,
        )
        row.save()
        progress = Progress()
        _start(row, _NOTHING, timezone.now(), progress)
        progress.after_commit(workflow_id)
    return TaskHandle(
        name=row.task_id, queue=row.queue, eta=eta, task=task.name, call_id=row.call_id
    )


def _store(canvas: Canvas, workflow_id: str) -> WorkflowStep:
    """Write one row per node of the tree, a level at a time; return the root's row."""
    root = _row(canvas, workflow_id, "0", None, 0)
    root.save()
    level: list[tuple[Canvas, WorkflowStep]] = [(canvas, root)]
    while level:
        rows: list[WorkflowStep] = []
        below: list[tuple[Canvas, WorkflowStep]] = []
        for node, row in level:
            for index, child in enumerate(getattr(node, "steps", ())):
                rows.append(_row(child, workflow_id, f"{row.key}.{index}", row, index))
                below.append((child, rows[-1]))
            for index, errback in enumerate(node.errbacks):
                rows.append(_row(errback, workflow_id, f"{row.key}.e{index}", row, index))
                rows[-1].kind = ERRBACK
        _save_all(rows)
        level = below
    return root


def _row(
    canvas: Canvas, workflow_id: str, key: str, parent: WorkflowStep | None, position: int
) -> WorkflowStep:
    row = WorkflowStep(
        workflow_id=workflow_id,
        key=key,
        parent=parent,
        position=position,
        kind=canvas.kind,
        call_id=new_call_id(),
    )
    task = getattr(canvas, "task", None)
    if task is not None:
        row.task, row.queue = task.name, task.queue or conf.get("QUEUE") or ""
        row.args, row.kwargs = canvas.args, canvas.kwargs  # type: ignore[attr-defined]
        row.immutable = canvas.immutable  # type: ignore[attr-defined]
        row.countdown, row.eta = canvas.countdown, canvas.eta  # type: ignore[attr-defined]
    return row


def _save_all(rows: list[WorkflowStep]) -> None:
    if connection.features.can_return_rows_from_bulk_insert:
        WorkflowStep.objects.bulk_create(rows)
    else:  # the children of these rows need their ids
        for row in rows:
            row.save()


# --- Advancing --------------------------------------------------------------------------


class _Nothing:
    """What the first steps receive: no parent result at all (not even None)."""


_NOTHING = _Nothing()


def _start(step: WorkflowStep, value: Any, now: datetime, progress: Progress) -> None:
    """Make ``step`` ready with ``value`` (its parent's result); note the calls to push."""
    if step.kind == TASK:
        step.status, step.task_id = QUEUED, step_task_id(step)
        if not isinstance(value, _Nothing) and not step.immutable:
            _check_input(step, value)
            step.has_input, step.input = True, value
        step.save(update_fields=("status", "task_id", "has_input", "input"))
        progress.ready.append(step)
        return
    step.status, step.started_at = RUNNING, now
    step.save(update_fields=("status", "started_at"))
    children = list(step.children.filter(kind__in=_STEPS).order_by("position"))
    if not children:  # an empty group: done at once, with no results
        _complete(step, [], now, progress)
    elif step.kind == CHAIN:
        _start(children[0], value, now, progress)
    else:
        for child in children:
            _start(child, value, now, progress)


def _complete(step: WorkflowStep, result: Any, now: datetime, progress: Progress) -> None:
    """Record ``step`` succeeded and start what follows it."""
    step.status, step.result, step.finished_at = SUCCEEDED, result, now
    step.save(update_fields=("status", "result", "finished_at"))
    if step.parent_id is None:
        Workflow.objects.filter(pk=step.workflow_id).update(
            status=SUCCEEDED, result=result, finished_at=now
        )
        progress.ended = True
        return
    # A delivered step's row came with its parent's kind (the "step" statement); a chain or
    # group completing in turn reads its parent's row.
    parent_kind = getattr(step, "parent_kind", None) or step.parent.kind  # type: ignore[union-attr]
    if parent_kind == CHAIN:
        following = _rows("following", [step.parent_id, step.position + 1, ERRBACK])
        if following:
            _start(following[0], result, now, progress)
        else:
            _complete(step.parent, result, now, progress)  # type: ignore[arg-type]
        return
    members = list(
        WorkflowStep.objects.filter(parent_id=step.parent_id, kind__in=_STEPS)
        .order_by("position")
        .values_list("status", "result")
    )
    if all(status == SUCCEEDED for status, _ in members):
        # Decided under the workflow's lock: exactly one member's transaction sees them all.
        _complete(step.parent, [result for _, result in members], now, progress)  # type: ignore[arg-type]


_STEPS = (TASK, CHAIN, GROUP)


def _check_input(step: WorkflowStep, value: Any) -> None:
    task = registry.get(step.task)
    try:
        task.check_received([value, *step.args], step.kwargs)
        arguments = envelope.check_arguments(task.name, [value, *step.args], step.kwargs)
    except (TypeError, ValueError) as exc:
        raise StepInputError(f"its result cannot be passed to {step.task}: {exc}") from None
    if len(arguments) > conf.max_body_size():
        raise StepInputError(
            f"its result would make {step.task}'s body {len(arguments)} bytes, over the "
            f"{conf.max_body_size()}-byte limit: store large data elsewhere and pass its key"
        )


# --- The statements of every step ------------------------------------------------------
#
# A step's delivery runs the same few statements each time; written out once here, they
# cost a fraction of the ORM's compilation of the same queries (see benchmarks/workflows.py).
# Only table and column names from the models go into the SQL; every value is a parameter.


@lru_cache(maxsize=4)
def _statements(vendor: str) -> dict[str, str]:
    quote = connection.ops.quote_name
    step, workflow = (quote(model._meta.db_table) for model in (WorkflowStep, Workflow))
    key = quote("key")  # a reserved word in some databases
    return {
        # Only a queued step, or a running one (a retry), is claimed by a delivery.
        "claim": (
            f"UPDATE {step} SET status = %s, attempts = attempts + 1, "  # noqa: S608
            f"started_at = COALESCE(started_at, %s) WHERE workflow_id = %s AND {key} = %s "
            "AND task = %s AND call_id = %s AND status IN (%s, %s)"
        ),
        "lock": f"UPDATE {workflow} SET updated_at = %s WHERE id = %s",  # noqa: S608
        # The step, with its workflow's status and its parent's kind.
        "step": (
            f"SELECT s.*, w.status AS workflow_status, p.kind AS parent_kind "  # noqa: S608
            f"FROM {step} s JOIN {workflow} w ON w.id = s.workflow_id "
            f"LEFT JOIN {step} p ON p.id = s.parent_id WHERE s.workflow_id = %s AND s.{key} = %s"
        ),
        # The step after one in a chain (error callbacks are numbered apart).
        "following": (
            f"SELECT * FROM {step} WHERE parent_id = %s AND position = %s "  # noqa: S608
            "AND kind <> %s"
        ),
    }


def _execute(name: str, params: list[Any]) -> int:
    """Run one of :func:`_statements` that writes; return how many rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(_statements(connection.vendor)[name], params)
        return int(cursor.rowcount)


def _rows(name: str, params: list[Any]) -> list[WorkflowStep]:
    """Run one of :func:`_statements` that reads steps; return them (fields converted)."""
    return list(WorkflowStep.objects.raw(_statements(connection.vendor)[name], params))


def _now_param() -> Any:
    """Now, as a parameter of the statements (SQLite stores datetimes as text)."""
    return connection.ops.adapt_datetimefield_value(timezone.now())


# --- Deliveries -------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRun:
    """A delivery of a workflow step that is to run."""

    workflow_id: str
    key: str
    call_id: str


def reference(extra: dict[str, Any]) -> tuple[str, str] | None:
    """Return the (workflow id, step key) a signed body names, None for a plain call."""
    value = extra.get(WORKFLOW_FIELD)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) and part for part in value)
    ):
        raise MalformedEnvelope("the body's workflow field must be [workflow id, step key]")
    return value[0], value[1]


def receive(ref: tuple[str, str], task_name: str, call_id: str) -> tuple[StepRun | None, str]:
    """Claim a delivered step to run; return (run, "") or (None, why it does not run).

    A step runs while it is queued or running (a retry); a finished, skipped or revoked one
    is acknowledged without running, and a finished one pushes what it started and is still
    unpushed (the push failed last time).
    """
    workflow_id, key = ref
    params = [RUNNING, _now_param(), workflow_id, key, task_name, call_id, QUEUED, RUNNING]
    if _execute("claim", params):
        return StepRun(workflow_id, key, call_id), ""
    steps = WorkflowStep.objects.filter(workflow_id=workflow_id, key=key)
    found = steps.values_list("task", "call_id", "status").first()
    if found is None:
        return None, "gone"  # pruned since: nothing to run
    if found[:2] != (task_name, call_id):
        raise MalformedEnvelope(
            f"the body names step {key} of workflow {workflow_id}, another call"
        )
    status = found[2]
    if status in (SUCCEEDED, FAILED):
        # Its successors, or error callbacks, may not have been pushed (the push failed and
        # the delivery answered 500): push the queued steps again; those that were pushed
        # are refused by their id.
        push_queued(workflow_id)
        return None, "duplicate"
    return None, status  # skipped, revoked or pending


def succeeded(run: StepRun, result: Any) -> None:
    """Record the step's result and start what follows; push it after the commit.

    A result that cannot be passed on (not JSON, too large) fails the step for good instead.
    Raises what the push of a following step raised: the delivery answers 500 and its
    redelivery pushes again.
    """
    try:
        envelope.dumps(result)
    except (TypeError, ValueError) as exc:
        failed(run, StepInputError(f"its result is not JSON: {exc}"), "result-not-json")
        return
    with transaction.atomic():
        now = timezone.now()
        step = _locked(run)
        if step is None or step.status != RUNNING:
            return  # a concurrent delivery of the same step finished it first
        if step.workflow_status != RUNNING or step.kind == ERRBACK:  # type: ignore[attr-defined]
            # Revoked or failed meanwhile: the result is kept; nothing starts after it.
            step.status, step.result, step.finished_at = SUCCEEDED, result, now
            step.save(update_fields=("status", "result", "finished_at"))
            return
        progress = Progress()
        try:
            with transaction.atomic():
                _complete(step, result, now, progress)
        except StepInputError as exc:
            step.refresh_from_db()
            progress = _fail(step, exc, "result-not-accepted", now)
        progress.after_commit(run.workflow_id)


def retrying(run: StepRun, exc: BaseException) -> None:
    """Note the error of an attempt that Cloud Tasks will retry; nothing advances."""
    WorkflowStep.objects.filter(workflow_id=run.workflow_id, key=run.key).update(
        error=error_text(exc)
    )


def failed(run: StepRun, exc: BaseException, reason: str) -> None:
    """Fail the step for good: the workflow fails, pending steps are skipped, and each error
    callback from the step outwards is pushed once."""
    with transaction.atomic():
        now = timezone.now()
        step = _locked(run)
        if step is None or step.status in FINISHED:
            return
        _fail(step, exc, reason, now).after_commit(run.workflow_id)


def _locked(run: StepRun) -> WorkflowStep | None:
    """Lock the run's workflow; return its step, with ``workflow_status`` and ``parent_kind``."""
    try:
        lock(run.workflow_id)
    except WorkflowNotFound:
        return None  # pruned meanwhile
    found = _rows("step", [run.workflow_id, run.key])
    return found[0] if found else None


def lock(workflow_id: str) -> None:
    """Lock the workflow's row for the rest of the transaction.

    A write, not SELECT ... FOR UPDATE: on SQLite it takes the database's write lock before
    anything is read, so two transactions never both read and then wait to write.
    """
    if not _execute("lock", [_now_param(), workflow_id]):
        raise WorkflowNotFound(workflow_id)


def _fail(step: WorkflowStep, exc: BaseException, reason: str, now: datetime) -> Progress:
    """Fail ``step`` for good; the workflow too if it was running. Queue error callbacks."""
    error = error_text(exc)
    step.status, step.error, step.finished_at = FAILED, error, now
    step.save(update_fields=("status", "error", "finished_at"))
    progress = Progress()
    if step.kind == ERRBACK:
        return progress  # an error callback's own failure starts nothing more
    path = _ancestors(step)
    workflow = step.workflow
    if workflow.status == RUNNING:
        progress.ended = True
        workflow.status, workflow.error, workflow.finished_at = (
            FAILED,
            f"step {step.key} ({step.task}) failed: {error}",
            now,
        )
        workflow.save(update_fields=("status", "error", "finished_at"))
        WorkflowStep.objects.filter(workflow=workflow, status__in=NOT_STARTED).exclude(
            kind=ERRBACK
        ).update(status=SKIPPED, finished_at=now)
        WorkflowStep.objects.filter(pk__in=[node.pk for node in path[1:]]).update(
            status=FAILED, finished_at=now
        )
    logger.error(
        "workflow=%s step=%s task=%s status=failed reason=%s",
        workflow.pk,
        step.key,
        step.task,
        reason,
    )
    progress.ready = _queue_errbacks(step, path, error)
    return progress


def error_text(exc: BaseException) -> str:
    """Return how a step's error is stored and passed on: the exception's class and message."""
    described = failures.describe(exc)
    return f"{described['type'].rsplit('.', 1)[-1]}: {described['message']}"[:10000]


def _ancestors(step: WorkflowStep) -> list[WorkflowStep]:
    """Return ``step`` and the chains and groups it is in, from it outwards."""
    path = [step]
    while path[-1].parent_id is not None:
        path.append(path[-1].parent)  # type: ignore[arg-type]
    return path


def _queue_errbacks(step: WorkflowStep, path: list[WorkflowStep], error: str) -> list[WorkflowStep]:
    args, kwargs = _arguments(step)
    given = {
        "original_task_id": step.call_id,
        "original_task_name": step.task,
        "error": error,
        "payload": {
            "call_id": step.call_id,
            "task": step.task,
            "error": error,
            "args": args,
            "kwargs": kwargs,
        },
    }
    queued = []
    for node in path:  # from the failed step outwards; each callback is pushed once
        pending = node.children.filter(kind=ERRBACK, status=PENDING)
        for errback in pending.order_by("position"):
            errback.status, errback.kwargs = QUEUED, {**errback.kwargs, **given}
            errback.task_id = step_task_id(errback)
            errback.save(update_fields=("status", "kwargs", "task_id"))
            queued.append(errback)
    return queued


def _announce(workflow_id: str) -> None:
    """Send ``workflow_finished``: only the transaction that ended the workflow calls this."""
    found = Workflow.objects.filter(pk=workflow_id).values_list("status", "result", "error")
    for status, result, error in found:
        signals.send_workflow_finished(
            Workflow, workflow_id, status=status, result=result, error=error
        )


# --- Pushing ----------------------------------------------------------------------------


def push_steps(steps: Iterable[WorkflowStep]) -> None:
    """Push ready steps in order; under ImmediateBackend, their successors join the loop."""
    waiting = _pushing.get()
    if waiting is not None:
        waiting.extend(steps)
        return
    waiting = deque(steps)
    token = _pushing.set(waiting)
    error: Exception | None = None
    try:
        while waiting:
            try:
                _push_step(waiting.popleft())
            except Exception as exc:
                # The others are pushed still (a failed step's error callbacks, under
                # ImmediateBackend); the first error is raised at the end.
                error = error or exc
    finally:
        _pushing.reset(token)
    if error is not None:
        raise error


def _push_step(step: WorkflowStep) -> None:
    args, kwargs = _arguments(step)
    call = registry.get(step.task)(*args, **kwargs)
    now = timezone.now()
    eta = step.eta if step.eta is not None and step.eta > now else None
    if step.countdown:
        eta = now + timedelta(seconds=step.countdown)
    # Pushed before under this id (TaskAlreadyExists): the queue keeps the one it has.
    with contextlib.suppress(TaskAlreadyExists):
        push(
            call,
            eta=eta,
            task_id=step.task_id,
            call_id=step.call_id,
            workflow=[step.workflow_id, step.key],
        )


def step_task_id(step: WorkflowStep) -> str:
    """Return the Cloud Tasks id of a step's push: the same for every push of it."""
    return make_task_id(f"wf-{step.workflow_id}-{step.key}-{step.generation}")


def _arguments(step: WorkflowStep) -> tuple[list[Any], dict[str, Any]]:
    args = [step.input, *step.args] if step.has_input else list(step.args)
    return args, dict(step.kwargs)


def push_queued(workflow_id: str) -> None:
    """Push every queued step of a workflow again; those already pushed are refused by id."""
    push_steps(WorkflowStep.objects.filter(workflow_id=workflow_id, status=QUEUED))


def _after_commit(*actions: Callable[[], None]) -> None:
    """Run ``actions`` once the transaction commits, all of them even if one raises.

    The first error is raised again: inside a delivery, it makes the answer a 500.
    """

    def run() -> None:
        error: BaseException | None = None
        for action in actions:
            try:
                action()
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    transaction.on_commit(run)


# --- Revoking and resuming --------------------------------------------------------------


def revoke(workflow_id: str, reason: str = "revoked") -> bool:
    """Revoke a running workflow; return False if it had already ended.

    Under the workflow's lock, the steps not started become revoked; after the commit, those
    already pushed are deleted from their queue (one already gone is fine). A step running
    now records its result and starts nothing.
    """
    with transaction.atomic():
        now = timezone.now()
        lock(workflow_id)
        workflow = Workflow.objects.get(pk=workflow_id)
        if workflow.status != RUNNING:
            return False
        workflow.status, workflow.error, workflow.finished_at = (
            REVOKED,
            reason,
            now,
        )
        workflow.save(update_fields=("status", "error", "finished_at"))
        steps = WorkflowStep.objects.filter(workflow_id=workflow_id)
        queued = list(steps.filter(status=QUEUED).values_list("queue", "task_id"))
        steps.filter(Q(status__in=NOT_STARTED) | Q(status=RUNNING, kind__in=_GROUPS)).update(
            status=REVOKED, finished_at=now
        )
        _after_commit(lambda: _announce(workflow_id), lambda: _delete(queued))
    return True


_GROUPS = (CHAIN, GROUP)


def _delete(tasks: list[tuple[str, str]]) -> None:
    for queue, task_id in tasks:
        try:
            delete_task(queue, task_id, not_found_ok=True)
        except CloudTaskError as exc:
            # Not deleted (a backend without management): its delivery finds it revoked.
            logger.info("workflow task=%s status=not-deleted reason=%s", task_id, exc)


def prune(cutoff: datetime, *, dry_run: bool = False) -> int:
    """Delete the workflows that ended before ``cutoff``, with their steps; return how many.

    A running workflow is kept however old it is. With ``dry_run`` they are only counted.
    """
    ended = Workflow.objects.exclude(status=RUNNING).filter(finished_at__lt=cutoff)
    if dry_run:
        return int(ended.count())
    _, deleted = ended.delete()
    return int(deleted.get(Workflow._meta.label, 0))


def resume(workflow_id: str) -> int:
    """Push again the queued steps whose Cloud Task is gone; return how many were pushed.

    For a workflow whose pushes were lost (a queue purged, a task deleted by hand): each is
    pushed under a new id, as Cloud Tasks keeps a deleted task's id for a while. A step whose
    task cannot be looked up (a backend without task management) counts as gone.
    """
    if not Workflow.objects.filter(pk=workflow_id).exists():
        raise WorkflowNotFound(workflow_id)
    gone = []
    for step in WorkflowStep.objects.filter(workflow_id=workflow_id, status=QUEUED):
        try:
            get_task(step.queue, step.task_id)
            continue  # still in its queue
        except CloudTaskError:
            pass
        step.generation += 1
        step.task_id = step_task_id(step)
        step.save(update_fields=("generation", "task_id"))
        gone.append(step)
    push_steps(gone)
    return len(gone)
