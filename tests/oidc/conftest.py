"""Fixtures of the OIDC verification tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from cloudtask import conf
from tests.support.oidc import CertsServer, Key, make_key, oidc_settings


@pytest.fixture
def key() -> Key:
    """The key whose certificate the certs_server fixture publishes."""
    return make_key("k1")


@pytest.fixture
def tokens_required(certs_server: CertsServer) -> Iterator[None]:
    """ImmediateBackend settings that require a token for SERVICE_ACCOUNT and AUDIENCE."""
    with override_settings(CLOUDTASK=oidc_settings(conf.IMMEDIATE_BACKEND, certs_server)):
        yield
