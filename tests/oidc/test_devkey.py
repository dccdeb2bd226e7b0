"""The development key file and development tokens: where they come from, who trusts them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings

from cloudtask import ConfigurationError, conf, oidc
from cloudtask.oidc import devkey, verify
from tests import tasks
from tests.support import REPO_ROOT
from tests.support.oidc import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    CertsServer,
    make_key,
    oidc_settings,
    post,
)

pytestmark = pytest.mark.usefixtures("development_key_dir")


@pytest.mark.parametrize("backend", [conf.CLOUD_TASKS_BACKEND, conf.IMMEDIATE_BACKEND])
def test_other_backends_never_trust_the_development_key(
    certs_server: CertsServer, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    extra = {"PROJECT": "my-project", "LOCATION": "europe-west6"}
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server, **extra)):
        token = oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)
        kid = devkey.key_id()
        assert post(token).status_code == 200  # a good token, where it is trusted
    tasks.calls.clear()
    with override_settings(CLOUDTASK=oidc_settings(backend, certs_server, **extra)):
        response = post(token)
    assert response.status_code == 403
    assert tasks.calls == []
    assert f"reason=no certificate has kid '{kid}'" in caplog.text


def test_development_token_claims(certs_server: CertsServer) -> None:
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        token = oidc.development_token("http://127.0.0.1:8000/_tasks/", "")
        header, payload, _ = token.split(".")
        claims = verify._json_segment(payload, "payload")
        assert verify._json_segment(header, "header")["kid"] == devkey.key_id()
    assert claims["aud"] == "http://127.0.0.1:8000/_tasks/"
    assert claims["email"] == SERVICE_ACCOUNT  # empty email: the first allowed account
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 3600


def test_default_audience_with_the_local_backend_is_runservers_url(
    certs_server: CertsServer,
) -> None:
    settings = oidc_settings(conf.LOCAL_BACKEND, certs_server)
    del settings["URL"]
    with override_settings(CLOUDTASK=settings):
        assert oidc.settings().audience == "http://127.0.0.1:8000/_tasks/"
        assert post(oidc.development_token("http://127.0.0.1:8000/_tasks/", "")).status_code == 200


def test_key_file_is_private_and_named_after_the_signing_key(
    certs_server: CertsServer, development_key_dir: Path
) -> None:
    with override_settings(
        CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server, SECRET="a" * 40)
    ):
        oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)
        first = devkey.key_path()
        first_kid = devkey.key_id()
    with override_settings(
        CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server, SECRET="b" * 40)
    ):
        oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)
        second = devkey.key_path()
        assert devkey.key_id() != first_kid
    assert first != second
    assert sorted(p.name for p in development_key_dir.iterdir()) == sorted(
        [first.name, second.name]
    )
    for path in (first, second):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.getuid()
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_key_is_reused_not_regenerated(certs_server: CertsServer) -> None:
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)
        content = devkey.key_path().read_bytes()
        devkey.development_key.cache_clear()
        token = oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)
        assert devkey.key_path().read_bytes() == content
        assert post(token).status_code == 200


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused(certs_server: CertsServer, mode: int) -> None:
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        path = devkey.key_path()
        path.write_bytes(make_key("planted").private_pem.encode())
        path.chmod(mode)
        with pytest.raises(ConfigurationError, match="not owned by this user with mode 0600"):
            oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file to another user")
def test_a_key_file_owned_by_another_user_is_refused(certs_server: CertsServer) -> None:
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        path = devkey.key_path()
        path.write_bytes(make_key("planted").private_pem.encode())
        path.chmod(0o600)
        os.chown(path, 65534, 65534)
        with pytest.raises(ConfigurationError, match="not owned by this user with mode 0600"):
            oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)


def test_a_corrupt_key_file_is_refused(certs_server: CertsServer) -> None:
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        path = devkey.key_path()
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        path.chmod(0o600)
        with pytest.raises(ConfigurationError, match=r"not a PEM RSA private key\. Delete it"):
            oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)


def test_an_unusable_temporary_directory_is_a_clear_error(
    certs_server: CertsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with (
        override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)),
        pytest.raises(ConfigurationError, match="set TMPDIR to a directory this user can"),
    ):
        oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)


def test_a_symlinked_key_file_is_refused(certs_server: CertsServer, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.pem"
    target.write_bytes(make_key("planted").private_pem.encode())
    target.chmod(0o600)
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        devkey.key_path().symlink_to(target)
        with pytest.raises(ConfigurationError, match="Refusing the OIDC development key"):
            oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)


def test_a_refused_key_file_answers_503_on_the_endpoint(certs_server: CertsServer) -> None:
    settings = oidc_settings(conf.LOCAL_BACKEND, certs_server)
    with override_settings(CLOUDTASK=settings):
        token = oidc.development_token(AUDIENCE, SERVICE_ACCOUNT)
        devkey.key_path().chmod(0o644)
        devkey.development_key.cache_clear()
        response = post(token)
    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "misconfigured"}


CHILD = """
import sys, tempfile
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="tests-secret-key-that-is-long-enough-for-hmac-derivation",
    INSTALLED_APPS=["cloudtask"],
    ROOT_URLCONF="tests.urls",
    USE_TZ=True,
    CLOUDTASK={"BACKEND": "cloudtask.backends.local.LocalBackend", "SAE": sys.argv[2]},
)
django.setup()
tempfile.tempdir = sys.argv[1]
from cloudtask.oidc import development_token
print(development_token(sys.argv[3], sys.argv[2]))
"""


@pytest.mark.slow
def test_tokens_from_other_processes_verify_here(certs_server: CertsServer, tmp_path: Path) -> None:
    # Four worker-like processes start at once with no key file: one key must win for all.
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), SERVICE_ACCOUNT, AUDIENCE],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 4, outputs
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with override_settings(CLOUDTASK=oidc_settings(conf.LOCAL_BACKEND, certs_server)):
        statuses = [post(stdout.strip()).status_code for stdout, _ in outputs]
    assert statuses == [200] * 4
