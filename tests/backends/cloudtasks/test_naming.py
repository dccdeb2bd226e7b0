"""Task ids (named=True, named="args", custom, unique) and the target options' validation."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cloudtask import CloudTaskRequest, TaskCall, task
from cloudtask.registry import registry
from cloudtask.task_ids import (
    TASK_ID_RE,
    arguments_task_id,
    check_task_id,
    make_task_id,
    task_id_for,
)
from cloudtask.testing import capture_tasks
from tests import tasks


def test_derived_id_is_hash_prefixed_readable_and_valid() -> None:
    task_id = make_task_id("tests.tasks.named_refresh")
    assert re.fullmatch(r"[0-9a-f]{12}-tests-tasks-named_refresh", task_id)
    assert TASK_ID_RE.match(make_task_id("äöü/ weird:name" * 100))
    assert len(make_task_id("x" * 1000)) == 500


def test_arguments_id_ignores_how_arguments_are_passed() -> None:
    same = {
        arguments_task_id(tasks.deduplicated, [1], {}),
        arguments_task_id(tasks.deduplicated, [1, 2], {}),
        arguments_task_id(tasks.deduplicated, [], {"b": 2, "a": 1}),
    }
    assert len(same) == 1
    (task_id,) = same
    assert re.fullmatch(r"[0-9a-f]{32}-tests-tasks-deduplicated", task_id)


def test_arguments_id_differs_for_other_arguments_or_task() -> None:
    ids = {
        arguments_task_id(tasks.deduplicated, [1], {}),
        arguments_task_id(tasks.deduplicated, [1, 3], {}),
        arguments_task_id(tasks.deduplicated, ["1"], {}),
        arguments_task_id(tasks.add, [1], {}),
    }
    assert len(ids) == 4


def test_arguments_id_sorts_nested_keys() -> None:
    first = arguments_task_id(tasks.echo, [], {"x": {"a": 1, "b": 2}})
    assert first == arguments_task_id(tasks.echo, [], {"x": {"b": 2, "a": 1}})


def unpushed(call: TaskCall[Any]) -> TaskCall[Any]:
    """Return a call made only for the id it would get: it is never pushed."""
    call.consume()
    return call


def test_unique_appends_a_random_suffix_to_any_name() -> None:
    first = task_id_for(unpushed(tasks.add()), "report", True)
    second = task_id_for(unpushed(tasks.add()), "report", True)
    assert first is not None
    assert second is not None
    assert first != second
    assert re.fullmatch(r"report-[0-9a-f]{32}", first)
    named = task_id_for(unpushed(tasks.named_refresh()), None, True)
    assert named is not None
    assert named.startswith(make_task_id("tests.tasks.named_refresh") + "-")


def test_unique_without_a_name_is_refused() -> None:
    with pytest.raises(TypeError, match=r"unique=True needs name= \(or a named task\)"):
        tasks.add().delay(unique=True)


@pytest.mark.parametrize(
    ("name", "unique", "limit"),
    [("has spaces", False, 500), ("x" * 501, False, 500), ("x" * 468, True, 467), ("", False, 500)],
)
def test_bad_custom_names_are_refused(name: str, unique: bool, limit: int) -> None:
    with pytest.raises(ValueError, match=f"use 1 to {limit} letters"):
        check_task_id(name, unique=unique)


def test_custom_name_with_unique_fits_the_limit() -> None:
    name = task_id_for(unpushed(tasks.add()), "x" * 467, True)
    assert name is not None
    assert len(name) == 500


def test_named_by_arguments_is_deduplicated_by_content() -> None:
    from cloudtask import TaskAlreadyExists

    with capture_tasks() as captured:
        tasks.deduplicated(1).delay()
        with pytest.raises(TaskAlreadyExists):
            tasks.deduplicated(a=1, b=2).delay()
        tasks.deduplicated(2).delay()
    assert [c.args for c in captured] == [[1], [2]]


def target(request: CloudTaskRequest) -> None:
    """A module-level function to decorate with the options under test."""


def _define(**options: Any) -> None:
    with registry.isolated():
        task(**options)(target)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"named": "kwargs"}, "must be True or False, or 'args'"),
        ({"method": "GET"}, "method='GET' is not one of POST, PUT, PATCH"),
        ({"method": "PUT"}, "needs url=... pointing at a receiver"),
        ({"auth": "basic"}, "auth='basic' must be 'oidc', 'oauth' or None"),
        ({"oauth_scope": "https://x"}, "oauth_scope= only applies with auth='oauth'"),
        ({"auth": "oauth", "oauth_scope": "cloud-platform"}, "must be a scope URL"),
        ({"relative_uri": "/x/"}, "relative_uri= applies to App Engine targets"),
        ({"app_engine": {"zone": "a"}}, "unknown key 'zone'"),
        ({"app_engine": {"service": ""}}, "must be a non-empty string"),
        ({"app_engine": "worker"}, "app_engine must be a dict"),
        ({"app_engine": {"service": "w"}, "auth": "oauth"}, "take no OAuth token"),
        ({"app_engine": {"service": "w"}, "url": "https://a.example/"}, "take relative_uri="),
        ({"app_engine": {"service": "w"}, "relative_uri": "x"}, "must start with '/'"),
    ],
)
def test_bad_target_options_are_refused_at_decoration(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        _define(**options)


def test_good_target_options_are_accepted() -> None:
    _define(method="PATCH", url="https://partner.example.com/hook")
    _define(named="args", auth=None)
    _define(app_engine={"service": "worker"}, relative_uri="/_tasks/")
