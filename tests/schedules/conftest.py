from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from cloudtask import registry
from cloudtask.schedules import declare


@pytest.fixture(name="declaring")
def declaring_fixture() -> Iterator[Callable[[str], ModuleType]]:
    """Import a module of @periodic tasks for this test only (registry and declarations)."""
    saved = dict(declare._declared)
    with registry.isolated():

        def load(name: str) -> ModuleType:
            module = importlib.import_module(f"tests.schedules.{name}")
            return importlib.reload(module)

        yield load
    declare._declared.clear()
    declare._declared.update(saved)
