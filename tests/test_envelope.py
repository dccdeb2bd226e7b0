"""The wire format: what decode keeps, refuses and passes on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloudtask import envelope


def body(**fields: Any) -> bytes:
    return json.dumps({"v": 1, "task": "tests.tasks.noop", "id": "c1", **fields}).encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"retries": 2},  # neither args nor kwargs: four keys, one of them extra
        {"args": [], "retries": 2},
        {"args": [], "kwargs": {}, "retries": 2},
    ],
)
def test_extra_keys_are_kept_whichever_fields_are_present(fields: dict[str, Any]) -> None:
    assert envelope.decode(body(**fields)).extra == {"retries": 2}


def test_missing_args_and_kwargs_default_to_empty() -> None:
    data = envelope.decode(body())
    assert (data.task_name, data.id, data.args, data.kwargs, data.extra) == (
        "tests.tasks.noop",
        "c1",
        [],
        {},
        {},
    )


def test_encode_round_trips_through_decode() -> None:
    arguments = envelope.check_arguments("t", [1], {"a": "x"})
    data = envelope.decode(envelope.encode("t", "c2", arguments, {"retries": 1}))
    assert (data.args, data.kwargs, data.extra) == ([1], {"a": "x"}, {"retries": 1})
