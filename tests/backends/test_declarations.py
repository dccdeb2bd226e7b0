"""Backends are known by what they declare: a subclass is checked and trusted like its parent."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings

from cloudtask import ConfigurationError, oidc
from cloudtask.backends.base import BaseBackend
from cloudtask.backends.cloudtasks import CloudTasksBackend
from cloudtask.backends.immediate import ImmediateBackend
from cloudtask.backends.local import LocalBackend
from cloudtask.checks import check_deploy, check_settings
from tests import tasks
from tests.support.oidc import AUDIENCE, SERVICE_ACCOUNT, CertsServer, oidc_settings, post

SUPPORT = "tests.support.backends"
PLACE = {"PROJECT": "my-project", "LOCATION": "europe-west6"}
CLOUD = {**PLACE, "URL": AUDIENCE}


@pytest.fixture(autouse=True)
def _private_key_dir(development_key_dir: Path) -> None:
    """Keep the development key file in a directory of this test's own."""


def test_what_each_backend_declares() -> None:
    declared = {
        backend.__name__: (backend.development, backend.trusts_development_tokens)
        for backend in (BaseBackend, CloudTasksBackend, LocalBackend, ImmediateBackend)
    }
    assert declared == {
        "BaseBackend": (False, False),
        "CloudTasksBackend": (False, False),
        "LocalBackend": (True, True),
        "ImmediateBackend": (True, False),
    }


def test_a_subclass_of_the_local_backend_keeps_development_token_trust(
    certs_server: CertsServer,
) -> None:
    with override_settings(
        CLOUDTASK=oidc_settings(f"{SUPPORT}.TracedLocalBackend", certs_server, **PLACE)
    ):
        assert oidc.settings().trust_development_key is True
        response = post(oidc.development_token(AUDIENCE, SERVICE_ACCOUNT))
    assert response.status_code == 200
    [(_, request)] = tasks.calls
    assert request.oidc_email == SERVICE_ACCOUNT
    assert certs_server.fetches == 0  # a development key id never sends the verifier to Google


def test_a_subclass_of_the_cloud_tasks_backend_does_not_trust_development_tokens(
    certs_server: CertsServer,
) -> None:
    with override_settings(
        CLOUDTASK=oidc_settings(f"{SUPPORT}.TracedCloudTasksBackend", certs_server, **PLACE)
    ):
        assert oidc.settings().trust_development_key is False
        response = post(oidc.development_token(AUDIENCE, SERVICE_ACCOUNT))
    assert response.status_code == 403
    assert tasks.calls == []


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("PROJECT", ["cloudtask.E003"]),
        ("LOCATION", ["cloudtask.E004"]),
        ("URL", ["cloudtask.E005"]),
    ],
)
def test_a_subclass_of_the_cloud_tasks_backend_needs_its_settings(
    missing: str, expected: list[str]
) -> None:
    settings = {**CLOUD, "BACKEND": f"{SUPPORT}.TracedCloudTasksBackend"}
    del settings[missing]
    with override_settings(CLOUDTASK=settings):
        messages = check_settings()
    assert [m.id for m in messages] == expected
    assert messages[0].msg == f"CLOUDTASK['{missing}'] is required by the Cloud Tasks backend."


@pytest.mark.parametrize(
    "backend", ["TracedLocalBackend", "TracedImmediateBackend", "SandboxBackend"]
)
def test_a_development_backend_is_flagged_without_debug(backend: str) -> None:
    with override_settings(CLOUDTASK={"BACKEND": f"{SUPPORT}.{backend}"}, DEBUG=False):
        messages = check_deploy()
    assert [m.id for m in messages] == ["cloudtask.W003"]
    assert messages[0].msg == (
        f"CLOUDTASK['BACKEND'] is {backend}, a development backend, while DEBUG is False."
    )
    with override_settings(CLOUDTASK={"BACKEND": f"{SUPPORT}.{backend}"}, DEBUG=True):
        assert check_deploy() == []


def test_a_production_backend_is_not_flagged() -> None:
    backend = f"{SUPPORT}.TracedCloudTasksBackend"
    with override_settings(CLOUDTASK={**CLOUD, "BACKEND": backend}, DEBUG=False):
        assert check_deploy() == []


def test_the_default_oidc_audience_comes_from_the_backend(certs_server: CertsServer) -> None:
    settings = oidc_settings(f"{SUPPORT}.TracedLocalBackend", certs_server, **PLACE)
    del settings["URL"]
    with override_settings(CLOUDTASK=settings):
        assert oidc.settings().audience == "http://127.0.0.1:8000/_tasks/"
    settings["BACKEND"] = f"{SUPPORT}.TracedCloudTasksBackend"
    with override_settings(CLOUDTASK=settings):
        assert oidc.read_setting("SERVICE_ACCOUNTS") == (SERVICE_ACCOUNT,)
        with pytest.raises(ConfigurationError, match="OIDC verification needs the token audience"):
            oidc.settings()
