from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import tasks


@pytest.fixture(autouse=True)
def _clean_calls() -> Iterator[None]:
    tasks.calls.clear()
    yield
    tasks.calls.clear()
