"""Development tokens end to end: the local worker and capture_tasks().run_all() on the endpoint."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from cloudtask import conf, oidc, signing
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalTask
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.oidc import OIDC_ON, SERVICE_ACCOUNT, CertsServer, oidc_settings
from tests.support.worker import T0, FakeClock, drain

pytestmark = pytest.mark.usefixtures("development_key_dir")

OTHER = "other@my-project.iam.gserviceaccount.com"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


@pytest.fixture
def oidc_endpoint(task_endpoint: str, certs_server: CertsServer) -> Iterator[str]:
    """The live endpoint, with the local backend and OIDC required, as in development."""
    settings = oidc_settings(conf.LOCAL_BACKEND, certs_server, URL=task_endpoint)
    with override_settings(CLOUDTASK=settings):
        yield task_endpoint


def deliver_at_t0() -> None:
    """Deliver every stored task once: the worker's clock stands still, so no retry comes."""
    LocalTask.objects.update(schedule_time=T0)
    drain(Worker(clock=FakeClock(), log=lambda line: None))


# The local worker -> the live endpoint.


def test_worker_token_is_verified_by_the_endpoint(
    oidc_endpoint: str, certs_server: CertsServer
) -> None:
    handle = tasks.record_request().delay()
    deliver_at_t0()
    task = LocalTask.objects.get(name=handle.name)
    assert (task.status, task.last_response_status) == ("succeeded", 200)
    [(_, request)] = tasks.calls
    assert request.oidc_email == SERVICE_ACCOUNT
    header = request.http_request.META["HTTP_AUTHORIZATION"]
    assert header.startswith("Bearer ")
    token = claims(header.removeprefix("Bearer "))
    assert token["aud"] == oidc_endpoint
    assert token["email"] == SERVICE_ACCOUNT
    assert token["email_verified"] is True
    assert token["iss"] == "https://accounts.google.com"
    assert token["exp"] - token["iat"] == 3600
    assert certs_server.fetches == 0  # the development key needs no download


