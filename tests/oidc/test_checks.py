"""The OIDC settings and their system checks: E020-E026, W020-W022 and, for tasks, W023."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from cloudtask import CloudTaskRequest, ConfigurationError, conf, oidc, task
from cloudtask.checks import check_oidc, check_oidc_deploy, check_task_tokens
from cloudtask.registry import registry
from tests.support.oidc import AUDIENCE, SERVICE_ACCOUNT

CLOUD = {
    "PROJECT": "my-project",
    "LOCATION": "europe-west6",
    "URL": AUDIENCE,
    "SAE": SERVICE_ACCOUNT,
}
IMMEDIATE = {"BACKEND": conf.IMMEDIATE_BACKEND}
HINT = (
    "Cloud Tasks adds an OIDC token only to HTTP targets with auth='oidc' (the default), "
    "minted for CLOUDTASK['SAE']; the local queue and capture_tasks() do the same."
)


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def texts(messages: list[Any]) -> list[tuple[str, str]]:
    return [(m.id, m.msg) for m in messages]


def job(request: CloudTaskRequest) -> None:
    """A task body; each test registers it under the names and options it needs."""


@pytest.fixture
def empty_registry() -> Iterator[None]:
    """No task registered during the test; the registry is restored afterwards."""
    with registry.isolated():
        for name in list(registry):
            registry.unregister(name)
        yield


@pytest.fixture
def only_these_tasks(empty_registry: None) -> None:
    """One task for each way Cloud Tasks may send it, and one sent elsewhere."""
    task(name="checks.with_oidc")(job)
    task(name="checks.no_auth", auth=None)(job)
    task(name="checks.oauth", auth="oauth")(job)
    task(name="checks.gae", app_engine={"service": "worker"})(job)
    # Sent elsewhere: that receiver decides what it requires.
    task(name="checks.partner", auth=None, url="https://partner.example.com/hook")(job)


@pytest.mark.parametrize(
    ("cloudtask", "required"),
    [
        ({}, False),
        ({"SAE": SERVICE_ACCOUNT}, True),
        ({"OIDC": {}}, True),
        ({"OIDC": {"AUDIENCE": "https://a.example/"}}, True),
        ({"SAE": SERVICE_ACCOUNT, "OIDC": {"REQUIRED": False}}, False),
        ({"OIDC": {"REQUIRED": True}}, True),
        ({"SAE": SERVICE_ACCOUNT, "OIDC": {"REQUIRED": "no"}}, True),  # malformed: fails closed
        ({"SAE": SERVICE_ACCOUNT, "OIDC": {"REQUIRED": None}}, True),
        ({"OIDC": "yes"}, True),
    ],
)
def test_when_oidc_is_required(cloudtask: dict[str, Any], required: bool) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        assert conf.oidc_required() is required


def test_defaults() -> None:
    with override_settings(CLOUDTASK=CLOUD):
        resolved = oidc.settings()
    assert resolved == oidc.OidcSettings(
        audience="https://app.example.com/_tasks/",
        service_accounts=(SERVICE_ACCOUNT,),
        issuers=("https://accounts.google.com", "accounts.google.com"),
        certs_url="https://www.googleapis.com/oauth2/v1/certs",
        clock_skew=10.0,
        trust_development_key=False,
    )


def test_every_setting_is_applied() -> None:
    options = {
        "AUDIENCE": "https://tasks.example.com/",
        "SERVICE_ACCOUNTS": ["a@p.iam.gserviceaccount.com", "b@p.iam.gserviceaccount.com"],
        "ISSUERS": ["https://accounts.google.com"],
        "CERTS_URL": "https://certs.example.com/v1",
        "CLOCK_SKEW": timedelta(seconds=30),
        "REQUIRED": True,
    }
    with override_settings(CLOUDTASK={**CLOUD, "OIDC": options}):
        resolved = oidc.settings()
    assert resolved.audience == "https://tasks.example.com/"
    assert resolved.service_accounts == tuple(options["SERVICE_ACCOUNTS"])
    assert resolved.issuers == ("https://accounts.google.com",)
    assert resolved.certs_url == "https://certs.example.com/v1"
    assert resolved.clock_skew == 30.0


def test_invalid_settings_raise_a_clear_configuration_error() -> None:
    with (
        override_settings(CLOUDTASK={**CLOUD, "OIDC": {"CLOCK_SKEW": 900}}),
        pytest.raises(ConfigurationError) as raised,
    ):
        oidc.settings()
    assert str(raised.value) == (
        "CLOUDTASK['OIDC']['CLOCK_SKEW'] must be between 0 and 300 seconds, not 900."
    )


def test_unknown_keys_are_a_configuration_error() -> None:
    with (
        override_settings(CLOUDTASK={**CLOUD, "OIDC": {"AUDIENCES": [], 1: 2}}),
        pytest.raises(ConfigurationError) as raised,
    ):
        oidc.settings()
    assert str(raised.value).startswith("CLOUDTASK['OIDC'] has unknown keys ['AUDIENCES', 1];")


def test_the_test_settings_and_a_complete_configuration_are_clean() -> None:
    assert check_oidc() == []
    with override_settings(CLOUDTASK=CLOUD):
        assert check_oidc() == []
        assert check_oidc_deploy() == []


@pytest.mark.parametrize(
    ("cloudtask", "expected", "text"),
    [
        ({**IMMEDIATE, "OIDC": "yes"}, "cloudtask.E020", "CLOUDTASK['OIDC'] must be a dict"),
        ({**CLOUD, "OIDC": {"AUDIENCES": []}}, "cloudtask.E020", "unknown key 'AUDIENCES'"),
        ({**CLOUD, "OIDC": {"AUDIENCE": "/_tasks/"}}, "cloudtask.E021", "absolute http(s) URL"),
        ({**CLOUD, "OIDC": {"AUDIENCE": 5}}, "cloudtask.E021", "must be a string URL"),
        (
            {"PROJECT": "p", "LOCATION": "l", "SAE": SERVICE_ACCOUNT},
            "cloudtask.E021",
            "OIDC verification needs the token audience",
        ),
        (
            {**IMMEDIATE, "OIDC": {}},
            "cloudtask.E022",
            "SERVICE_ACCOUNTS'] (default: [CLOUDTASK['SAE']]) must be a non-empty list",
        ),
        (
            {**CLOUD, "OIDC": {"SERVICE_ACCOUNTS": []}},
            "cloudtask.E022",
            "must be a non-empty list of non-empty strings",
        ),
        (
            {**CLOUD, "OIDC": {"SERVICE_ACCOUNTS": SERVICE_ACCOUNT}},
            "cloudtask.E022",
            "must be a list of strings, not str",
        ),
        ({**CLOUD, "OIDC": {"ISSUERS": []}}, "cloudtask.E023", "ISSUERS'] must be a non-empty"),
        ({**CLOUD, "OIDC": {"CERTS_URL": "certs"}}, "cloudtask.E024", "absolute http(s) URL"),
        ({**CLOUD, "OIDC": {"CLOCK_SKEW": -1}}, "cloudtask.E025", "between 0 and 300 seconds"),
        ({**CLOUD, "OIDC": {"CLOCK_SKEW": "10"}}, "cloudtask.E025", "number of seconds"),
        ({**CLOUD, "OIDC": {"REQUIRED": "no"}}, "cloudtask.E026", "must be True or False"),
    ],
)
def test_each_misconfiguration_has_its_id(
    cloudtask: dict[str, Any], expected: str, text: str
) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        messages = check_oidc()
    assert ids(messages) == [expected]
    assert text in messages[0].msg


def test_unused_defaults_are_not_checked_when_oidc_is_off() -> None:
    with override_settings(CLOUDTASK={**IMMEDIATE, "OIDC": {"REQUIRED": False}}):
        assert check_oidc() == []


@pytest.mark.parametrize(
    ("cloudtask", "expected"),
    [
        ({**CLOUD, "URL": "http://app.example.com/_tasks/"}, ["cloudtask.W020"]),
        ({**CLOUD, "OIDC": {"AUDIENCE": "http://app.example.com/"}}, ["cloudtask.W020"]),
        ({**CLOUD, "OIDC": {"CERTS_URL": "http://certs.example.com/"}}, ["cloudtask.W021"]),
        ({**CLOUD, "OIDC": {"REQUIRED": False}}, ["cloudtask.W022"]),
        (
            {**CLOUD, "URL": "http://app.example.com/_tasks/", "OIDC": {"REQUIRED": False}},
            ["cloudtask.W022"],
        ),
        ({**CLOUD, "OIDC": {"CLOCK_SKEW": "x"}}, []),  # an error, reported by check_oidc
    ],
)
def test_deploy_warnings(cloudtask: dict[str, Any], expected: list[str]) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        assert ids(check_oidc_deploy()) == expected


@pytest.mark.django_db  # model checks ask SQLite whether it supports JSONField
def test_check_command_reports_oidc_errors() -> None:
    with (
        override_settings(CLOUDTASK={**CLOUD, "OIDC": {"SERVICE_ACCOUNTS": []}}),
        pytest.raises(SystemCheckError) as raised,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "cloudtask.E022" in str(raised.value)


@pytest.mark.django_db  # model checks ask SQLite whether it supports JSONField
def test_check_deploy_command_reports_oidc_warnings() -> None:
    out = StringIO()
    insecure = {**IMMEDIATE, "SAE": SERVICE_ACCOUNT, "URL": "http://app.example.com/_tasks/"}
    with override_settings(CLOUDTASK=insecure):
        call_command("check", "--deploy", stdout=out, stderr=out, fail_level="ERROR")
    assert "cloudtask.W020" in out.getvalue()


# cloudtask.W023: tasks Cloud Tasks would send to this endpoint without the token it needs.


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
        IMMEDIATE,  # OIDC not required
        {**CLOUD, "OIDC": {"REQUIRED": False}},
    ],
)
def test_nothing_is_reported_when_oidc_is_not_required(cloudtask: dict[str, Any]) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        assert check_task_tokens() == []


@pytest.mark.usefixtures("only_these_tasks")
def test_required_without_sae_is_reported_once() -> None:
    settings = {
        "BACKEND": conf.LOCAL_BACKEND,
        "OIDC": {"SERVICE_ACCOUNTS": [SERVICE_ACCOUNT]},
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


@pytest.mark.usefixtures("empty_registry")
def test_only_oidc_tasks_are_clean() -> None:
    task(name="checks.with_oidc")(job)
    with override_settings(CLOUDTASK=CLOUD):
        assert check_task_tokens() == []


@pytest.mark.django_db  # model checks ask SQLite whether it supports JSONField
@pytest.mark.usefixtures("only_these_tasks")
def test_check_command_reports_tasks_without_a_token() -> None:
    out = StringIO()
    with override_settings(CLOUDTASK=CLOUD):
        call_command("check", stdout=out, stderr=out)
    assert "(cloudtask.W023) Task 'checks.no_auth' is sent to the task endpoint" in out.getvalue()
