"""HTTP tasks to any URL: a raw Cloud Tasks HTTP request, for calling other services.

```python
from cloudtask import push_http

push_http("https://hooks.example.com/order", json={"id": 7}, queue="webhooks")
```

An HTTP task is not a registered task: it carries no envelope and no cloudtask signature,
because its receiver is not cloudtask. It takes the same path as a task's push (the same
backends, names, schedules, tokens and dispatch deadline), and every argument is checked
when the call is made, before anything is pushed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from . import conf, envelope, options, task_ids
from .backends.base import http_label
from .push import TaskHandle
from .push import push_http as _push

#: Cloud Tasks' HTTP methods (its ``HttpMethod`` enum).
METHODS = ("POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")
#: What Cloud Tasks sends as Content-Type for a raw body when none is given.
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class HttpCall:
    """One HTTP task, checked and ready to push: ``push_http(...)`` is ``HttpCall(...).delay()``.

    Pass a list of them (mixed with task calls) to ``push_many`` to push them concurrently.
    The arguments are those of :func:`push_http`.
    """

    __slots__ = (
        "_at",
        "_countdown",
        "audience",
        "auth",
        "body",
        "headers",
        "method",
        "name",
        "oauth_scope",
        "queue",
        "timeout",
        "unique",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        queue: str | None = None,
        countdown: float | timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
        unique: bool = False,
        timeout: float | timedelta | None = None,
        auth: Literal["oidc", "oauth"] | None = "oidc",
        audience: str | None = None,
        oauth_scope: str | None = None,
    ) -> None:
        self.url = conf.check_url(url, "push_http(url=...)")
        self.method = _method(method)
        self.body, kind = _body(self.method, json, body)
        self.headers = options.check_headers(headers or {}, "push_http(headers=...)")
        if content_type is not None or kind:
            self.headers["Content-Type"] = _content_type(content_type, kind)
        self.queue = conf.check_queue_name(
            queue if queue is not None else conf.get("QUEUE"), "push_http(queue=...)"
        )
        if countdown is not None or at is not None:
            options.schedule_time(at=at, countdown=countdown)  # checked now, computed at push
        self._countdown, self._at = countdown, at
        _check_name(name, unique)
        self.name, self.unique = name, unique
        self.timeout = (
            None if timeout is None else conf.check_timeout(timeout, "push_http(timeout=...)")
        )
        self.auth, self.audience, self.oauth_scope = _auth(auth, audience, oauth_scope)

    def __repr__(self) -> str:
        return f"<HttpCall {self.label}>"

    @property
    def label(self) -> str:
        """The method and URL without its query (which may hold secrets), for logs and spans."""
        return http_label(self.method, self.url)

    def eta(self) -> datetime | None:
        """Return when the task is due (None: now), counting a countdown from now."""
        if self._countdown is None and self._at is None:
            return None
        return options.schedule_time(at=self._at, countdown=self._countdown)

    def task_id(self) -> str | None:
        """Return the Cloud Tasks id to ask for (None: Cloud Tasks chooses one)."""
        if self.name is None or not self.unique:
            return self.name
        return task_ids.with_unique_suffix(self.name)

    def delay(self) -> TaskHandle:
        """Push the HTTP task to its queue and return its handle."""
        return _push(self)


def push_http(
    url: str,
    *,
    json: Any = None,
    body: bytes | None = None,
    content_type: str | None = None,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    queue: str | None = None,
    countdown: float | timedelta | None = None,
    at: datetime | None = None,
    name: str | None = None,
    unique: bool = False,
    timeout: float | timedelta | None = None,
    auth: Literal["oidc", "oauth"] | None = "oidc",
    audience: str | None = None,
    oauth_scope: str | None = None,
) -> TaskHandle:
    """Push a raw HTTP task: Cloud Tasks sends ``method`` to ``url`` with this body.

    - ``json`` (any JSON value, sent as ``application/json``) or ``body`` (bytes, sent with
      ``content_type``, default ``application/octet-stream``); only POST, PUT and PATCH
      carry a body, as in Cloud Tasks.
    - ``headers``: extra headers, under the rules of ``@task(headers=...)``.
    - ``queue`` (default ``CLOUDTASK["QUEUE"]``), ``countdown`` or ``at``, ``name`` and
      ``unique``, ``timeout`` (the dispatch deadline): as for tasks.
    - ``auth``: ``"oidc"`` (an ID token for ``CLOUDTASK["SAE"]``, audience ``audience`` or
      the URL), ``"oauth"`` (an access token for ``oauth_scope``, to call Google APIs) or
      None. As for tasks, Cloud Tasks adds a token only when ``CLOUDTASK["SAE"]`` is set.
    """
    return HttpCall(
        url,
        json=json,
        body=body,
        content_type=content_type,
        method=method,
        headers=headers,
        queue=queue,
        countdown=countdown,
        at=at,
        name=name,
        unique=unique,
        timeout=timeout,
        auth=auth,
        audience=audience,
        oauth_scope=oauth_scope,
    ).delay()


def _method(method: Any) -> str:
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError(
            f"push_http(method=...) must be one of {', '.join(METHODS)}, not {method!r}."
        )
    return method.upper()


def _body(method: str, json: Any, body: Any) -> tuple[bytes, str]:
    """Return the body bytes and what they are ("json", "raw", or "" for none)."""
    if json is not None and body is not None:
        raise TypeError("push_http() takes json= or body=, not both.")
    if body is not None and not isinstance(body, bytes):
        raise TypeError(
            f"push_http(body=...) must be bytes, not {type(body).__name__}; encode text "
            "first, e.g. body=text.encode(), or pass json=."
        )
    if (json is not None or body is not None) and method not in options.BODY_METHODS:
        raise ValueError(
            f"push_http(method={method!r}) cannot carry a body: Cloud Tasks sends one only "
            f"with {', '.join(options.BODY_METHODS)}. Drop json=/body=, or use POST."
        )
    if json is not None:
        try:
            return envelope.dumps(json).encode(), "json"
        except (TypeError, ValueError) as exc:
            raise TypeError(f"push_http(json=...) is not JSON-serialisable: {exc}.") from None
    return (body, "raw") if body is not None else (b"", "")


def _content_type(content_type: Any, kind: str) -> str:
    if content_type is None:
        return "application/json" if kind == "json" else DEFAULT_CONTENT_TYPE
    if not kind:
        raise ValueError("push_http(content_type=...) applies to a body; pass body= or json=.")
    if not isinstance(content_type, str) or not content_type.strip() or "\n" in content_type:
        raise TypeError(
            f"push_http(content_type=...) must be a one-line string such as 'text/plain', "
            f"not {content_type!r}."
        )
    return content_type


def _check_name(name: Any, unique: Any) -> None:
    if not isinstance(unique, bool):
        raise TypeError(f"push_http(unique=...) must be True or False, not {unique!r}.")
    if name is not None:
        task_ids.check_task_id(name, unique=unique)
    elif unique:
        raise TypeError(
            "push_http(unique=True) needs name=: an unnamed task already gets a unique id "
            "from Cloud Tasks."
        )


def _auth(auth: Any, audience: Any, scope: Any) -> tuple[Any, str | None, str | None]:
    if auth not in options.AUTH_CHOICES:
        raise ValueError(f"push_http(auth=...) must be 'oidc', 'oauth' or None, not {auth!r}.")
    audience = options.check_audience(audience, "push_http(audience=...)")
    if audience is not None and auth != "oidc":
        raise ValueError("push_http(audience=...) only applies with auth='oidc'.")
    if scope is not None and not (auth == "oauth" and str(scope).startswith("https://")):
        raise ValueError(
            f"push_http(oauth_scope=...) applies with auth='oauth' and is a scope URL, "
            f"not {scope!r}."
        )
    return auth, audience, scope
