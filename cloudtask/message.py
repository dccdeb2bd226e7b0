"""Building the signed message of a call: envelope, signature and target, for any backend."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from . import conf, envelope, signing
from .backends.base import BaseBackend, TaskMessage, signed_path
from .exceptions import PayloadTooLarge
from .oidc import push_token
from .options import ROUTE_OPTIONS
from .registry import registry

if TYPE_CHECKING:
    from .http_tasks import HttpCall
    from .task import TaskCall


#: The signed body field with the Unix time after which a delivery is acknowledged unrun.
EXPIRES_FIELD = "expires"
#: The signed body field naming the periodic task of a Cloud Scheduler job's body; each run
#: gets its own call id from the scheduled time (``cloudtask.schedules``).
SCHEDULE_FIELD = "schedule"
#: The signed body field naming the workflow and step a call is ([workflow id, step key]):
#: a step's body can only ever complete that step (``cloudtask.workflows``).
WORKFLOW_FIELD = "workflow"


def new_call_id() -> str:
    """Return a fresh id for one call (it stays the same across retries)."""
    return uuid.uuid4().hex


def build_message(
    call: TaskCall[Any],
    backend: BaseBackend,
    *,
    eta: datetime | None,
    task_id: str | None,
    call_id: str | None = None,
    retries: int = 0,
    trace_headers: Mapping[str, str] | None = None,
    expires: datetime | None = None,
    schedule: str | None = None,
    workflow: list[str] | None = None,
) -> TaskMessage:
    """Encode, sign and route one call; ``call_id``/``retries`` are given for retry copies.

    ``trace_headers`` (``traceparent``, ``tracestate``) go with the task's own headers, which
    win over them. ``expires`` is signed into the body (see :data:`EXPIRES_FIELD`).
    ``schedule`` makes the body of a Cloud Scheduler job (see :data:`SCHEDULE_FIELD`): sent
    again at every run, it carries no signature expiry.
    """
    task = call.task
    url = call.url or conf.get("URL")
    if task.relative_uri is not None:
        # App Engine routes by service and version, not by host: only the path is sent.
        url = urljoin(url or backend.app_engine_base(), task.relative_uri)
    else:
        url = url or backend.default_url()
    call_id = call_id or new_call_id()
    body = _body(call, call_id, retries, eta, expires, schedule, workflow)
    limit = conf.max_body_size()
    if len(body) > limit:
        raise PayloadTooLarge(len(body), limit)
    headers = {
        **(trace_headers or {}),
        **call.headers,
        "Content-Type": "application/json",
        signing.SIGNATURE_HEADER: signing.sign(signed_path(url), body),
    }
    timeout = task.timeout
    if timeout is None and conf.get("TIMEOUT") is not None:
        timeout = conf.check_timeout(conf.get("TIMEOUT"), "CLOUDTASK['TIMEOUT']")
    return TaskMessage(
        task_name=task.name,
        call_id=call_id,
        queue=task.queue or conf.get("QUEUE"),
        task_id=task_id,
        eta=eta,
        url=url,
        headers=headers,
        body=body,
        timeout=timeout,
        method=task.method,
        oidc_token=push_token(
            task.auth, url, call.audience, app_engine=task.app_engine is not None
        ),
        oauth_token=_oauth_token(task.auth, task.oauth_scope),
        app_engine=None if task.app_engine is None else dict(task.app_engine),
    )


def build_http_message(
    call: HttpCall,
    backend: BaseBackend,
    *,
    eta: datetime | None,
    trace_headers: Mapping[str, str] | None = None,
) -> TaskMessage:
    """Route one HTTP task (``push_http``): its own method, headers and body, unsigned."""
    return TaskMessage(
        task_name="",
        call_id="",
        queue=call.queue,
        task_id=call.task_id(),
        eta=eta,
        url=call.url,
        headers={**(trace_headers or {}), **call.headers},
        body=call.body,
        timeout=call.timeout,
        method=call.method,
        oidc_token=push_token(call.auth, call.url, call.audience),
        oauth_token=_oauth_token(call.auth, call.oauth_scope),
    )


def _oauth_token(auth: str | None, scope: str | None) -> dict[str, str] | None:
    if auth != "oauth":
        return None
    # An empty account: only Cloud Tasks mints OAuth tokens, and its backend refuses it.
    return {
        "service_account_email": conf.get("SAE") or "",
        "scope": scope or conf.CLOUD_PLATFORM_SCOPE,
    }


def _body(
    call: TaskCall[Any],
    call_id: str,
    retries: int,
    eta: datetime | None,
    expires: datetime | None,
    schedule: str | None = None,
    workflow: list[str] | None = None,
) -> bytes:
    extra: dict[str, Any] = {"retries": retries} if retries else {}
    if workflow is not None:
        extra[WORKFLOW_FIELD] = workflow
    signature_expires = None if schedule else signing.expires(eta)
    if signature_expires is not None:
        extra[signing.EXPIRES_FIELD] = signature_expires
    if schedule:
        extra[SCHEDULE_FIELD] = schedule
    if expires is not None:
        extra[EXPIRES_FIELD] = round(expires.timestamp(), 3)
    delivery = route(call)
    if delivery:
        extra["route"] = delivery
    return envelope.encode(call.task.name, call_id, call.arguments_json, extra)


def route(call: TaskCall[Any]) -> dict[str, Any]:
    """Return the delivery options in which ``call`` differs from its registered task.

    The signed body carries them so that a ``request.retry()`` copy goes where this call
    went. Header values can be secrets, so only their names travel: the copy takes the
    values from the delivery it retries.
    """
    task = call.task
    registered = registry.get(task.name) if task.name in registry else task
    if (
        registered is task
        and call.url == task.url
        and call.headers is task.headers
        and call.audience == task.audience
    ):
        return {}  # the usual case: the body stays as it always was
    found: dict[str, Any] = {}
    for option in ROUTE_OPTIONS:
        value = getattr(task, option)
        if value != getattr(registered, option):
            found[option] = _json_option(value)
    if call.url != registered.url:
        found["url"] = call.url
    if call.audience != registered.audience:
        found["audience"] = call.audience
    if dict(call.headers) != dict(registered.headers):
        found["headers"] = sorted(call.headers)
    return found


def _json_option(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return dict(value) if isinstance(value, Mapping) else value
