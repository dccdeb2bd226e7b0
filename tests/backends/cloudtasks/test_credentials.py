"""Credentials: impersonation, and "PROJECT"/"LOCATION": "auto" read from Google Cloud.

Google's endpoints cannot run here, so a fake of them on 127.0.0.1 (tests/support/google.py)
answers as they document; everything else is real: google-auth loading a service account key
file, signing its JWT, exchanging it for a token and asking IAM for the impersonated one, and
reading the metadata server, in a separate process whose environment points google-auth at
the fake (``GCE_METADATA_HOST`` is read when google-auth is imported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from cloudtask import ConfigurationError, conf
from cloudtask.backends.cloudtasks import client
from tests import tasks
from tests.support.google import FakeGoogle
from tests.support.oidc import make_key

ROOT = Path(__file__).resolve().parents[3]
SOURCE = "runner@my-project.iam.gserviceaccount.com"
PUSHER = "pusher@my-project.iam.gserviceaccount.com"


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle()
    yield fake
    fake.close()


# Impersonation -------------------------------------------------------------------------------


@pytest.fixture
def key_file(google: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Application default credentials: a service account key whose token_uri is the fake."""
    key = make_key("runner-key")
    info = {
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": key.kid,
        "private_key": key.private_pem,
        "client_email": SOURCE,
        "client_id": "1",
        "token_uri": f"{google.url}/token",
    }
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setattr(
        client,
        "IAM_ENDPOINT",
        f"{google.url}/v1/projects/-/serviceAccounts/{{}}:generateAccessToken",
    )
    return path


def cloud_tasks(**extra: Any) -> dict[str, Any]:
    return {
        "BACKEND": conf.CLOUD_TASKS_BACKEND,
        "PROJECT": "my-project",
        "LOCATION": "europe-west6",
        "URL": "https://app.example.com/_tasks/",
        **extra,
    }


def test_pushes_are_made_as_the_impersonated_account(google: FakeGoogle, key_file: Path) -> None:
    with override_settings(CLOUDTASK=cloud_tasks(IMPERSONATE=PUSHER)):
        connection = client.connection()
        assert connection.credentials.token == "impersonated-token"
        assert client.account() == PUSHER
        # The client carries these credentials: every call is made as the pusher.
        assert connection.client._transport._credentials is connection.credentials
    (_, _, _, token_body), (_, path, headers, body) = google.requests
    assert b"assertion=" in token_body  # the key file's own JWT, exchanged for a token
    assert path == f"/v1/projects/-/serviceAccounts/{PUSHER}:generateAccessToken"
    assert headers["authorization"] == "Bearer source-token"
    asked = json.loads(body)
    assert asked["scope"] == [conf.CLOUD_PLATFORM_SCOPE]
    assert asked["lifetime"] == "3600s"


def test_refused_impersonation_names_the_missing_permission(
    google: FakeGoogle, key_file: Path
) -> None:
    google.impersonation_allowed = False
    settings = cloud_tasks(IMPERSONATE=PUSHER)
    with override_settings(CLOUDTASK=settings), pytest.raises(ConfigurationError) as refused:
        tasks.add(a=1).delay()
    message = str(refused.value)
    assert f"Cannot act as {PUSHER}" in message
    assert "Permission 'iam.serviceAccounts.getAccessToken' denied" in message
    assert f"({SOURCE}) needs the permission iam.serviceAccounts.getAccessToken" in message
    assert "roles/iam.serviceAccountTokenCreator" in message


def test_without_impersonation_the_default_credentials_push(
    google: FakeGoogle, key_file: Path
) -> None:
    with override_settings(CLOUDTASK=cloud_tasks()):
        assert client.account() == "(unknown)"
        client.connection()
        assert client.account() == SOURCE
    assert google.requests == []  # no token is asked for before the first call


@pytest.mark.parametrize("value", ["pusher", "", 7, "a b@c.com"])
def test_a_bad_impersonate_setting_is_a_check_error(value: Any) -> None:
    from cloudtask.checks import check_settings

    with override_settings(CLOUDTASK=cloud_tasks(IMPERSONATE=value)):
        errors = [m for m in check_settings() if m.id == "cloudtask.E015"]
    assert len(errors) == 1
    assert "must be a service account email" in errors[0].msg


# "auto" project and location ---------------------------------------------------------------

SCRIPT = """
import json, os
import django
django.setup()
from django.test import override_settings
from cloudtask.backends.cloudtasks import requests
settings = {
    "BACKEND": "cloudtask.backends.cloudtasks.CloudTasksBackend",
    "PROJECT": "auto", "LOCATION": "auto", "URL": "https://app.example.com/_tasks/",
}
with override_settings(CLOUDTASK=settings):
    try:
        paths = [requests.location_path(), requests.location_path()]
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        print(json.dumps({"paths": paths}))
"""


def detect(google_host: str, tmp_path: Path, **env: str) -> dict[str, Any]:
    """Run the detection in a new process whose google-auth talks to ``google_host``."""
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no gcloud configuration or credentials
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GCE_METADATA_HOST": google_host,
        "GCE_METADATA_IP": google_host,
        "GCE_METADATA_TIMEOUT": "1",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=clean, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_cloud_run_project_and_region_come_from_the_metadata_server(
    google: FakeGoogle, tmp_path: Path
) -> None:
    google.metadata = {
        "project/project-id": "run-project",
        "instance/region": "projects/123456789/regions/europe-west6",
    }
    result = detect(google.host, tmp_path)
    assert result == {"paths": ["projects/run-project/locations/europe-west6"] * 2}
    # Once per process: the second path asked the server nothing.
    assert google.paths().count("/computeMetadata/v1/instance/region") == 1


def test_compute_engine_region_comes_from_the_zone_and_the_project_from_the_environment(
    google: FakeGoogle, tmp_path: Path
) -> None:
    google.metadata = {"instance/zone": "projects/123456789/zones/us-central1-b"}
    result = detect(google.host, tmp_path, GOOGLE_CLOUD_PROJECT="env-project")
    assert result == {"paths": ["projects/env-project/locations/us-central1"] * 2}


def test_off_google_cloud_auto_is_a_clear_configuration_error(tmp_path: Path) -> None:
    closed = "127.0.0.1:9"  # the discard port: no metadata server
    result = detect(closed, tmp_path, GOOGLE_CLOUD_PROJECT="env-project")
    assert result["error"] == "ConfigurationError"
    assert result["message"].startswith(
        "CLOUDTASK['LOCATION'] is 'auto', but no Google Cloud metadata server answered"
    )
    assert "set it to the queues' region, e.g. 'europe-west6'" in result["message"]
    result = detect(closed, tmp_path)
    assert result["error"] == "ConfigurationError"
    assert result["message"].startswith("CLOUDTASK['PROJECT'] is 'auto', but the application")


def test_auto_passes_the_checks_without_asking_anything(google: FakeGoogle) -> None:
    settings = cloud_tasks(PROJECT="auto", LOCATION="auto")
    with override_settings(CLOUDTASK=settings):
        call_command("check", fail_level="ERROR")
    assert google.requests == []
