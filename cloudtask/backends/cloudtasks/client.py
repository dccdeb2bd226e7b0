"""The one Cloud Tasks client of this process: made on first push, shared by every thread.

A gRPC channel is thread-safe but does not survive ``fork``, so the client is dropped in a
forked child and when settings change, and made again on the next push. Nothing here does
I/O at import.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from ... import conf
from ...exceptions import ConfigurationError

_SERVICE_ACCOUNT_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$|^\[[0-9A-Fa-f:]+\]:[0-9]{1,5}$")


@dataclass(frozen=True)
class Connection:
    """A client and what it was made with."""

    client: Any  # google.cloud.tasks_v2.CloudTasksClient
    credentials: Any  # google.auth credentials, or None for the emulator
    emulator_host: str | None
    pid: int


_lock = threading.Lock()
_current: Connection | None = None


def connection() -> Connection:
    """Return this process's connection, making it on first use."""
    global _current
    current = _current
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = _connect()
        return _current


def client() -> Any:
    """Return the shared ``CloudTasksClient``."""
    return connection().client


def reset() -> None:
    """Close and forget the client; the next push makes a new one."""
    global _current
    with _lock:
        old, _current = _current, None
    if old is not None and old.pid == os.getpid():
        # Its channel holds sockets and threads until closed.
        old.client.transport.close()


def _forget_in_child() -> None:
    global _current
    # The parent's channel is not usable in the child, and not the child's to close.
    _current = None


conf.on_change(reset)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def account() -> str:
    """Describe the account pushes are made as, for error messages."""
    current = _current
    if current is None or current.credentials is None:
        return "(emulator, no credentials)" if current else "(unknown)"
    return _describe(current.credentials)


def _describe(creds: Any) -> str:
    for attribute in ("service_account_email", "signer_email", "account"):
        value = getattr(creds, attribute, None)
        if isinstance(value, str) and value and value != "default":
            return value
    return f"(the application default credentials, {type(creds).__name__})"


def _connect() -> Connection:
    from google.cloud import tasks_v2

    host = conf.get("EMULATOR_HOST")
    if host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (
            CloudTasksGrpcTransport,
        )

        channel = grpc.insecure_channel(check_emulator_host(host))
        transport = CloudTasksGrpcTransport(channel=channel)
        return Connection(tasks_v2.CloudTasksClient(transport=transport), None, host, os.getpid())
    credentials = default_credentials()
    client = tasks_v2.CloudTasksClient(credentials=credentials)
    return Connection(client, credentials, None, os.getpid())


def default_credentials() -> Any:
    """Return the credentials Google API calls are made with (``IMPERSONATE`` honoured)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default(scopes=[conf.CLOUD_PLATFORM_SCOPE])
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            "No Google credentials found to call Cloud Tasks or Cloud Scheduler. On Cloud Run "
            "they come from the service's account; locally run `gcloud auth "
            "application-default login`, or set CLOUDTASK['EMULATOR_HOST'] (Cloud Tasks) or "
            "CLOUDTASK['SCHEDULER_EMULATOR_HOST'] (Cloud Scheduler) to use a stand-in."
        ) from exc
    target = conf.get("IMPERSONATE")
    if target is None:
        return credentials
    return impersonated(credentials, check_service_account(target, "CLOUDTASK['IMPERSONATE']"))


#: Where impersonation asks for tokens, with ``{}`` for the service account; None: Google's
#: IAM Credentials API (``iamcredentials.googleapis.com``).
IAM_ENDPOINT: str | None = None
#: The permission impersonation needs (``roles/iam.serviceAccountTokenCreator`` has it).
IMPERSONATE_PERMISSION = "iam.serviceAccounts.getAccessToken"


def impersonated(source: Any, target: str) -> Any:
    """Return credentials acting as ``target`` on top of ``source``, refreshed once now.

    google-auth refreshes them before they expire. The first token is asked for here, so a
    refused impersonation is one clear error at the first push, not a retried RPC failure.
    """
    from google.auth import impersonated_credentials
    from google.auth.exceptions import GoogleAuthError
    from google.auth.transport.requests import Request

    credentials = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
        source_credentials=source,
        target_principal=target,
        target_scopes=[conf.CLOUD_PLATFORM_SCOPE],
        iam_endpoint_override=IAM_ENDPOINT.format(target) if IAM_ENDPOINT else None,
    )
    try:
        credentials.refresh(Request())  # type: ignore[no-untyped-call]
    except GoogleAuthError as exc:
        raise ConfigurationError(
            f"Cannot act as {target} (CLOUDTASK['IMPERSONATE']): {_reason(exc)}. The account "
            f"this process runs as ({_describe(source)}) needs the permission "
            f"{IMPERSONATE_PERMISSION} on {target}: grant it "
            "roles/iam.serviceAccountTokenCreator on that service account, and enable the "
            "IAM Service Account Credentials API (iamcredentials.googleapis.com)."
        ) from exc
    return credentials


def _reason(exc: Exception) -> str:
    import json

    # google-auth passes the API's JSON answer along; its message says what was refused.
    for arg in exc.args[1:]:
        try:
            message = json.loads(arg)["error"]["message"]
        except (TypeError, ValueError, KeyError):
            continue
        return f"{exc.args[0]}: {message}"
    return str(exc.args[0]) if exc.args else type(exc).__name__


def check_service_account(value: Any, what: str) -> str:
    """Validate a service account email (``name@project.iam.gserviceaccount.com``)."""
    if not isinstance(value, str) or not _SERVICE_ACCOUNT_RE.match(value):
        raise ConfigurationError(
            f"{what} must be a service account email such as "
            f"'pusher@my-project.iam.gserviceaccount.com', not {value!r}."
        )
    return value


def check_emulator_host(value: Any, key: str = "EMULATOR_HOST") -> str:
    """Validate ``EMULATOR_HOST`` (or another ``key``) as "host:port" and return it."""
    if not isinstance(value, str) or not _HOST_RE.match(value):
        raise ConfigurationError(
            f"CLOUDTASK['{key}'] must be 'host:port', e.g. '127.0.0.1:8123', not {value!r}."
        )
    return value
