"""What every backend shares: the message it is handed and how that message is built."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urljoin, urlsplit

from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

from .. import conf, signing
from ..exceptions import ConfigurationError, ManagementNotSupported, PayloadTooLarge
from ..task import TaskHandle, new_call_id

if TYPE_CHECKING:
    from ..task import Task, TaskCall
    from .management import QueueManager


@dataclass(frozen=True)
class TaskMessage:
    """A call turned into the exact HTTP request Cloud Tasks will make, plus its routing."""

    task: Task[Any, Any]
    call_id: str
    queue: str
    name: str | None
    eta: datetime | None
    url: str
    headers: dict[str, str]
    body: bytes
    timeout: timedelta | None
    method: str = "POST"

    @property
    def path(self) -> str:
        """The URL path the signature covers."""
        return signed_path(self.url)

    def handle(self, name: str) -> TaskHandle:
        """Return the handle for this message once the backend has named it."""
        return TaskHandle(
            name=name, queue=self.queue, eta=self.eta, task=self.task.name, call_id=self.call_id
        )


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


class BaseBackend:
    """Moves signed task requests somewhere; subclasses implement :meth:`push`."""

    #: Whether the backend honours ``schedule()`` (rather than running at once).
    supports_schedule: ClassVar[bool] = True
    #: Whether a second push of the same task name is refused.
    supports_named: ClassVar[bool] = True
    #: Whether ``push_many`` may call :meth:`push` from several threads at once.
    supports_concurrent_push: ClassVar[bool] = False

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

    def build_message(
        self,
        call: TaskCall[Any],
        *,
        eta: datetime | None,
        name: str | None,
        call_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> TaskMessage:
        """Encode, sign and route one call (``call_id``/``extra`` are kept across retries)."""
        task = call.task
        url = call.url or conf.get("URL")
        if task.relative_uri is not None:
            # App Engine routes by service and version, not by host: only the path is sent.
            url = urljoin(url or self.app_engine_base(), task.relative_uri)
        else:
            url = url or self.default_url()
        queue = task.queue or conf.get("QUEUE")
        call_id = call_id or new_call_id()
        body = call.envelope_body(call_id, extra)
        limit = conf.get("MAX_BODY_SIZE")
        if len(body) > limit:
            raise PayloadTooLarge(len(body), limit)
        headers = {
            **call.headers,
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(signed_path(url), body),
        }
        timeout = task.timeout
        if timeout is None and conf.get("TIMEOUT") is not None:
            timeout = conf.check_timeout(conf.get("TIMEOUT"), "CLOUDTASK['TIMEOUT']")
        return TaskMessage(
            task=task,
            call_id=call_id,
            queue=queue,
            name=name,
            eta=eta,
            url=url,
            headers=headers,
            body=body,
            timeout=timeout,
            method=task.method,
        )

    def push(self, message: TaskMessage) -> TaskHandle:
        """Deliver ``message`` to its queue and return the handle."""
        raise NotImplementedError

    def manager(self) -> QueueManager:
        """Return what manages this backend's queues and tasks (see ``cloudtask.control``)."""
        raise ManagementNotSupported(type(self).__name__)


class InProcessBackend(BaseBackend):
    """A backend that delivers inside this process, so the endpoint's own path is the URL."""

    def default_url(self) -> str:
        return "http://testserver" + endpoint_path()
