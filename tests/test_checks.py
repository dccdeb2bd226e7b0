"""System checks: one test per id, directly and through manage.py check."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

import tests.settings as base
from cloudtask import ConfigurationError, conf, registry, task
from cloudtask.checks import check_deploy, check_settings
from cloudtask.testing import capture_tasks
from tests import tasks

CT = conf.CLOUD_TASKS_BACKEND
IMMEDIATE = {"BACKEND": conf.IMMEDIATE_BACKEND}
GOOD_CLOUD = {
    "PROJECT": "my-project",
    "LOCATION": "europe-west6",
    "URL": "https://app.example.com/_tasks/",
}


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_test_settings_are_clean() -> None:
    assert check_settings() == []


def test_complete_cloud_tasks_configuration_is_clean() -> None:
    with override_settings(CLOUDTASK=GOOD_CLOUD):
        assert check_settings() == []
        assert conf.backend_path() == CT


@pytest.mark.parametrize(
    ("cloudtask", "expected", "text"),
    [
        ("not a dict", ["cloudtask.E001"], "CLOUDTASK must be a dict"),
        ({"BACKEND": "nope.Backend"}, ["cloudtask.E002"], "could not be imported"),
        ({"BACKEND": "cloudtask.conf.DEFAULTS"}, ["cloudtask.E002"], "is not a subclass"),
        (
            {"BACKEND": CT, "LOCATION": "x", "URL": "https://a.example/_tasks/"},
            ["cloudtask.E003"],
            "PROJECT",
        ),
        ({"PROJECT": "p", "URL": "https://a.example/_tasks/"}, ["cloudtask.E004"], "LOCATION"),
        ({"PROJECT": "p", "LOCATION": "l"}, ["cloudtask.E005"], "URL"),
        ({**GOOD_CLOUD, "URL": "/_tasks/"}, ["cloudtask.E006"], "absolute http(s) URL"),
        ({**IMMEDIATE, "SECRET": ""}, ["cloudtask.E007"], "non-empty string"),
        ({**IMMEDIATE, "SECRET_FALLBACKS": "x"}, ["cloudtask.E007"], "list of strings"),
        ({**IMMEDIATE, "QUEUE": "bad queue"}, ["cloudtask.E008"], "queue id"),
        ({**IMMEDIATE, "TIMEOUT": 3}, ["cloudtask.E009"], "between 15 seconds and 30 minutes"),
        ({**IMMEDIATE, "MAX_BODY_SIZE": 0}, ["cloudtask.E011"], "positive number of bytes"),
        ({**IMMEDIATE, "MAX_BODY_SIZE": "1MB"}, ["cloudtask.E011"], "not '1MB'"),
        ({**IMMEDIATE, "ACCEPT_DERIVED_KEY": "yes"}, ["cloudtask.E007"], "True or False"),
        ({**IMMEDIATE, "QUEU": "default"}, ["cloudtask.W001"], "unknown key 'QUEU'"),
        ({**IMMEDIATE, "RESULTS": 1}, ["cloudtask.E012"], "must be True or False"),
        ({**IMMEDIATE, "EMULATOR_HOST": "localhost"}, ["cloudtask.E013"], "must be 'host:port'"),
    ],
)
def test_each_misconfiguration_has_its_id(cloudtask: Any, expected: list[str], text: str) -> None:
    with override_settings(CLOUDTASK=cloudtask):
        messages = check_settings()
    assert ids(messages) == expected
    assert text in messages[0].msg


@override_settings(ROOT_URLCONF="tests.urls_without_endpoint")
def test_missing_urls_include_is_reported() -> None:
    messages = check_settings()
    assert ids(messages) == ["cloudtask.E010"]
    assert 'include("cloudtask.urls")' in messages[0].msg
    assert 'or set CLOUDTASK["URL"]' in messages[0].msg


@pytest.mark.parametrize("cloudtask", [GOOD_CLOUD, {**IMMEDIATE, "URL": GOOD_CLOUD["URL"]}])
@override_settings(ROOT_URLCONF="tests.urls_without_endpoint")
def test_a_project_that_only_pushes_sets_url_instead_of_the_urls(cloudtask: Any) -> None:
    from cloudtask.testing import capture_tasks
    from tests import tasks

    # The endpoint is served by another service: URL is where the tasks go.
    with override_settings(CLOUDTASK=cloudtask):
        assert check_settings() == []
        with capture_tasks() as captured:
            tasks.noop().delay()
    assert [c.url for c in captured] == [GOOD_CLOUD["URL"]]


@override_settings(CLOUDTASK={**GOOD_CLOUD, "SECRET": "short"}, DEBUG=False)
def test_deploy_flags_short_secret() -> None:
    assert ids(check_deploy()) == ["cloudtask.W002"]


@pytest.mark.parametrize("backend", [conf.LOCAL_BACKEND, conf.IMMEDIATE_BACKEND])
def test_deploy_flags_development_backends_without_debug(backend: str) -> None:
    with override_settings(CLOUDTASK={"BACKEND": backend}, DEBUG=False):
        assert ids(check_deploy()) == ["cloudtask.W003"]
    with override_settings(CLOUDTASK={"BACKEND": backend}, DEBUG=True):
        assert check_deploy() == []


@pytest.mark.django_db  # model checks ask SQLite whether it supports JSONField
def test_check_command_fails_on_errors() -> None:
    with override_settings(CLOUDTASK={"PROJECT": "p"}), pytest.raises(SystemCheckError) as excinfo:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "cloudtask.E004" in str(excinfo.value)
    assert "cloudtask.E005" in str(excinfo.value)


def on_app_engine_only(request: Any) -> None:
    """Registered only inside the test below."""


def test_url_is_not_required_when_every_task_targets_app_engine() -> None:
    settings = {"BACKEND": CT, "PROJECT": "p", "LOCATION": "l"}
    with override_settings(CLOUDTASK=settings), registry.isolated():
        assert "cloudtask.E005" in ids(check_settings())  # tests.tasks has HTTP tasks
        for name in list(registry):
            registry.unregister(name)
        task(app_engine={"service": "worker"}, relative_uri="/_tasks/")(on_app_engine_only)
        assert "cloudtask.E005" not in ids(check_settings())


@pytest.mark.django_db
def test_check_deploy_command_reports_warnings() -> None:
    out = StringIO()
    with override_settings(CLOUDTASK={**GOOD_CLOUD, "SECRET": "short"}):
        call_command("check", "--deploy", stdout=out, stderr=out, fail_level="ERROR")
    assert "cloudtask.W002" in out.getvalue()


def test_settings_are_read_lazily() -> None:
    assert conf.get("QUEUE") == "default"
    with override_settings(CLOUDTASK={"QUEUE": "other"}):
        assert conf.get("QUEUE") == "other"
    assert conf.get("QUEUE") == "default"


def test_backend_default_depends_on_project() -> None:
    with override_settings(CLOUDTASK={}):
        assert conf.backend_path() == conf.LOCAL_BACKEND
    with override_settings(CLOUDTASK={"PROJECT": "p"}):
        assert conf.backend_path() == CT


def test_backend_instance_follows_settings() -> None:
    from cloudtask.backends import get_backend
    from cloudtask.backends.immediate import ImmediateBackend

    assert isinstance(get_backend(), ImmediateBackend)
    with override_settings(CLOUDTASK={"BACKEND": "tests.support.backends.RecordingBackend"}):
        assert type(get_backend()).__name__ == "RecordingBackend"
    assert isinstance(get_backend(), ImmediateBackend)


def test_bad_backend_at_push_time_names_the_setting() -> None:
    from cloudtask import ConfigurationError
    from tests import tasks

    with (
        override_settings(CLOUDTASK={"BACKEND": "nope.Backend"}),
        pytest.raises(ConfigurationError) as excinfo,
    ):
        tasks.noop().delay()
    assert "CLOUDTASK['BACKEND'] = 'nope.Backend' could not be imported" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, ImportError)


@pytest.mark.parametrize("name", ["CLOUDTASKS", "CLOUD_TASK", "CLOUD_TASKS"])
def test_a_misspelt_setting_name_is_a_warning(name: str) -> None:
    with override_settings(**{name: {"QUEUE": "default"}}):
        messages = check_settings()
    assert ids(messages) == ["cloudtask.W004"]
    assert (
        messages[0].msg == f"The setting {name} is not read by cloudtask: did you mean CLOUDTASK?"
    )


def test_other_settings_that_mention_tasks_are_not_flagged() -> None:
    with override_settings(CLOUD_TASKS_QUEUE_PREFIX="x", CELERY_TASK_ROUTES={}):
        assert check_settings() == []


NOT_INSTALLED = [app for app in base.INSTALLED_APPS if app != "cloudtask"]
WITHOUT_APP = 'cloudtask is not in INSTALLED_APPS: add "cloudtask" to INSTALLED_APPS'


def test_a_push_without_the_app_installed_says_so() -> None:
    with (
        override_settings(INSTALLED_APPS=NOT_INSTALLED),
        pytest.raises(ConfigurationError) as excinfo,
    ):
        tasks.add.delay(a=1, b=2)
    assert str(excinfo.value).startswith(WITHOUT_APP)
    assert tasks.calls == []


def test_the_endpoint_without_the_app_installed_answers_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with capture_tasks() as captured:
        tasks.add.delay(a=1, b=2)
    with override_settings(INSTALLED_APPS=NOT_INSTALLED):
        response = captured[0].run()
    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "misconfigured"}
    assert WITHOUT_APP in caplog.text
    assert tasks.calls == []
