"""Per-task OIDC audiences: @task(audience=...), call.audience, and what the endpoint accepts."""

from __future__ import annotations

import pytest
from django.test import override_settings

from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.oidc import OIDC_ON, SERVICE_ACCOUNT

pytestmark = pytest.mark.usefixtures("development_key_dir")

AUDIENCE = "https://audience.example.com/tasks"


@override_settings(CLOUDTASK=OIDC_ON)
def test_a_task_audience_is_minted_and_accepted() -> None:
    with capture_tasks() as captured:
        tasks.with_audience().delay()
        [response] = captured.run_all()
    assert captured[0].oidc_token == {
        "service_account_email": SERVICE_ACCOUNT,
        "audience": AUDIENCE,
    }
    assert response.status_code == 200
    assert tasks.calls == [("with_audience", SERVICE_ACCOUNT)]


@override_settings(CLOUDTASK=OIDC_ON)
def test_a_call_audience_the_endpoint_accepts_and_one_it_does_not() -> None:
    with capture_tasks() as captured:
        accepted = tasks.add(a=1)
        accepted.audience = AUDIENCE  # another task declares it, so the endpoint accepts it
        accepted.delay()
        refused = tasks.add(a=2)
        refused.audience = "https://elsewhere.example.com/"
        refused.delay()
        responses = captured.run_all()
    assert [c.oidc_token["audience"] for c in captured] == [  # type: ignore[index]
        AUDIENCE,
        "https://elsewhere.example.com/",
    ]
    assert [r.status_code for r in responses] == [200, 403]
    assert tasks.calls == [("add", (1, 4))]


@override_settings(CLOUDTASK=OIDC_ON)
def test_a_retry_copy_keeps_the_call_audience() -> None:
    with capture_tasks() as captured:
        call = tasks.retries_itself(countdown=30)
        call.audience = AUDIENCE
        call.delay()
        captured[0].run()
    assert [c.oidc_token["audience"] for c in captured] == [AUDIENCE, AUDIENCE]  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"audience": ""}, TypeError, "must be a non-empty string"),
        ({"audience": ["a"]}, TypeError, "must be a non-empty string"),
        ({"audience": "a", "auth": None}, ValueError, "only applies with auth='oidc'"),
        ({"audience": "a", "app_engine": {"service": "w"}}, ValueError, "take no OIDC token"),
    ],
)
def test_bad_audiences_are_refused(options: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        tasks.add.using(**options)
    call = tasks.add(a=1)
    with pytest.raises(TypeError, match=r"TaskCall\.audience must be a non-empty string"):
        call.audience = 7  # type: ignore[assignment]
    call.consume()
