"""cloudtask.W023: tasks Cloud Tasks would send to this endpoint without the OIDC token it needs."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from cloudtask import CloudTaskRequest, task
from cloudtask.checks import check_task_tokens
from cloudtask.registry import registry

SAE = "invoker@my-project.iam.gserviceaccount.com"
CLOUD = {
    "PROJECT": "my-project",
    "LOCATION": "europe-west6",
    "URL": "https://app.example.com/_tasks/",
    "SAE": SAE,
}
HINT = (
    "Cloud Tasks adds an OIDC token only to HTTP targets with auth='oidc' (the default), "
    "minted for CLOUDTASK['SAE']; the local queue and capture_tasks() do the same."
)


def job(request: CloudTaskRequest) -> None:
    """A task body; each test registers it under the names and options it needs."""


@pytest.fixture
def only_these_tasks() -> Iterator[None]:
    """An empty registry for the test, restored afterwards."""
    with registry.isolated():
        for name in list(registry):
            registry.unregister(name)
        task(name="checks.with_oidc")(job)
        task(name="checks.no_auth", auth=None)(job)
        task(name="checks.oauth", auth="oauth")(job)
        task(name="checks.gae", app_engine={"service": "worker"})(job)
        # Sent elsewhere: that receiver decides what it requires.
        task(name="checks.partner", auth=None, url="https://partner.example.com/hook")(job)
        yield


def texts(messages: list[Any]) -> list[tuple[str, str]]:
    return [(m.id, m.msg) for m in messages]


@pytest.mark.usefixtures("only_these_tasks")
def test_tasks_without_an_oidc_token_are_reported() -> None:
    with override_settings(CLOUDTASK=CLOUD):
        messages = check_task_tokens()
    refused = "but the endpoint requires OIDC tokens: its requests would be refused with 403."
    assert texts(messages) == [
        (
            "cloudtask.W023",
            "Task 'checks.gae' is sent to the task endpoint as an App Engine task, which "
            f"carries no OIDC token, {refused}",
        ),
        (
            "cloudtask.W023",
            f"Task 'checks.no_auth' is sent to the task endpoint without a token (auth=None), "
            f"{refused}",
        ),
        (
            "cloudtask.W023",
            "Task 'checks.oauth' is sent to the task endpoint with an OAuth access token "
            f"(auth='oauth'), not an OIDC token, {refused}",
        ),
    ]
    assert {m.hint for m in messages} == {HINT}


@pytest.mark.usefixtures("only_these_tasks")
@pytest.mark.parametrize(
    "cloudtask",
    [
        {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"},  # OIDC not required
        {**CLOUD, "OIDC": {"REQUIRED": False}},
    ],
)
def test_nothing_is_reported_when_oidc_is_not_required(cloudtask: dict[str, Any]) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        assert check_task_tokens() == []


@pytest.mark.usefixtures("only_these_tasks")
def test_required_without_sae_is_reported_once() -> None:
    settings = {
        "BACKEND": "cloudtask.backends.local.LocalBackend",
        "OIDC": {"SERVICE_ACCOUNTS": [SAE]},
    }
    with override_settings(CLOUDTASK=settings):
        messages = check_task_tokens()
    assert texts(messages) == [
        (
            "cloudtask.W023",
            "OIDC tokens are required, but CLOUDTASK['SAE'] is not set, so Cloud Tasks sends "
            "none: every request to the task endpoint would be refused with 403.",
        )
    ]


def test_only_oidc_tasks_are_clean() -> None:
    with registry.isolated():
        for name in list(registry):
            registry.unregister(name)
        task(name="checks.with_oidc")(job)
        with override_settings(CLOUDTASK=CLOUD):
            assert check_task_tokens() == []


@pytest.mark.django_db  # model checks ask SQLite whether it supports JSONField
@pytest.mark.usefixtures("only_these_tasks")
def test_check_command_reports_it() -> None:
    out = StringIO()
    with override_settings(CLOUDTASK=CLOUD):
        call_command("check", stdout=out, stderr=out)
    assert "(cloudtask.W023) Task 'checks.no_auth' is sent to the task endpoint" in out.getvalue()
