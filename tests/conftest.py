from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import tasks


@pytest.fixture(autouse=True)
def _clean_calls() -> Iterator[None]:
    tasks.calls.clear()
    yield
    tasks.calls.clear()


@pytest.fixture(scope="session")
def static_url() -> None:
    """Give live_server the STATIC_URL its static files handler needs before it starts."""
    from django.conf import settings

    if not getattr(settings, "STATIC_URL", None):
        settings.STATIC_URL = "/static/"
