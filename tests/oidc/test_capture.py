"""capture_tasks().run_all() when OIDC is required: development tokens, only inside the block."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from cloudtask import signing
from cloudtask.testing import capture_tasks
from tests import tasks

OIDC_ON = {
    "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
    "SAE": "invoker@my-project.iam.gserviceaccount.com",
    "URL": "http://testserver/_tasks/",
}


@override_settings(CLOUDTASK=OIDC_ON)
def test_run_all_passes_oidc_with_a_development_token() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        [response] = captured.run_all()
    assert response.status_code == 200
    assert response.json()["result"] == 3


@override_settings(CLOUDTASK=OIDC_ON)
def test_the_same_token_is_refused_outside_capture() -> None:
    from cloudtask import oidc

    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        token = oidc.development_token(oidc.settings().audience, "")
    request = captured[0].http_request
    response = Client(enforce_csrf_checks=True).post(
        captured[0].path,
        request.body,
        content_type="application/json",
        headers={
            signing.SIGNATURE_HEADER: request.headers[signing.SIGNATURE_HEADER],
            "Authorization": f"Bearer {token}",
        },
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "invalid or missing OIDC token"
    assert tasks.calls == []


@pytest.mark.parametrize("name", ["without_token", "with_oauth_token", "on_app_engine"])
@override_settings(CLOUDTASK=OIDC_ON)
def test_run_all_sends_no_token_where_cloud_tasks_sends_none(name: str) -> None:
    with capture_tasks() as captured:
        getattr(tasks, name)().delay()
        [response] = captured.run_all()
    assert captured[0].oidc_token is None
    # Cloud Tasks would be refused the same way: the test shows the production failure.
    assert response.status_code == 403
    assert response.json()["detail"] == "invalid or missing OIDC token"
    assert tasks.calls == []


@pytest.mark.parametrize(
    ("oidc", "audience", "status"),
    [
        ({}, "http://testserver/_tasks/?via=call", 403),  # the task's URL, not the endpoint's
        ({"AUDIENCE": "http://testserver/_tasks/"}, "http://testserver/_tasks/", 200),
    ],
)
def test_run_all_token_has_the_audience_cloud_tasks_would_use(
    oidc: dict[str, str], audience: str, status: int
) -> None:
    with override_settings(CLOUDTASK={**OIDC_ON, "OIDC": oidc}), capture_tasks() as captured:
        call = tasks.add(a=1, b=2)
        call.url = "http://testserver/_tasks/?via=call"
        call.delay()
        [response] = captured.run_all()
    assert captured[0].oidc_token == {"service_account_email": OIDC_ON["SAE"], "audience": audience}
    assert response.status_code == status


def test_run_all_token_is_for_sae() -> None:
    other = "other@my-project.iam.gserviceaccount.com"
    settings = {**OIDC_ON, "OIDC": {"SERVICE_ACCOUNTS": [other, OIDC_ON["SAE"]]}}
    with override_settings(CLOUDTASK=settings), capture_tasks() as captured:
        tasks.record_request().delay()
        [response] = captured.run_all()
    assert response.status_code == 200
    [(_, request)] = tasks.calls
    assert request.oidc_email == OIDC_ON["SAE"]


def test_run_all_sends_no_token_without_sae() -> None:
    settings = {**OIDC_ON, "SAE": None, "OIDC": {"SERVICE_ACCOUNTS": [OIDC_ON["SAE"]]}}
    with override_settings(CLOUDTASK=settings), capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        [response] = captured.run_all()
    assert captured[0].oidc_token is None
    assert response.status_code == 403
