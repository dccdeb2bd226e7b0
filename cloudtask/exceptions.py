"""The one exception tree: everything cloudtask raises derives from CloudTaskError."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class CloudTaskError(Exception):
    """Base class of every cloudtask error."""


class ConfigurationError(CloudTaskError, ImproperlyConfigured):
    """A CLOUDTASK setting is missing or invalid."""


class TaskDefinitionError(CloudTaskError, TypeError):
    """@task was applied to something that cannot be a task."""


class DuplicateTaskName(ConfigurationError):
    """Two different functions were registered under the same task name."""


class ResultNotFound(CloudTaskError, LookupError):
    """No result row exists for the call id."""


class Reject(CloudTaskError):
    """Raised by a task to fail permanently: no retry, ``on_failure`` runs.

    ``raise cloudtask.Reject("order 42 no longer exists")``
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(CloudTaskError):
    """Raised by ``request.retry()``: run a copy of this call later and end this attempt."""

    def __init__(self, countdown: timedelta, exc: BaseException | None = None) -> None:
        super().__init__(f"retry in {countdown.total_seconds():g}s")
        self.countdown = countdown
        self.exc = exc


class PushError(CloudTaskError):
    """A call could not be pushed to its queue."""


class TaskAlreadyExists(PushError):
    """A task with this name is already queued (or was, within the de-duplication window)."""

    def __init__(self, name: str, queue: str = "") -> None:
        where = f" in queue {queue!r}" if queue else ""
        super().__init__(
            f"A task named {name!r} already exists{where}; Cloud Tasks refuses a name "
            "while the task is queued and for a while after it ran or was deleted."
        )
        self.name = name
        self.queue = queue


class PayloadTooLarge(PushError, ValueError):
    """The encoded task is bigger than Cloud Tasks accepts."""

    def __init__(self, size: int, limit: int, what: str = "task body") -> None:
        super().__init__(
            f"The {what} is {size} bytes; Cloud Tasks accepts at most {limit}. "
            "Pass a reference (a primary key, a storage path) instead of the data itself."
        )
        self.size = size
        self.limit = limit


class QueueNotFound(PushError, LookupError):
    """The queue does not exist (a push with ``AUTO_CREATE_QUEUES`` off, or a management call)."""

    #: What a push suggests; management calls pass their own ``hint``.
    PUSH_HINT = (
        "Create it (manage.py cloudtask_queues sync, or gcloud tasks queues create {queue} "
        "--location=...) or set CLOUDTASK['AUTO_CREATE_QUEUES'] = True."
    )

    def __init__(self, queue: str, path: str, detail: str = "", hint: str | None = None) -> None:
        hint = (self.PUSH_HINT if hint is None else hint).format(queue=queue)
        super().__init__(
            f"The queue {path} does not exist{f' ({detail})' if detail else ''}. {hint}".rstrip()
        )
        self.queue = queue
        self.path = path


class QueueDeletedRecently(PushError):
    """The queue was deleted lately; Cloud Tasks refuses its name for up to 7 days."""

    def __init__(self, queue: str, path: str, hint: str | None = None) -> None:
        super().__init__(
            f"The queue {path} was deleted recently, and Cloud Tasks does not "
            "allow a queue of that name again for up to 7 days. Use another queue name "
            f"(@task(queue=...) or CLOUDTASK['QUEUE']) or resume using {queue!r} later."
            + (f" {hint}" if hint else "")
        )
        self.queue = queue
        self.path = path


class CloudTasksPermissionDenied(CloudTaskError, PermissionError):
    """Cloud Tasks refused the credentials, or the account lacks a permission."""

    def __init__(
        self,
        account: str,
        permission: str,
        resource: str,
        detail: str,
        action: str = "",
        what: str = "call",
    ) -> None:
        action = action or (
            f"Grant the account a role with {permission!r} on the queue "
            "(roles/cloudtasks.admin for queues, roles/cloudtasks.viewer to read)."
        )
        super().__init__(
            f"Cloud Tasks refused the {what}: account {account} lacks permission "
            f"{permission!r} on {resource} ({detail}). {action}"
        )
        self.account = account
        self.permission = permission
        self.resource = resource


class PushPermissionDenied(CloudTasksPermissionDenied, PushError):
    """The pushing account may not create tasks (or act as the OIDC service account)."""

    def __init__(self, account: str, permission: str, resource: str, detail: str) -> None:
        super().__init__(
            account,
            permission,
            resource,
            detail,
            "Grant the pushing account roles/cloudtasks.enqueuer on the queue, and "
            "roles/iam.serviceAccountUser on CLOUDTASK['SAE'] when tasks carry a token.",
            what="push",
        )


class CloudTasksUnavailable(PushError):
    """Cloud Tasks kept failing with a transient error (until the push deadline, for a push)."""

    def __init__(
        self,
        attempts: int,
        seconds: float,
        last_error: str,
        action: str = "accept the task",
        again: str = "push again later",
    ) -> None:
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        super().__init__(
            f"Cloud Tasks did not {action} after {tries} in {seconds:.1f} s (last error: "
            f"{last_error}). The service or the network is unavailable; {again}."
        )
        self.attempts = attempts
        self.seconds = seconds
        self.last_error = last_error


