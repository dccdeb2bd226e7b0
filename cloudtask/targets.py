"""Where and how Cloud Tasks sends a task: HTTP method, token, App Engine routing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import conf

if TYPE_CHECKING:
    from .task import Task

#: Methods that carry a body; the call travels in the body, so only these can deliver it.
BODY_METHODS = ("POST", "PUT", "PATCH")
AUTH_CHOICES = ("oidc", "oauth", None)
APP_ENGINE_KEYS = ("service", "version", "instance")
#: The scope of ``auth="oauth"`` tokens unless the task names another.
DEFAULT_OAUTH_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def oidc_token(task: Task[Any, Any], url: str) -> dict[str, str] | None:
    """Return the OIDC token Cloud Tasks adds to a push of ``task`` to ``url``, or None.

    Cloud Tasks mints one only for HTTP targets with ``auth="oidc"`` and only when
    ``CLOUDTASK["SAE"]`` names the service account; its audience is ``OIDC["AUDIENCE"]``
    when set, else the task's URL. The local backend and ``capture_tasks()`` follow the same
    rule, so a task that would be refused in production is refused in development too.
    """
    sae = conf.get("SAE")
    if task.app_engine is not None or task.auth != "oidc" or not sae:
        return None
    audience = conf.oidc_options().get("AUDIENCE") or url
    return {"service_account_email": sae, "audience": audience}


def check_target(task: Task[Any, Any]) -> None:
    """Validate the method, auth and App Engine options of ``task`` (raising at decoration)."""
    what = f"@task(...) of {task.name}"
    if task.method not in BODY_METHODS:
        raise ValueError(
            f"{what}: method={task.method!r} is not one of {', '.join(BODY_METHODS)}. The "
            "call's arguments travel in the request body, which Cloud Tasks sends only with "
            "these methods."
        )
    if task.method != "POST" and task.url is None:
        raise ValueError(
            f"{what}: method={task.method!r} needs url=... pointing at a receiver that "
            "accepts it: cloudtask's own endpoint accepts POST only."
        )
    if task.auth not in AUTH_CHOICES:
        raise ValueError(f"{what}: auth={task.auth!r} must be 'oidc', 'oauth' or None.")
    if task.oauth_scope is not None and task.auth != "oauth":
        raise ValueError(f"{what}: oauth_scope= only applies with auth='oauth'.")
    if task.oauth_scope is not None and not _is_url(task.oauth_scope):
        raise ValueError(f"{what}: oauth_scope must be a scope URL, not {task.oauth_scope!r}.")
    _check_app_engine(task, what)


def _check_app_engine(task: Task[Any, Any], what: str) -> None:
    if task.app_engine is None:
        if task.relative_uri is not None:
            raise ValueError(
                f"{what}: relative_uri= applies to App Engine targets (app_engine=...); "
                "HTTP targets take url=."
            )
        return
    routing = task.app_engine
    if not isinstance(routing, Mapping) or not routing:
        raise TypeError(
            f"{what}: app_engine must be a dict such as {{'service': 'worker'}}, not {routing!r}."
        )
    for key, value in routing.items():
        if key not in APP_ENGINE_KEYS:
            raise ValueError(
                f"{what}: app_engine has an unknown key {key!r}; use {', '.join(APP_ENGINE_KEYS)}."
            )
        if not isinstance(value, str) or not value:
            raise TypeError(f"{what}: app_engine[{key!r}] must be a non-empty string.")
    if task.auth == "oauth":
        raise ValueError(f"{what}: App Engine targets take no OAuth token; drop auth='oauth'.")
    if task.url is not None:
        raise ValueError(f"{what}: App Engine targets take relative_uri=, not url=.")
    uri = task.relative_uri
    if uri is not None and not (isinstance(uri, str) and uri.startswith("/")):
        raise ValueError(f"{what}: relative_uri must start with '/', not {uri!r}.")


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("https://")
