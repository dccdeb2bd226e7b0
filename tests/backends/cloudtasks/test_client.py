"""The shared client's life cycle, push_many's contract and pushes on commit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from cloudtask import ConfigurationError, PushManyError, TaskAlreadyExists, push_many
from cloudtask.backends.cloudtasks import client as gcp_client
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support import REPO_ROOT

ROOT = REPO_ROOT
EMULATOR = {
    "BACKEND": "cloudtask.backends.cloudtasks.CloudTasksBackend",
    "PROJECT": "p",
    "LOCATION": "l",
    "URL": "http://127.0.0.1:9/_tasks/",
    "EMULATOR_HOST": "127.0.0.1:9",
}


@pytest.fixture(autouse=True)
def _fresh_client() -> Any:
    gcp_client.reset()
    yield
    gcp_client.reset()


def test_one_client_is_shared_by_every_thread() -> None:
    seen: list[Any] = []
    with override_settings(CLOUDTASK=EMULATOR):
        threads = [
            threading.Thread(target=lambda: seen.append(gcp_client.client())) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert len(seen) == 8
        assert all(client is seen[0] for client in seen)
        assert gcp_client.client() is seen[0]


def test_settings_change_makes_a_new_client() -> None:
    with override_settings(CLOUDTASK=EMULATOR):
        first = gcp_client.client()
    with override_settings(CLOUDTASK={**EMULATOR, "EMULATOR_HOST": "127.0.0.1:10"}):
        second = gcp_client.client()
        assert gcp_client.connection().emulator_host == "127.0.0.1:10"
    assert second is not first
    # The old client's channel was closed, not left holding its sockets and threads.
    with pytest.raises(ValueError, match="closed channel"):
        first.get_queue(name="projects/p/locations/l/queues/q", retry=None, timeout=1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# Earlier tests leave threads (gRPC's) running; the child here only writes to a pipe and
# leaves with os._exit, so none of the locks those threads might hold is ever needed.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_drops_the_parent_s_client() -> None:
    with override_settings(CLOUDTASK=EMULATOR):
        gcp_client.client()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave at once without running cleanups
            os.write(write, b"dropped" if gcp_client._current is None else b"kept")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 16)
        os.waitpid(pid, 0)
        os.close(read)
        assert gcp_client._current is not None
    assert answer == b"dropped"


@pytest.mark.parametrize("host", ["127.0.0.1", "http://127.0.0.1:8123", "localhost:port", 8123])
def test_bad_emulator_host_is_refused(host: Any) -> None:
    with (
        override_settings(CLOUDTASK={**EMULATOR, "EMULATOR_HOST": host}),
        pytest.raises(ConfigurationError, match=r"EMULATOR_HOST'\] must be 'host:port'"),
    ):
        gcp_client.client()


def test_missing_project_is_a_configuration_error() -> None:
    settings = {k: v for k, v in EMULATOR.items() if k != "PROJECT"}
    with (
        override_settings(CLOUDTASK=settings),
        pytest.raises(ConfigurationError, match=r"CLOUDTASK\['PROJECT'\] is required"),
    ):
        tasks.add().delay()


def test_no_credentials_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No key file, no gcloud configuration, and no metadata server lookup.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    settings = {k: v for k, v in EMULATOR.items() if k != "EMULATOR_HOST"}
    with (
        override_settings(CLOUDTASK=settings),
        pytest.raises(ConfigurationError, match="No Google credentials found") as excinfo,
    ):
        tasks.add().delay()
    assert "gcloud auth application-default login" in str(excinfo.value)


@pytest.mark.slow
def test_nothing_google_is_imported_at_startup() -> None:
    code = (
        "import sys, django; from django.conf import settings; "
        "settings.configure(INSTALLED_APPS=['cloudtask'], CLOUDTASK={'PROJECT': 'p'}); "
        "django.setup(); import cloudtask, cloudtask.backends.cloudtasks; "
        "print(sorted(m for m in sys.modules if m.startswith(('google.cloud', 'grpc'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# push_many with backends that push one at a time -------------------------------------------


def test_push_many_with_capture_keeps_order() -> None:
    with capture_tasks() as captured:
        handles = push_many([tasks.add(a=i) for i in range(5)])
    assert [c.kwargs["a"] for c in captured] == list(range(5))
    assert [h.name for h in handles] == [c.name for c in captured]


def test_push_many_of_nothing_is_an_empty_list() -> None:
    assert push_many([]) == []


def test_push_many_reports_bad_entries_per_call() -> None:
    with capture_tasks() as captured, pytest.raises(PushManyError) as excinfo:
        push_many([tasks.named_refresh(), "not a call", tasks.named_refresh()])  # type: ignore[list-item]
    assert isinstance(excinfo.value.errors[1], TypeError)
    assert isinstance(excinfo.value.errors[2], TaskAlreadyExists)
    assert excinfo.value.handles[0] is not None
    assert len(captured) == 1


@pytest.mark.parametrize("workers", [0, 101, True, 2.5])
def test_push_many_workers_is_checked(workers: Any) -> None:
    with pytest.raises(ValueError, match=r"workers=\.\.\.\) must be 1 to 100"):
        push_many([], workers=workers)


# delay_on_commit -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_pushes_after_commit() -> None:
    with capture_tasks() as captured:
        with transaction.atomic():
            assert tasks.add(a=1).delay_on_commit() is None
            assert tasks.add(a=2).push(on_commit=True) is None
            assert captured == []
        assert [c.kwargs["a"] for c in captured] == [1, 2]


def push_then_fail(a: int, name: str | None = None) -> None:
    with transaction.atomic():
        tasks.add(a=a).delay_on_commit(name=name)
        raise RuntimeError("roll back")


@pytest.mark.django_db(transaction=True)
def test_nothing_is_pushed_on_rollback() -> None:
    with capture_tasks() as captured:
        with pytest.raises(RuntimeError):
            push_then_fail(1, name="on-commit-1")
        with transaction.atomic():
            tasks.add(a=2).delay_on_commit()
            with pytest.raises(RuntimeError):
                push_then_fail(3)  # in a savepoint: only that block rolls back
    assert [c.kwargs["a"] for c in captured] == [2]


@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_outside_a_transaction_pushes_at_once() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1).delay_on_commit(unique=False, name="now")
        assert [c.name for c in captured] == ["now"]


@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_checks_the_name_at_once() -> None:
    with capture_tasks() as captured, transaction.atomic():
        with pytest.raises(ValueError, match="not a valid Cloud Tasks id"):
            tasks.add().delay_on_commit(name="bad name")
        assert captured == []


def test_errors_name_the_service_account_of_the_credentials() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = "pusher@test-project.iam.gserviceaccount.com"
    credentials = service_account.Credentials.from_service_account_info(
        {"client_email": email, "private_key": pem, "token_uri": "http://127.0.0.1:9/token"}
    )
    gcp_client._current = gcp_client.Connection(None, credentials, None, os.getpid())
    assert gcp_client.account() == email

    class ComputeEngineLike:
        service_account_email = "default"  # until the first token is fetched

    gcp_client._current = gcp_client.Connection(None, ComputeEngineLike(), None, os.getpid())
    assert gcp_client.account() == "(the application default credentials, ComputeEngineLike)"
    gcp_client._current = None  # no client to close: these connections were made up
