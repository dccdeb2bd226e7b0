"""@task: what it accepts, what it refuses, and the registry it fills."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pytest

from cloudtask import (
    CloudTaskRequest,
    DuplicateTaskName,
    Task,
    TaskDefinitionError,
    registry,
    task,
)
from cloudtask.exceptions import UnknownTask
from tests import tasks


@pytest.fixture(autouse=True)
def _isolated_registry() -> Any:
    with registry.isolated():
        yield


def module_level(request: CloudTaskRequest, x: int) -> int:
    return x


def no_params() -> None:
    pass


def keyword_only(*, request: CloudTaskRequest) -> None:
    pass


def star_args(*args: Any) -> None:
    pass


def test_bare_decorator_registers_under_module_and_qualname() -> None:
    assert isinstance(tasks.add, Task)
    assert tasks.add.name == "tests.tasks.add"
    assert registry.get("tests.tasks.add") is tasks.add
    assert tasks.noop.queue is None


def test_options_are_kept_on_the_definition() -> None:
    definition = task(
        queue="emails",
        url="https://other.example.com/_tasks/",
        named=True,
        name="custom.name",
        timeout=60,
        headers={"X-Tenant": "acme"},
    )(module_level)
    assert definition.name == "custom.name"
    assert definition.queue == "emails"
    assert definition.url == "https://other.example.com/_tasks/"
    assert definition.named is True
    assert definition.timeout == timedelta(seconds=60)
    assert definition.headers == {"X-Tenant": "acme"}
    assert registry.get("custom.name") is definition


def test_definitions_are_immutable_and_using_returns_a_copy() -> None:
    definition = task(name="copy.me")(module_level)
    with pytest.raises(AttributeError):
        definition.queue = "other"  # type: ignore[misc]
    copy = definition.using(queue="other", timeout=timedelta(minutes=2))
    assert copy.queue == "other"
    assert copy.timeout == timedelta(minutes=2)
    assert definition.queue is None
    assert registry.get("copy.me") is definition


def test_lambda_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="cannot register a lambda"):
        task(lambda request: None)


def test_nested_function_is_refused() -> None:
    def inner(request: CloudTaskRequest) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=r"defined inside another function.*module level"):
        task(inner)


@pytest.mark.parametrize("func", [no_params, keyword_only, star_args])
def test_function_without_a_first_positional_parameter_is_refused(func: Any) -> None:
    with pytest.raises(TaskDefinitionError, match="needs a first positional parameter"):
        task(func)


@pytest.mark.parametrize("thing", [42, "default", None.__class__])
def test_non_function_is_refused(thing: Any) -> None:
    with pytest.raises(TypeError, match="@task decorates"):
        task(thing)


def test_task_definition_error_is_a_type_error() -> None:
    assert issubclass(TaskDefinitionError, TypeError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "bad queue!"}, "must be a Cloud Tasks queue id"),
        ({"queue": "q" * 101}, "must be a Cloud Tasks queue id"),
        ({"url": "/relative/"}, "must be an absolute http"),
        ({"url": "ftp://example.com/"}, "must be an absolute http"),
        ({"timeout": 5}, "between 15 seconds and 30 minutes"),
        ({"timeout": timedelta(hours=1)}, "between 15 seconds and 30 minutes"),
        ({"timeout": "60"}, "number of seconds or a datetime.timedelta"),
        ({"named": "yes"}, "must be True or False"),
        ({"headers": ["X-A"]}, "must be a dict"),
        ({"headers": {"X-CloudTask-Signature": "v1=0"}}, "cannot be overridden"),
        ({"headers": {"content-type": "text/plain"}}, "cannot be overridden"),
        ({"headers": {"X-CloudTasks-TaskName": "x"}}, "cannot be overridden"),
        ({"headers": {"User-Agent": "mine"}}, "cannot be overridden"),
        ({"headers": {"X-Google-Anything": "x"}}, "cannot be overridden"),
        ({"headers": {"X-AppEngine-QueueName": "x"}}, "cannot be overridden"),
        ({"headers": {"authorization": "Bearer x"}}, r"choose it with auth=.oidc."),
        ({"headers": {"Bad Header": "x"}}, "not a valid HTTP header name"),
        ({"headers": {"X-A": "one\r\nX-B: two"}}, "one-line string"),
        ({"name": ""}, "non-empty string"),
    ],
)
def test_bad_options_are_refused_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        task(**options)(module_level)


def test_duplicate_name_names_both_functions() -> None:
    task(name="shared.name")(module_level)
    with pytest.raises(DuplicateTaskName) as excinfo:
        task(name="shared.name")(tasks.add.func)
    message = str(excinfo.value)
    assert "tests.test_task_definition.module_level" in message
    assert "tests.tasks.add" in message


def test_same_function_registered_again_replaces_it() -> None:
    first = task(name="again")(module_level)
    second = task(name="again")(module_level)
    assert registry.get("again") is second is not first


def test_registry_lookup_of_unknown_name() -> None:
    with pytest.raises(UnknownTask, match="no task is registered under 'nope'"):
        registry.get("nope")
    assert "nope" not in registry
    assert "tests.tasks.add" in registry
    assert "tests.tasks.add" in list(registry)


def test_registry_isolated_restores_state() -> None:
    with registry.isolated():
        task(name="temporary")(module_level)
        assert "temporary" in registry
    assert "temporary" not in registry


def test_tasks_modules_of_installed_apps_are_autodiscovered() -> None:
    # Nothing in the tests imports tests.discovered.tasks: AppConfig.ready() did.
    assert "tests.discovered.tasks" in sys.modules
    assert "discovered.ping" in registry


def test_async_functions_can_be_tasks() -> None:
    assert tasks.async_add(a=2, b=3)() == 5