class PushManyError(PushError):
    """Some calls of ``push_many`` failed; the others were pushed (see ``handles``)."""

    def __init__(self, handles: list[Any], errors: dict[int, Exception]) -> None:
        index, first = next(iter(errors.items()))
        super().__init__(
            f"{len(errors)} of {len(handles)} calls could not be pushed; the other "
            f"{len(handles) - len(errors)} were (see .handles). First failure, call "
            f"#{index}: {type(first).__name__}: {first}"
        )
        #: One entry per call, in input order: its TaskHandle, or None when it failed.
        self.handles = handles
        #: The exception of each failed call, by its index in the input.
        self.errors = errors


class TaskNotFound(CloudTaskError, LookupError):
    """No such task in the queue: it ran, was deleted, or never existed."""

    def __init__(self, queue: str, name: str, path: str = "") -> None:
        super().__init__(
            f"No task {name!r} in queue {queue!r}{f' ({path})' if path else ''}: it has "
            "finished, was deleted, or never existed. Like Cloud Tasks, a queue keeps only "
            "tasks that still wait for an attempt (cloudtask_tasks list "
            f"{queue} shows them)."
        )
        self.queue = queue
        self.name = name
        self.path = path


class QueueAlreadyExists(CloudTaskError):
    """``create_queue`` was asked for a queue that exists."""

    def __init__(self, queue: str, path: str) -> None:
        super().__init__(
            f"The queue {path} exists already. Change it with update_queue({queue!r}, ...) "
            "or manage.py cloudtask_queues sync."
        )
        self.queue = queue
        self.path = path


class InvalidQueueConfig(CloudTaskError, ValueError):
    """A queue setting given to a management call is unknown or out of Cloud Tasks' range."""


class ManagementError(CloudTaskError):
    """The backend refused a management call for a reason no other error here covers."""


class ScheduleNotFound(CloudTaskError, LookupError):
    """No periodic task of that name is declared (or its Cloud Scheduler job is missing)."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(
            detail
            or f"No schedule named {name!r} is declared: @periodic(..., name=...) and the keys "
            "of CLOUDTASK['SCHEDULES'] name them (manage.py cloudtask_schedules list shows "
            "them)."
        )
        self.name = name


class WorkflowNotFound(CloudTaskError, LookupError):
    """No workflow (or revocable call) has this id: it never existed, or was pruned."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"No workflow {workflow_id!r}: check the id (handle.id, or a step's call id for "
            "revoke()), or it was removed by cloudtask_workflows prune / cloudtask_prune."
        )


class WorkflowNotFinished(CloudTaskError):
    """A workflow's result was asked for before it ended."""


class WorkflowFailed(CloudTaskError):
    """The workflow whose result was asked for failed or was revoked (``.status``, ``.error``)."""

    def __init__(self, workflow_id: str, status: str, error: str) -> None:
        self.workflow_id, self.status, self.error = workflow_id, status, error
        super().__init__(f"Workflow {workflow_id} {status}: {error}")


class ManagementNotSupported(CloudTaskError):
    """The configured backend has no queue manager (ImmediateBackend, capture_tasks, ...)."""

    def __init__(self, backend: str, message: str = "") -> None:
        super().__init__(
            message
            or f"{backend} keeps no queues to manage: queue and task management works with "
            "CLOUDTASK['BACKEND'] set to the Cloud Tasks backend "
            "(cloudtask.backends.cloudtasks.CloudTasksBackend) or the local backend "
            "(cloudtask.backends.local.LocalBackend)."
        )
        self.backend = backend


class InvalidRequest(CloudTaskError, SuspiciousOperation):
    """A request to the task endpoint was refused (bad signature, malformed body, ...)."""

    status = 400
    code = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthenticationFailed(InvalidRequest):
    """The request's signature or token is missing or invalid."""

    status = 403
    code = "forbidden"


class MalformedEnvelope(InvalidRequest):
    """The body is not a valid task envelope."""

    status = 400
    code = "bad-envelope"


class ArgumentsDoNotBind(InvalidRequest):
    """The envelope's arguments no longer fit the function's signature."""

    status = 400
    code = "bad-arguments"


class UnknownTask(InvalidRequest):
    """The envelope names a task that is not in the registry."""

    status = 404
    code = "unknown-task"


class PayloadRefused(InvalidRequest):
    """The request body is larger than the endpoint accepts."""

    status = 413
    code = "too-large"


class InvalidToken(AuthenticationFailed):
    """The OIDC token is missing or invalid; ``reason`` says why, for the log only."""

    def __init__(self, reason: str) -> None:
        # The answer stays generic: it must not help anyone forge a better token.
        super().__init__("invalid or missing OIDC token")
        self.reason = reason


class CertificatesUnavailable(InvalidRequest):
    """No Google signing certificate could be had to check the OIDC token (503: retried)."""

    status = 503
    code = "certificates-unavailable"
