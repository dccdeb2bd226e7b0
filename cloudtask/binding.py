"""Checking arguments against a function's signature, fast on the endpoint's hot path."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class ArgumentChecker:
    """Raise TypeError, as a call would, when arguments do not fit ``signature``.

    Signatures made only of named parameters (the common case) are checked with set and tuple
    lookups; anything else (``*args``, ``**kwargs``, positional-only) goes to
    ``Signature.bind``, which also words every error message.
    """

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        self._signature = signature
        self._simple = all(p.kind in _SIMPLE_KINDS for p in params)
        self._positional = tuple(
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self._names = frozenset(p.name for p in params)
        self._required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)

    def __call__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if not (self._simple and self._fits(args, kwargs)):
            self._signature.bind(*args, **kwargs)

    def _fits(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        if len(args) > len(self._positional):
            return False
        given = self._positional[: len(args)]
        for name in kwargs:
            if name not in self._names or name in given:
                return False
        return all(name in kwargs or name in given for name in self._required)
