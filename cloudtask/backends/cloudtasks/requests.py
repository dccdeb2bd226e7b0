"""The exact Cloud Tasks requests a push sends: CreateTaskRequest and, when needed, a Queue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ... import queues
from ...exceptions import ConfigurationError, PayloadTooLarge
from ...queues import QueueConfig
from . import environment

if TYPE_CHECKING:
    from ..base import TaskMessage

#: Cloud Tasks' "maximum task size" (quotas page: 1 MB). It covers the whole task, URL and
#: headers included; the client's docstrings still say 100KB, a limit of App Engine queues.
TASK_SIZE_LIMIT = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Cloud Tasks' HttpMethod numbers.
HTTP_METHODS = {"POST": 1, "GET": 2, "HEAD": 3, "PUT": 4, "DELETE": 5, "PATCH": 6, "OPTIONS": 7}


def location_path() -> str:
    """Return ``projects/<PROJECT>/locations/<LOCATION>``, refusing missing settings.

    ``"auto"`` values are read from the environment on Google Cloud (:mod:`.environment`).
    """
    project, location = environment.project(), environment.location()
    for key, value in (("PROJECT", project), ("LOCATION", location)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"CLOUDTASK['{key}'] is required by the Cloud Tasks backend "
                "(e.g. 'my-project' and 'europe-west6', or 'auto' on Google Cloud)."
            )
    return f"projects/{project}/locations/{location}"


def queue_path(queue: str) -> str:
    """Return the full resource name of ``queue``."""
    return f"{location_path()}/queues/{queue}"


def create_task_request(message: TaskMessage, parent: str) -> Any:
    """Return the CreateTaskRequest for ``message``; refuse a task over the size limit."""
    from google.cloud import tasks_v2

    task: dict[str, Any] = {}
    if message.task_id is not None:
        task["name"] = f"{parent}/tasks/{message.task_id}"
    if message.app_engine is not None:
        task["app_engine_http_request"] = _app_engine_request(message)
    else:
        task["http_request"] = _http_request(message)
    if message.eta is not None:
        task["schedule_time"] = _seconds_and_nanos(message.eta - EPOCH)
    if message.timeout is not None:
        task["dispatch_deadline"] = _seconds_and_nanos(message.timeout)
    # Built as a raw protobuf: several times cheaper than proto-plus from a dict.
    pb = tasks_v2.CreateTaskRequest.pb()(parent=parent, task=task)
    size = pb.task.ByteSize()
    if size > TASK_SIZE_LIMIT:
        raise PayloadTooLarge(size, TASK_SIZE_LIMIT, what="encoded task (body, headers, URL)")
    return tasks_v2.CreateTaskRequest.wrap(pb)


def _http_request(message: TaskMessage) -> dict[str, Any]:
    request: dict[str, Any] = {
        "url": message.url,
        "http_method": HTTP_METHODS[message.method],
        "headers": message.headers,
        "body": message.body,
    }
    if message.oidc_token is not None:
        request["oidc_token"] = message.oidc_token
    elif message.oauth_token is not None:
        if not message.oauth_token["service_account_email"]:
            raise ConfigurationError(
                f"{message.label} uses auth='oauth', which needs CLOUDTASK['SAE']: the "
                "service account Cloud Tasks mints the OAuth token for."
            )
        request["oauth_token"] = message.oauth_token
    return request


def _app_engine_request(message: TaskMessage) -> dict[str, Any]:
    parts = urlsplit(message.url)
    relative_uri = parts.path + (f"?{parts.query}" if parts.query else "")
    return {
        "app_engine_routing": message.app_engine or {},
        "relative_uri": relative_uri or "/",
        "http_method": HTTP_METHODS[message.method],
        "headers": message.headers,
        "body": message.body,
    }


def _seconds_and_nanos(delta: timedelta) -> dict[str, int]:
    # Exact integer arithmetic: a float timestamp can be a microsecond off.
    return {"seconds": delta.days * 86400 + delta.seconds, "nanos": delta.microseconds * 1000}


#: Where each queue option lives in a Cloud Tasks Queue (``update_mask`` paths are these).
QUEUE_FIELDS = {
    "max_dispatches_per_second": "rate_limits.max_dispatches_per_second",
    "max_concurrent_dispatches": "rate_limits.max_concurrent_dispatches",
    "max_attempts": "retry_config.max_attempts",
    "max_retry_duration": "retry_config.max_retry_duration",
    "min_backoff": "retry_config.min_backoff",
    "max_backoff": "retry_config.max_backoff",
    "max_doublings": "retry_config.max_doublings",
}


def queue(name: str) -> Any:
    """Return the Queue to create for ``name``, with its CLOUDTASK["QUEUES"] settings."""
    from google.cloud import tasks_v2

    config = queues.configured().get(name)
    if config is None:
        return tasks_v2.Queue(name=queue_path(name))  # Cloud Tasks' defaults
    return queue_message(config)


def queue_message(config: QueueConfig) -> Any:
    """Return the Cloud Tasks Queue holding every option of ``config``."""
    from google.cloud import tasks_v2

    fields: dict[str, dict[str, Any]] = {"rate_limits": {}, "retry_config": {}}
    for option, path in QUEUE_FIELDS.items():
        group, field = path.split(".")
        fields[group][field] = getattr(config, option)
    return tasks_v2.Queue(name=queue_path(config.name), **fields)
