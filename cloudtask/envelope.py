"""The JSON wire format of a task call.

A body is one JSON object, version 1::

    {"v": 1, "task": "<registry name>", "id": "<call id>", "args": [...], "kwargs": {...}}

Unknown keys are ignored, so a newer sender can add fields that an older receiver skips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .exceptions import MalformedEnvelope

VERSION = 1
#: The endpoint's answer names its outcome ("success", "failed", "retrying", "error") in this
#: header, as in the body's "status": a 2xx with "failed" is a call that failed for good.
OUTCOME_HEADER = "X-CloudTask-Outcome"
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON has no infinity, and a pusher refuses it
        raise ValueError(f"{text} is out of range")
    return value


# NaN, Infinity and numbers too large for a float are refused, as the pushing side does.
_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
#: A call id as cloudtask makes them (hex), or as a test or another sender may: short ASCII.
_CALL_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MAX_TASK_NAME = 500


@dataclass(slots=True)  # not frozen: its __init__ costs twice as much, on every delivery
class Envelope:
    """A decoded task body (treat it as read-only)."""

    #: The registry name of the task (``"task"`` on the wire).
    task_name: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def is_call_id(value: str) -> bool:
    """Return whether ``value`` has the shape of a call id."""
    return _CALL_ID_RE.fullmatch(value) is not None


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON, refusing NaN and infinities."""
    return _encoder.encode(value)


def check_arguments(task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Return ``[args, kwargs]`` as JSON, or raise TypeError naming the argument that is not."""
    try:
        return dumps([args, kwargs])
    except (TypeError, ValueError, OverflowError) as exc:
        named = [(f"positional argument {i}", v) for i, v in enumerate(args)]
        named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
        for label, value in named:
            try:
                dumps(value)
            except (TypeError, ValueError, OverflowError) as inner:
                reason = _json_reason(value, inner)
                raise TypeError(
                    f"{task_name}(): {label} is not JSON-serialisable ({reason}). Task "
                    "arguments travel as JSON: pass str, int, float, bool, None, lists and "
                    "dicts of those (e.g. an ISO string for a datetime, a list for a set)."
                ) from None
        raise TypeError(f"{task_name}(): arguments are not JSON-serialisable ({exc}).") from None


def _json_reason(value: Any, exc: Exception) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} has no JSON form"
    return str(exc) if isinstance(exc, TypeError) else f"{exc}"


def encode(
    task: str, call_id: str, arguments_json: str, extra: Mapping[str, Any] | None = None
) -> bytes:
    """Build a body from ``arguments_json``, the output of :func:`check_arguments`."""
    # arguments_json is "[<args>,<kwargs>]": reuse it rather than encode the arguments twice.
    args_json, kwargs_json = _split_arguments(arguments_json)
    head = dumps({"v": VERSION, "task": task, "id": call_id, **(extra or {})})
    return f'{head[:-1]},"args":{args_json},"kwargs":{kwargs_json}}}'.encode()


def _split_arguments(arguments_json: str) -> tuple[str, str]:
    _, end = _decoder.raw_decode(arguments_json, 1)
    return arguments_json[1:end], arguments_json[end + 1 : -1]


def decode(body: bytes) -> Envelope:
    """Parse and validate a body, raising MalformedEnvelope with the reason."""
    try:
        # Task bodies are UTF-8 JSON (RFC 8259); no need to sniff other encodings as loads does.
        data = _decoder.decode(body.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedEnvelope(f"body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise MalformedEnvelope("body must be a JSON object")
    version = data.get("v")
    if version != VERSION or isinstance(version, bool):
        raise MalformedEnvelope(f"unsupported envelope version {version!r}; expected {VERSION}")
    task, call_id = data.get("task"), data.get("id")
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(task, str) or not task:
        raise MalformedEnvelope("'task' must be a non-empty string")
    if len(task) > _MAX_TASK_NAME or not task.isprintable():
        raise MalformedEnvelope(
            f"'task' must be printable text of at most {_MAX_TASK_NAME} characters"
        )
    if not isinstance(call_id, str) or not _CALL_ID_RE.fullmatch(call_id):
        raise MalformedEnvelope("'id' must be 1 to 128 letters, digits or '_.:-'")
    if not isinstance(args, list):
        raise MalformedEnvelope("'args' must be a list")
    if not isinstance(kwargs, dict):
        raise MalformedEnvelope("'kwargs' must be an object")
    # A \\uD800 escape with no pair decodes to a lone surrogate, which no UTF-8 answer or
    # push can carry; only bodies with an escape at all pay for the search.
    if b"\\u" in body and _has_lone_surrogate(data):
        raise MalformedEnvelope("body has a lone UTF-16 surrogate (an unpaired \\uD800 escape)")
    # args and kwargs are optional, so the number of keys does not tell whether extras exist.
    extra = {k: v for k, v in data.items() if k not in _FIELDS}
    return Envelope(task_name=task, id=call_id, args=args, kwargs=kwargs, extra=extra)


_FIELDS = frozenset({"v", "task", "id", "args", "kwargs"})
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """Return whether any string in ``value`` (keys included) holds a lone surrogate."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False
