"""OIDC in development: the worker's development-key token, and where it is (not) accepted."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client, override_settings

from cloudtask import conf, oidc
from cloudtask.backends.local.worker import Worker
from cloudtask.models import LocalTask
from tests import tasks
from tests.support.worker import T0, FakeClock, drain

pytestmark = pytest.mark.django_db(transaction=True)

SAE = "invoker@example-project.iam.gserviceaccount.com"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


def google_like_certificate() -> str:
    """Return a self-signed certificate PEM, as Google's v1 certs endpoint publishes them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.example")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def google_certs() -> Iterator[str]:
    """Google's certificate endpoint, stood in for on 127.0.0.1, with one unrelated key."""
    document = json.dumps({"google-key-1": google_like_certificate()}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=60")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs"
    server.shutdown()
    server.server_close()


@pytest.fixture
def oidc_endpoint(static_url: None, live_server: Any, google_certs: str) -> Iterator[str]:
    url = live_server.url + "/_tasks/"
    settings = {
        "BACKEND": conf.LOCAL_BACKEND,
        "URL": url,
        "SAE": SAE,
        "OIDC": {"CERTS_URL": google_certs},
    }
    with override_settings(CLOUDTASK=settings):
        yield url


def test_worker_sends_a_development_token_the_endpoint_accepts(oidc_endpoint: str) -> None:
    handle = tasks.record_request().delay()
    drain(Worker())
    assert LocalTask.objects.get(name=handle.name).status == "succeeded"
    [(_, request)] = tasks.calls
    header = request.http_request.META["HTTP_AUTHORIZATION"]
    assert header.startswith("Bearer ")
    token = claims(header.removeprefix("Bearer "))
    assert token["aud"] == oidc_endpoint
    assert token["email"] == SAE
    assert token["email_verified"] is True
    assert token["iss"] == "https://accounts.google.com"
    assert token["exp"] - token["iat"] == 3600


def test_without_the_token_the_endpoint_refuses(oidc_endpoint: str) -> None:
    tasks.record_request().delay()
    stored = LocalTask.objects.get()
    response = Client(enforce_csrf_checks=True).post(
        "/_tasks/",
        bytes(stored.body),
        content_type="application/json",
        headers={k: v for k, v in stored.headers.items() if k != "Content-Type"},
    )
    assert response.status_code == 403
    assert tasks.calls == []


def test_development_token_refused_with_the_cloud_tasks_backend(
    oidc_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    tasks.record_request().delay()
    stored = LocalTask.objects.get()
    token = oidc.development_token(oidc_endpoint, SAE)
    headers = {k: v for k, v in stored.headers.items() if k != "Content-Type"}
    headers["Authorization"] = f"Bearer {token}"
    client = Client(enforce_csrf_checks=True)

    def post() -> int:
        response = client.post(
            "/_tasks/", bytes(stored.body), content_type="application/json", headers=headers
        )
        return response.status_code

    assert post() == 200  # trusted while the local backend is configured
    production = {
        **conf.user_settings(),
        "BACKEND": conf.CLOUD_TASKS_BACKEND,
        "PROJECT": "example-project",
        "LOCATION": "europe-west6",
    }
    with override_settings(CLOUDTASK=production):
        assert post() == 403
    assert "no certificate has kid 'cloudtask-development-" in caplog.text
    assert len(tasks.calls) == 1


# Tokens only where Cloud Tasks would add one, for the same service account and audience.

OTHER = "other@example-project.iam.gserviceaccount.com"


def deliver_at_t0() -> None:
    LocalTask.objects.update(schedule_time=T0)
    drain(Worker(clock=FakeClock()))  # one attempt: the retry's time never comes


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


def test_without_sae_no_token_is_sent(
    static_url: None,
    live_server: Any,
    google_certs: str,
) -> None:
    url = live_server.url + "/_tasks/"
    oidc_settings = {"CERTS_URL": google_certs, "SERVICE_ACCOUNTS": [SAE]}
    settings = {"BACKEND": conf.LOCAL_BACKEND, "URL": url, "OIDC": oidc_settings}
    with override_settings(CLOUDTASK=settings):
        handle = tasks.record_request().delay()
        deliver_at_t0()
    stored = LocalTask.objects.get(name=handle.name)
    assert stored.oidc_token is None
    assert stored.last_response_status == 403
    assert json.loads(stored.last_response)["detail"] == "invalid or missing OIDC token"


def test_token_is_for_sae_even_when_another_account_is_allowed_first(oidc_endpoint: str) -> None:
    settings = {**conf.user_settings()}
    settings["OIDC"] = {**settings["OIDC"], "SERVICE_ACCOUNTS": [OTHER, SAE]}
    with override_settings(CLOUDTASK=settings):
        tasks.record_request().delay()
        deliver_at_t0()
    [(_, request)] = tasks.calls
    token = claims(request.http_request.META["HTTP_AUTHORIZATION"].removeprefix("Bearer "))
    assert (token["email"], request.oidc_email) == (SAE, SAE)


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
    assert stored.oidc_token == {"service_account_email": SAE, "audience": expected}
    # Without OIDC["AUDIENCE"], Cloud Tasks' token is for the task's URL, which is not the
    # audience the endpoint checks: refused there, and so here.
    assert stored.last_response_status == status
