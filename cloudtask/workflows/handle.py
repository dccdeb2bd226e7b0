"""What ``.delay()`` of a workflow returns, and finding a workflow again by its id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import WorkflowFailed, WorkflowNotFinished, WorkflowNotFound

if TYPE_CHECKING:
    from ..models import Workflow, WorkflowStep

# The models and the engine are imported where used: ``import cloudtask`` (which imports
# this module) happens before Django's app registry is ready.


@dataclass(frozen=True)
class WorkflowHandle:
    """A stored workflow: its ``id``, its ``status`` now, its ``result()``; ``revoke()``."""

    id: str

    @property
    def status(self) -> str:
        """ "running", "succeeded", "failed" or "revoked", as stored now."""
        return self.row().status

    def row(self) -> Workflow:
        """Return the workflow's row as stored now."""
        from ..models import Workflow

        try:
            row: Workflow = Workflow.objects.get(pk=self.id)
        except Workflow.DoesNotExist:
            raise WorkflowNotFound(self.id) from None
        return row

    def refresh(self) -> Workflow:
        """Read the workflow again (alias of :meth:`row`, Celery users' spelling)."""
        return self.row()

    def result(self) -> Any:
        """Return the last step's result (a group's: the list of its members' results).

        Raises ``WorkflowNotFinished`` while it runs, ``WorkflowFailed`` if it failed or was
        revoked (with ``.status`` and ``.error``).
        """
        row = self.row()
        if row.status == "succeeded":
            return row.result
        if row.status == "running":
            raise WorkflowNotFinished(f"Workflow {self.id} is still running.")
        raise WorkflowFailed(self.id, row.status, row.error)

    def steps(self) -> list[WorkflowStep]:
        """Return the task calls of the workflow (error callbacks too), in tree order."""
        from ..models import WorkflowStep

        rows = WorkflowStep.objects.filter(workflow_id=self.id).exclude(kind__in=("chain", "group"))
        return sorted(rows, key=lambda step: tree_order(step.key))

    def revoke(self) -> bool:
        """Stop the workflow (see :func:`revoke_workflow`); False if it had already ended."""
        from .engine import revoke

        return revoke(self.id)


def tree_order(key: str) -> tuple[tuple[int, int], ...]:
    """Sort key of a step key ("0.10" after "0.9"; error callbacks after the steps)."""
    return tuple(
        (1, int(part[1:])) if part.startswith("e") else (0, int(part)) for part in key.split(".")
    )


def get_workflow(workflow_id: str) -> WorkflowHandle:
    """Return the handle of a stored workflow; ``WorkflowNotFound`` if there is none."""
    from ..models import Workflow

    if not isinstance(workflow_id, str) or not Workflow.objects.filter(pk=workflow_id).exists():
        raise WorkflowNotFound(str(workflow_id))
    return WorkflowHandle(workflow_id)


def revoke_workflow(workflow_id: str, reason: str = "revoked") -> bool:
    """Revoke a workflow by id, or by the call id of one of its steps (a revocable call).

    No step that has not started will run: pushed ones are deleted from their queue and a
    later delivery runs nothing. A step running now keeps its result and starts nothing.
    Returns False if the workflow had already ended; ``WorkflowNotFound`` if there is none.
    """
    from ..models import Workflow, WorkflowStep
    from .engine import revoke

    if not isinstance(workflow_id, str):
        raise WorkflowNotFound(str(workflow_id))
    if not Workflow.objects.filter(pk=workflow_id).exists():
        owner = WorkflowStep.objects.filter(call_id=workflow_id).values_list(
            "workflow_id", flat=True
        )
        workflow_id = owner.first() or workflow_id
    return revoke(workflow_id, reason)
