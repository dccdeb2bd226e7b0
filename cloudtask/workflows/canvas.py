"""Signatures, chains, groups and chords: workflows described before anything runs.

The shapes follow Celery's canvas. Building one checks every step's arguments, including
the parent result it will receive, so a workflow that could never run is refused with a
``TypeError`` before a row is written or a task pushed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .. import conf, envelope, options
from ..exceptions import PayloadTooLarge
from .handle import WorkflowHandle

if TYPE_CHECKING:
    from ..task import Task

#: The keyword arguments an error callback receives, besides its own.
ERRBACK_ARGUMENTS = ("original_task_id", "original_task_name", "error", "payload")


class Canvas:
    """What every workflow shape has: error callbacks, ``|`` and ``delay()``."""

    #: "task", "chain" or "group": what the engine stores it as.
    kind = ""
    errbacks: tuple[Signature, ...] = ()

    def on_error(self, callback: Signature) -> Canvas:
        """Return a copy that pushes ``callback`` once if a step inside fails for good.

        The callback is called with ``original_task_id`` (the failed step's call id),
        ``original_task_name``, ``error`` (its message) and ``payload`` (call id, task,
        error, args and kwargs), besides its own arguments.
        """
        if not isinstance(callback, Signature):
            raise TypeError(f"on_error() takes a signature such as report.s(), not {callback!r}.")
        _check_errback(callback)
        copy = self._copy()
        copy.errbacks = (*self.errbacks, callback)
        return copy

    def __or__(self, other: Canvas) -> Chain:
        if not isinstance(other, Canvas):
            return NotImplemented
        return chain(self, other)

    def delay(self) -> WorkflowHandle:
        """Store the workflow and push its first steps (when the transaction commits)."""
        # Imported here: the engine needs the models, which ``import cloudtask`` must not load.
        from .engine import start

        check(self)
        return WorkflowHandle(start(self))

    def describe(self) -> str:
        """Return the shape as written, e.g. ``chain(add, group(add, add), total)``."""
        raise NotImplementedError

    def _copy(self) -> Canvas:
        raise NotImplementedError


class Signature(Canvas):
    """One call of a task in a workflow: ``add.s(a=1)`` (gets its parent's result) or
    ``add.si(a=1)`` (gets nothing)."""

    kind = "task"

    def __init__(
        self,
        task: Task[Any, Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        immutable: bool = False,
    ) -> None:
        self.task = task
        self.args = list(args)
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        self.countdown: float | None = None
        self.eta: datetime | None = None
        # Checked once here (JSON); binding is checked where the workflow says what it gets.
        envelope.check_arguments(task.name, self.args, self.kwargs)

    def set(
        self, *, countdown: float | timedelta | None = None, eta: datetime | None = None
    ) -> Signature:
        """Return a copy that waits ``countdown`` (seconds or a timedelta) after it is ready,
        or until ``eta`` (an aware datetime); at most 30 days, as Cloud Tasks allows."""
        if countdown is not None and eta is not None:
            raise TypeError(".set() takes countdown= or eta=, not both.")
        copy = self._copy()
        if countdown is not None:
            delta = conf.to_timedelta(countdown, "countdown")
            if not timedelta(0) <= delta <= options.MAX_SCHEDULE:
                raise ValueError(
                    f"{self.task.name}.s().set(countdown=...) must be 0 to 30 days (Cloud "
                    f"Tasks' limit), not {delta.total_seconds():g} s."
                )
            copy.countdown, copy.eta = delta.total_seconds(), None
        if eta is not None:
            if not isinstance(eta, datetime) or timezone.is_naive(eta):
                raise TypeError(
                    f"{self.task.name}.s().set(eta=...) takes an aware datetime, not {eta!r}."
                )
            if eta - timezone.now() > options.MAX_SCHEDULE:
                raise ValueError(
                    f"{self.task.name}.s().set(eta={eta.isoformat()}) is more than 30 days "
                    "ahead, which Cloud Tasks refuses."
                )
            copy.eta, copy.countdown = eta.astimezone(dt_timezone.utc), None
        return copy

    def describe(self) -> str:
        return self.task.name

    def _copy(self) -> Signature:
        copy = Signature(self.task, self.args, self.kwargs, immutable=self.immutable)
        copy.countdown, copy.eta, copy.errbacks = self.countdown, self.eta, self.errbacks
        return copy

    def __repr__(self) -> str:
        spelling = "si" if self.immutable else "s"
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.name}.{spelling}({', '.join(parts)})"


class Chain(Canvas):
    """Steps one after the other; each gets the result of the one before."""

    kind = "chain"

    def __init__(self, steps: Iterable[Canvas]) -> None:
        flat: list[Canvas] = []
        for step in steps:
            _require_canvas(step, "chain()")
            # A chain inside a chain is the same chain, unless it has its own error callbacks.
            flat.extend(step.steps if isinstance(step, Chain) and not step.errbacks else [step])
        if not flat:
            raise TypeError("chain() needs at least one step, e.g. chain(add.s(a=1, b=2)).")
        self.steps: list[Canvas] = flat

    def describe(self) -> str:
        return f"chain({', '.join(step.describe() for step in self.steps)})"

    def _copy(self) -> Chain:
        copy = Chain(self.steps)
        copy.errbacks = self.errbacks
        return copy


class Group(Canvas):
    """Steps side by side; the result is the list of their results, in the order given."""

    kind = "group"

    def __init__(self, steps: Iterable[Canvas]) -> None:
        self.steps: list[Canvas] = list(steps)
        for step in self.steps:
            _require_canvas(step, "group()")

    def __or__(self, other: Canvas) -> Chain:
        # group | body is a chord: the body gets the list of the group's results.
        return super().__or__(other)

    def describe(self) -> str:
        return f"group({', '.join(step.describe() for step in self.steps)})"

    def _copy(self) -> Group:
        copy = Group(self.steps)
        copy.errbacks = self.errbacks
        return copy


def chain(*steps: Canvas | Iterable[Canvas]) -> Chain:
    """``chain(a.s(), b.s())`` or ``a.s() | b.s()``: b gets a's result."""
    return Chain(_flatten(steps))


def group(*steps: Canvas | Iterable[Canvas]) -> Group:
    """``group(a.s(), b.s())``: run side by side; the result is ``[a's, b's]``."""
    return Group(_flatten(steps))


def chord(header: Group | Iterable[Canvas], body: Canvas) -> Chain:
    """``chord(group(...), total.s())``, the same as ``group(...) | total.s()``.

    The body runs once, after every member succeeded, with the list of their results.
    """
    members = header if isinstance(header, Group) else Group(header)
    _require_canvas(body, "chord() body")
    return Chain([members, body])


def check(canvas: Canvas) -> None:
    """Raise TypeError if any step's arguments, with what it will receive, do not bind."""
    _check(canvas, receives=False, where="")


def _check(canvas: Canvas, *, receives: bool, where: str) -> None:
    if isinstance(canvas, Signature):
        _check_signature(canvas, receives=receives and not canvas.immutable, where=where)
    elif isinstance(canvas, Chain):
        for index, step in enumerate(canvas.steps):
            _check(step, receives=receives or index > 0, where=f"{where}{index}.")
    elif isinstance(canvas, Group):
        for index, step in enumerate(canvas.steps):
            _check(step, receives=receives, where=f"{where}{index}.")


def _check_signature(signature: Signature, *, receives: bool, where: str) -> None:
    task = signature.task
    args = [None, *signature.args] if receives else signature.args
    try:
        task.check_received(args, signature.kwargs)
    except TypeError as exc:
        hint = (
            " It receives the result of the step before it as its first argument (after the "
            "request); use .si() for a step that takes none."
            if receives
            else ""
        )
        step = f"step {where.rstrip('.')} " if where else ""
        raise TypeError(f"{step}{signature!r}: {exc}.{hint}") from None
    size = len(envelope.check_arguments(task.name, signature.args, signature.kwargs))
    if size > conf.max_body_size():
        raise PayloadTooLarge(size, conf.max_body_size())


def _check_errback(callback: Signature) -> None:
    given = dict.fromkeys(ERRBACK_ARGUMENTS, "")
    clash = given.keys() & callback.kwargs.keys()
    if clash:
        raise TypeError(f"on_error({callback!r}): {sorted(clash)} are given by the workflow.")
    try:
        callback.task.check_received(callback.args, {**callback.kwargs, **given})
    except TypeError as exc:
        raise TypeError(
            f"on_error({callback!r}): {exc}. An error callback is called with the keyword "
            f"arguments {', '.join(ERRBACK_ARGUMENTS)} (take **kwargs to ignore some)."
        ) from None


def _flatten(steps: tuple[Canvas | Iterable[Canvas], ...]) -> list[Canvas]:
    # chain([a.s(), b.s()]) as well as chain(a.s(), b.s()), as Celery accepts both.
    if len(steps) == 1 and isinstance(steps[0], Iterable) and not isinstance(steps[0], str):
        return list(steps[0])
    return list(steps)  # type: ignore[arg-type]  # each is checked by the shape


def _require_canvas(step: Any, where: str) -> None:
    if not isinstance(step, Canvas):
        raise TypeError(
            f"{where} takes signatures (task.s(...), task.si(...)), chains and groups, not "
            f"{step!r}. A call such as add(a=1) becomes a step as add.s(a=1)."
        )
