"""The one Cloud Scheduler client of this process, made on first use, shared by every thread.

Like the Cloud Tasks client: dropped in a forked child and when settings change;
``CLOUDTASK["SCHEDULER_EMULATOR_HOST"]`` points it at an insecure gRPC channel.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .. import conf
from ..backends.cloudtasks import environment
from ..backends.cloudtasks.client import check_emulator_host, default_credentials

_lock = threading.Lock()
_current: tuple[Any, int] | None = None


def client() -> Any:
    """Return the shared ``CloudSchedulerClient``."""
    global _current
    current = _current
    if current is not None and current[1] == os.getpid():
        return current[0]
    with _lock:
        if _current is None or _current[1] != os.getpid():
            _current = (_connect(), os.getpid())
        return _current[0]


def reset() -> None:
    """Close and forget the client; the next call makes a new one."""
    global _current
    with _lock:
        old, _current = _current, None
    if old is not None and old[1] == os.getpid():
        old[0].transport.close()


conf.on_change(reset)


def _connect() -> Any:
    from google.cloud import scheduler_v1

    host = conf.get("SCHEDULER_EMULATOR_HOST")
    if host:
        import grpc
        from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
            CloudSchedulerGrpcTransport,
        )

        channel = grpc.insecure_channel(check_emulator_host(host, "SCHEDULER_EMULATOR_HOST"))
        return scheduler_v1.CloudSchedulerClient(
            transport=CloudSchedulerGrpcTransport(channel=channel)
        )
    return scheduler_v1.CloudSchedulerClient(credentials=default_credentials())


def location() -> str:
    """Return ``SCHEDULER_LOCATION``, else ``LOCATION`` (``"auto"`` detected)."""
    value = conf.get("SCHEDULER_LOCATION")
    if value == environment.AUTO:
        return environment.detected_location()
    return str(value) if value else environment.location()


def parent() -> str:
    """Return ``projects/P/locations/L``, where the jobs live."""
    return f"projects/{environment.project()}/locations/{location()}"
