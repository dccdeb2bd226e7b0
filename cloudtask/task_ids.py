"""Cloud Tasks task ids: derived from the task, from its arguments, or given by the caller.

Ids are ``[A-Za-z0-9_-]{1,500}``. Derived ids start with a hash, as Google advises: ids with
sequential prefixes (timestamps, counters) raise latency and error rates in Cloud Tasks.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .task import Task, TaskCall

TASK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
MAX_ID_LENGTH = 500
#: "-" and 32 hex digits, appended by ``unique=True``.
UNIQUE_SUFFIX_LENGTH = 33
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def make_task_id(text: str) -> str:
    """Return a valid Cloud Tasks id for ``text``, led by a hash so ids spread evenly."""
    prefix = hashlib.sha256(text.encode()).hexdigest()[:12]
    return _join(prefix, text)


def arguments_task_id(task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> str:
    """Return the id of ``named="args"``: the same task and arguments give the same id."""
    bound = task.call_signature.bind(*args, **kwargs)
    bound.apply_defaults()
    # Bound and key-sorted, so add(1, 2), add(a=1, b=2) and add(b=2, a=1) share one id.
    canonical = json.dumps([task.name, bound.arguments], sort_keys=True, separators=(",", ":"))
    # 128 bits: a collision would silently drop a different call as a duplicate.
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return _join(digest, task.name)


def check_task_id(task_id: Any, *, unique: bool = False) -> str:
    """Validate a caller-given id (leaving room for the ``unique`` suffix) and return it."""
    limit = MAX_ID_LENGTH - UNIQUE_SUFFIX_LENGTH if unique else MAX_ID_LENGTH
    if not (isinstance(task_id, str) and TASK_ID_RE.match(task_id) and len(task_id) <= limit):
        raise ValueError(
            f"Task name {task_id!r} is not a valid Cloud Tasks id: use 1 to {limit} letters, "
            "digits, hyphens or underscores."
        )
    return task_id


def task_id_for(call: TaskCall[Any], name: str | None, unique: bool) -> str | None:
    """Return the id a push of ``call`` asks for, or None to let Cloud Tasks choose one.

    ``name`` is the caller's ``name=`` (the public spelling of the Cloud Tasks id).
    """
    task_id = name
    if task_id is not None:
        check_task_id(task_id, unique=unique)
    elif call.task.named == "args":
        args, kwargs = call.arguments
        task_id = arguments_task_id(call.task, args, kwargs)
    elif call.task.named:
        task_id = make_task_id(call.task.name)
    elif unique:
        raise TypeError(
            "unique=True needs name= (or a named task): an unnamed task already gets a "
            "unique id from Cloud Tasks."
        )
    if task_id is not None and unique:
        task_id = with_unique_suffix(task_id)
    return task_id


def with_unique_suffix(task_id: str) -> str:
    """Return ``task_id`` with ``unique=True``'s random suffix (cut to stay a valid id)."""
    return f"{task_id[: MAX_ID_LENGTH - UNIQUE_SUFFIX_LENGTH]}-{uuid.uuid4().hex}"


def _join(prefix: str, text: str) -> str:
    readable = _UNSAFE.sub("-", text).strip("-")
    return f"{prefix}-{readable}"[:MAX_ID_LENGTH].rstrip("-")
