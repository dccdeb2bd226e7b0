"""Workflows: chains, groups and chords of task calls, with their state in the database.

``add.s(...)`` and ``add.si(...)`` make steps; ``chain``/``|``, ``group`` and ``chord``
combine them; ``.delay()`` stores the workflow and returns a :class:`WorkflowHandle`.
"""

from .canvas import Canvas, Chain, Group, Signature, chain, chord, group
from .handle import WorkflowHandle, get_workflow, revoke_workflow

__all__ = [
    "Canvas",
    "Chain",
    "Group",
    "Signature",
    "WorkflowHandle",
    "chain",
    "chord",
    "get_workflow",
    "group",
    "revoke_workflow",
]
