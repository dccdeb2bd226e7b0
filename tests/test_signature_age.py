"""CLOUDTASK['SIGNATURE_MAX_AGE']: a signed body that is replayed too late is refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from django.core.checks import run_checks
from django.test import override_settings
from freezegun import freeze_time

from cloudtask import signing
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import post

WEEK = 7 * 24 * 3600
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def pushed_body() -> bytes:
    with capture_tasks() as captured:
        tasks.add(1, 2).push()
    return captured[0].http_request.body


@override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": WEEK})
def test_a_body_is_accepted_within_its_age_and_refused_after() -> None:
    with freeze_time(NOW):
        body = pushed_body()
    assert json.loads(body)["exp"] == int(NOW.timestamp()) + WEEK
    with freeze_time(NOW + timedelta(seconds=WEEK)):
        assert post(body).status_code == 200
    with freeze_time(NOW + timedelta(seconds=WEEK + 1)):
        response = post(body)
    assert response.status_code == 403
    assert response.json()["detail"] == "signature expired (CLOUDTASK['SIGNATURE_MAX_AGE'])"
    assert tasks.calls == [("add", (1, 2))]


@override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": 60})
def test_the_age_counts_from_the_eta() -> None:
    with freeze_time(NOW), capture_tasks() as captured:
        tasks.add(1, 2).schedule(at=NOW + timedelta(days=3))
    with freeze_time(NOW + timedelta(days=3, seconds=30)):
        assert post(captured[0].http_request.body).status_code == 200


def test_an_expiry_in_the_body_holds_even_with_the_setting_off() -> None:
    with override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": 60}), freeze_time(NOW):
        body = pushed_body()
    with freeze_time(NOW + timedelta(seconds=61)):
        assert post(body).status_code == 403
    assert tasks.calls == []


def test_with_the_setting_on_a_body_without_expiry_is_refused() -> None:
    body = pushed_body()
    assert "exp" not in json.loads(body)
    with override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": WEEK}):
        response = post(body)
    assert response.status_code == 403
    assert "no expiry" in response.json()["detail"]
    assert tasks.calls == []


@pytest.mark.parametrize("exp", ["1", 1.5, None, True, [1]])
def test_an_expiry_that_is_not_a_unix_time_is_refused(exp: object) -> None:
    body = json.dumps({"v": 1, "task": "tests.tasks.add", "id": "c", "exp": exp}).encode()
    with override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": WEEK}):
        assert post(body).status_code == 403
    assert tasks.calls == []


def test_the_expiry_is_signed() -> None:
    with override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": 60}), freeze_time(NOW):
        body = pushed_body()
    later = body.replace(str(int(NOW.timestamp()) + 60).encode(), b"9999999999")
    header = signing.sign("/_tasks/", body)
    assert post(later, signature=header).status_code == 403


@pytest.mark.parametrize("value", [0, -5, "week", float("inf")])
def test_a_bad_setting_is_a_check_error_and_a_503(value: object) -> None:
    with override_settings(CLOUDTASK={"SIGNATURE_MAX_AGE": value}):
        [error] = [m for m in run_checks() if m.id == "cloudtask.E014"]
        assert "SIGNATURE_MAX_AGE" in error.msg
        response = post(json.dumps({"v": 1, "task": "tests.tasks.add", "id": "c"}).encode())
    assert response.status_code == 503
    assert tasks.calls == []
