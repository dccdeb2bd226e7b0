"""What every backend shares: the finished message it is handed and what it declares.

The push path (:mod:`cloudtask.push`) builds a :class:`TaskMessage` (envelope, signature,
target) and hands it to :meth:`BaseBackend.push`, which moves it and returns the Cloud Tasks
task id. A backend never builds or changes a message, and never imports the task layer.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit

from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

from .. import conf
from ..exceptions import ConfigurationError, ManagementNotSupported

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

    from ..queues import QueueConfig
    from .management import QueueManager


@dataclass(frozen=True)
class TaskMessage:
    """A call turned into the exact HTTP request Cloud Tasks will make, plus its routing."""

    #: The registry name of the task the body calls ("" for an HTTP task of ``push_http``).
    task_name: str
    #: The id of the call; it stays the same across retries and ``request.retry()`` copies
    #: ("" for an HTTP task).
    call_id: str
    queue: str
    #: The Cloud Tasks task id asked for, or None to let the backend choose one.
    task_id: str | None
    eta: datetime | None
    url: str
    headers: dict[str, str]
    body: bytes
    #: The dispatch deadline, or None for the queue's default.
    timeout: timedelta | None
    method: str = "POST"
    #: The OIDC token Cloud Tasks adds (``service_account_email``, ``audience``), or None.
    oidc_token: dict[str, str] | None = None
    #: The OAuth token of ``auth="oauth"`` (``service_account_email``, ``scope``), or None.
    oauth_token: dict[str, str] | None = None
    #: App Engine routing (``service``, ``version``, ``instance``): an App Engine target.
    app_engine: dict[str, str] | None = None

    @property
    def path(self) -> str:
        """The URL path the signature covers."""
        return signed_path(self.url)

    @property
    def is_http_task(self) -> bool:
        """Whether this is an HTTP task of ``push_http``: no envelope, no signature."""
        return not self.task_name

    @property
    def label(self) -> str:
        """What log lines and errors call the task: its registry name, or method and URL."""
        return self.task_name or http_label(self.method, self.url)


def http_label(method: str, url: str) -> str:
    """Return ``METHOD scheme://host/path``: a URL without its query, which may hold secrets."""
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


def signed_path(url: str) -> str:
    """Return the path of ``url`` as the endpoint sees it in ``request.path``."""
    return unquote(urlsplit(url).path) or "/"


def endpoint_path() -> str:
    """Return the path of the task endpoint in this project's URLconf."""
    return _endpoint_path(get_urlconf(), get_script_prefix())


@lru_cache(maxsize=32)
def _endpoint_path(urlconf: str | None, prefix: str) -> str:
    # reverse() costs more than the rest of a push; the answer only changes with the URLconf.
    try:
        return reverse("cloudtask:endpoint", urlconf=urlconf)
    except NoReverseMatch:
        raise ConfigurationError(
            "The task endpoint is not in your URLconf: add "
            'path("_tasks/", include("cloudtask.urls")) to it, or set CLOUDTASK["URL"].'
        ) from None


conf.on_change(_endpoint_path.cache_clear)


def generated_task_id() -> str:
    """Return an id shaped like the ones Cloud Tasks assigns to unnamed tasks."""
    return str(random.randrange(10**18, 10**19))


class BaseBackend:
    """Moves finished task messages somewhere; subclasses implement :meth:`push`.

    What a backend is, it declares here, and a subclass inherits: code never recognises a
    backend by its dotted path.
    """

    #: For development only: ``check --deploy`` warns when it is configured with DEBUG off.
    development: ClassVar[bool] = False
    #: The endpoint accepts OIDC tokens signed by the development key while this backend is
    #: configured or active as an override: its deliveries carry such tokens.
    trusts_development_tokens: ClassVar[bool] = False
    #: Whether ``push_many`` may call :meth:`push` from several threads at once.
    supports_concurrent_push: ClassVar[bool] = False
    #: Whether periodic tasks run as Cloud Scheduler jobs (else the local worker fires them
    #: from the database; see :mod:`cloudtask.schedules`).
    uses_cloud_scheduler: ClassVar[bool] = False

    def default_url(self) -> str:
        """Return the endpoint URL to use when neither the call nor the settings give one."""
        raise ConfigurationError(
            f"{type(self).__name__} needs the endpoint's absolute URL: set CLOUDTASK['URL'] "
            "(e.g. 'https://app.example.com/_tasks/') or @task(url=...)."
        )

    def app_engine_base(self) -> str:
        """Return what App Engine paths are joined to when no URL is set ("" if none)."""
        try:
            return self.default_url()
        except ConfigurationError:
            return ""

    def push(self, message: TaskMessage) -> str:
        """Move ``message`` to its queue and return the Cloud Tasks task id it got."""
        raise NotImplementedError

    def manager(self) -> QueueManager:
        """Return what manages this backend's queues and tasks (see ``cloudtask.control``)."""
        raise ManagementNotSupported(type(self).__name__)

    #: How long an answer of :meth:`read_queue_config` is kept, in seconds.
    queue_config_ttl: ClassVar[float] = 300.0

    def check(self) -> list[CheckMessage]:
        """Return what is wrong with the settings this backend needs (system checks)."""
        return []

    def queue_config(self, name: str) -> QueueConfig | None:
        """Return the retry policy of queue ``name`` as this backend knows it, or None.

        The endpoint asks, for a queue not declared in ``CLOUDTASK["QUEUES"]``, to tell a
        delivery's last attempt. Answers (None included) are kept ``queue_config_ttl``
        seconds; a settings change makes a new backend instance, so a new cache.
        """
        cache: dict[str, tuple[float, Any]] = self.__dict__.setdefault("_queue_configs", {})
        now = time.monotonic()
        kept = cache.get(name)
        if kept is not None and kept[0] > now:
            return kept[1]  # type: ignore[no-any-return]
        config = self.read_queue_config(name)
        cache[name] = (now + self.queue_config_ttl, config)
        return config

    def read_queue_config(self, name: str) -> QueueConfig | None:
        """Read queue ``name``'s retry policy from where the queue lives (None: unknown)."""
        return None


class InProcessBackend(BaseBackend):
    """A backend that delivers inside this process, so the endpoint's own path is the URL."""

    development = True

    def default_url(self) -> str:
        return "http://testserver" + endpoint_path()
