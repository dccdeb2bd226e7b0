"""The fast argument check agrees with inspect.Signature.bind on every input."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudtask.binding import ArgumentChecker


def plain(a: int, b: int = 1, *, c: int, d: int = 2) -> None: ...
def defaults_only(a: int = 1, b: int = 2) -> None: ...
def var_args(a: int, *rest: int, **extra: int) -> None: ...
def positional_only(a: int, /, b: int) -> None: ...
def nothing() -> None: ...


def outcome(call: Any) -> str | None:
    try:
        call()
    except TypeError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("func", [plain, defaults_only, var_args, positional_only, nothing])
@settings(max_examples=300, deadline=None)
@given(
    args=st.lists(st.integers(), max_size=4),
    kwargs=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e", "rest"]), st.integers(), max_size=5
    ),
)
def test_checker_agrees_with_signature_bind(
    func: Any, args: list[int], kwargs: dict[str, int]
) -> None:
    signature = inspect.signature(func)
    checker = ArgumentChecker(signature)
    assert outcome(lambda: checker(args, kwargs)) == outcome(
        lambda: signature.bind(*args, **kwargs)
    )
