"""End to end: the local worker sends a development-key token; the live endpoint verifies it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from cloudtask import conf
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalTask
from cloudtask.oidc import devkey
from tests import tasks
from tests.support.oidc import SERVICE_ACCOUNT, CertsServer, make_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def static_url() -> None:
    """Give live_server the STATIC_URL its static files handler needs before it starts."""
    from django.conf import settings

    if not getattr(settings, "STATIC_URL", None):
        settings.STATIC_URL = "/static/"


@pytest.fixture
def endpoint(
    static_url: None, live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    devkey.development_key.cache_clear()
    return str(live_server.url) + "/_tasks/"


def deliver_all(worker: Worker) -> None:
    for _ in range(10):  # bounded: one task, a few rounds at most
        started = worker.run_once()
        worker.finish_in_flight(timeout=10)
        if not started and not worker.in_flight:
            break
    worker.run_once()  # record the last answers
    worker.close()


def test_worker_token_is_verified_by_the_endpoint(endpoint: str) -> None:
    with CertsServer([make_key("k1")]) as certs_server:
        settings = {
            "BACKEND": conf.LOCAL_BACKEND,
            "URL": endpoint,
            "SAE": SERVICE_ACCOUNT,
            "OIDC": {"CERTS_URL": certs_server.url},
        }
        with override_settings(CLOUDTASK=settings):
            handle = tasks.record_request().delay()
            deliver_all(Worker(log=lambda line: None))
    task = LocalTask.objects.get(name=handle.name)
    assert (task.status, task.last_response_status) == ("succeeded", 200)
    [(_, request)] = tasks.calls
    assert request.oidc_email == SERVICE_ACCOUNT
    assert certs_server.fetches == 0  # the development key needs no download


def test_without_the_local_backend_the_worker_token_is_refused(
    endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The same worker request, but the endpoint's settings name the Cloud Tasks backend.
    settings = {"BACKEND": conf.LOCAL_BACKEND, "URL": endpoint, "SAE": SERVICE_ACCOUNT}
    with CertsServer([make_key("k1")]) as certs_server:
        settings["OIDC"] = {"CERTS_URL": certs_server.url}
        with override_settings(CLOUDTASK=settings):
            handle = tasks.record_request().delay()
        cloud = {**settings, "BACKEND": conf.CLOUD_TASKS_BACKEND}
        with override_settings(CLOUDTASK=cloud):
            # The worker reads the stored rows itself; the endpoint now trusts no dev key.
            deliver_all(Worker(log=lambda line: None))
    task = LocalTask.objects.get(name=handle.name)
    assert task.last_response_status == 403
    assert tasks.calls == []
    assert "reason=no certificate has kid 'cloudtask-development-" in caplog.text