def test_without_the_local_backend_the_worker_token_is_refused(
    oidc_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    handle = tasks.record_request().delay()
    # The same worker request, but the endpoint's settings name the Cloud Tasks backend.
    cloud = {**conf.user_settings(), "BACKEND": conf.CLOUD_TASKS_BACKEND}
    with override_settings(CLOUDTASK=cloud):
        # The worker reads the stored rows itself; the endpoint now trusts no dev key.
        deliver_at_t0()
    task = LocalTask.objects.get(name=handle.name)
    assert task.last_response_status == 403
    assert tasks.calls == []
    assert "reason=no certificate has kid 'cloudtask-development-" in caplog.text


# Tokens only where Cloud Tasks would add one, for the same service account and audience.


@pytest.mark.parametrize("name", ["without_token", "with_oauth_token", "on_app_engine"])
def test_tasks_cloud_tasks_sends_without_an_oidc_token_get_none(
    oidc_endpoint: str, name: str
) -> None:
    handle = getattr(tasks, name)().delay()
    deliver_at_t0()
    stored = LocalTask.objects.get(name=handle.name)
    assert stored.oidc_token is None
    # Refused, as Cloud Tasks' own request would be: development shows the production bug.
    assert (stored.status, stored.last_response_status) == ("queued", 403)
    assert json.loads(stored.last_response)["detail"] == "invalid or missing OIDC token"
    assert tasks.calls == []


def test_without_sae_no_token_is_sent(oidc_endpoint: str) -> None:
    settings = conf.user_settings()
    allowed = {**settings["OIDC"], "SERVICE_ACCOUNTS": [SERVICE_ACCOUNT]}
    with override_settings(CLOUDTASK={**settings, "SAE": None, "OIDC": allowed}):
        handle = tasks.record_request().delay()
        deliver_at_t0()
    stored = LocalTask.objects.get(name=handle.name)
    assert stored.oidc_token is None
    assert stored.last_response_status == 403
    assert json.loads(stored.last_response)["detail"] == "invalid or missing OIDC token"


def test_token_is_for_sae_even_when_another_account_is_allowed_first(oidc_endpoint: str) -> None:
    settings = {**conf.user_settings()}
    settings["OIDC"] = {**settings["OIDC"], "SERVICE_ACCOUNTS": [OTHER, SERVICE_ACCOUNT]}
    with override_settings(CLOUDTASK=settings):
        tasks.record_request().delay()
        deliver_at_t0()
    [(_, request)] = tasks.calls
    token = claims(request.http_request.META["HTTP_AUTHORIZATION"].removeprefix("Bearer "))
    assert (token["email"], request.oidc_email) == (SERVICE_ACCOUNT, SERVICE_ACCOUNT)


@pytest.mark.parametrize(("audience", "status"), [(None, 403), ("endpoint", 200)])
def test_token_audience_is_the_task_url_unless_set(
    oidc_endpoint: str, audience: str | None, status: int
) -> None:
    settings = {**conf.user_settings()}
    if audience:
        settings["OIDC"] = {**settings["OIDC"], "AUDIENCE": oidc_endpoint}
    with override_settings(CLOUDTASK=settings):
        call = tasks.record_request()
        call.url = oidc_endpoint + "?via=call"  # the same endpoint, another URL
        handle = call.delay()
        deliver_at_t0()
    stored = LocalTask.objects.get(name=handle.name)
    expected = oidc_endpoint if audience else oidc_endpoint + "?via=call"
    assert stored.oidc_token == {"service_account_email": SERVICE_ACCOUNT, "audience": expected}
    # Without OIDC["AUDIENCE"], Cloud Tasks' token is for the task's URL, which is not the
    # audience the endpoint checks: refused there, and so here.
    assert stored.last_response_status == status


# capture_tasks().run_all() -> the endpoint, in-process: development tokens inside the block only.


@override_settings(CLOUDTASK=OIDC_ON)
def test_run_all_passes_oidc_with_a_development_token() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        [response] = captured.run_all()
    assert response.status_code == 200
    assert response.json()["result"] == 3


@override_settings(CLOUDTASK=OIDC_ON)
def test_the_same_token_is_refused_outside_capture() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        token = oidc.development_token(oidc.settings().audience, "")
    request = captured[0].http_request
    response = Client(enforce_csrf_checks=True, raise_request_exception=False).post(
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
    ("options", "audience", "status"),
    [
        ({}, "http://testserver/_tasks/?via=call", 403),  # the task's URL, not the endpoint's
        ({"AUDIENCE": "http://testserver/_tasks/"}, "http://testserver/_tasks/", 200),
    ],
)
def test_run_all_token_has_the_audience_cloud_tasks_would_use(
    options: dict[str, str], audience: str, status: int
) -> None:
    with override_settings(CLOUDTASK={**OIDC_ON, "OIDC": options}), capture_tasks() as captured:
        call = tasks.add(a=1, b=2)
        call.url = "http://testserver/_tasks/?via=call"
        call.delay()
        [response] = captured.run_all()
    assert captured[0].oidc_token == {
        "service_account_email": SERVICE_ACCOUNT,
        "audience": audience,
    }
    assert response.status_code == status


def test_run_all_token_is_for_sae() -> None:
    settings = {**OIDC_ON, "OIDC": {"SERVICE_ACCOUNTS": [OTHER, SERVICE_ACCOUNT]}}
    with override_settings(CLOUDTASK=settings), capture_tasks() as captured:
        tasks.record_request().delay()
        [response] = captured.run_all()
    assert response.status_code == 200
    [(_, request)] = tasks.calls
    assert request.oidc_email == SERVICE_ACCOUNT


def test_run_all_sends_no_token_without_sae() -> None:
    settings = {**OIDC_ON, "SAE": None, "OIDC": {"SERVICE_ACCOUNTS": [SERVICE_ACCOUNT]}}
    with override_settings(CLOUDTASK=settings), capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        [response] = captured.run_all()
    assert captured[0].oidc_token is None
    assert response.status_code == 403
