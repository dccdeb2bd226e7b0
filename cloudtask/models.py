"""The database state of cloudtask: the local queue, results, schedules and workflows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import models
from django.utils import timezone


class LocalQueue(models.Model):
    """A queue of the local backend: its state and, once managed, its configuration."""

    name = models.CharField(max_length=100, unique=True)
    paused = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    config = models.JSONField(
        null=True,
        blank=True,
        help_text="Rate limits and retry policy set by create_queue, update_queue or sync; "
        "empty: CLOUDTASK['QUEUES'] (or Cloud Tasks' defaults) applies.",
    )
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When delete_queue deleted it; empty: it exists."
    )
    # Shared by every worker, so the queue's limits hold across worker processes.
    tokens = models.FloatField(
        null=True, editable=False, help_text="The rate limit's token bucket; empty: full."
    )
    tokens_at = models.FloatField(
        null=True, editable=False, help_text="When the bucket was last filled (Unix time)."
    )
    held_until = models.DateTimeField(
        null=True, editable=False, help_text="A 429/503 Retry-After holds the queue until then."
    )

    class Meta:
        ordering = ("name",)
        verbose_name = "local queue"

    def __str__(self) -> str:
        return self.name


class LocalTask(models.Model):
    """One pushed task: the exact HTTP request to make, and how its attempts went."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        DELETED = "deleted", "deleted"

    queue = models.CharField(max_length=100)
    name = models.CharField(max_length=500)
    task = models.CharField(max_length=255, blank=True, help_text="Registry name of the task.")
    method = models.CharField(max_length=10, default="POST")
    url = models.TextField()
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    dispatch_deadline = models.DurationField(default=timedelta(minutes=10))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    schedule_time = models.DateTimeField(help_text="When the next attempt is due.")
    dispatch_count = models.PositiveIntegerField(default=0)
    response_count = models.PositiveIntegerField(default=0)
    execution_count = models.PositiveIntegerField(
        default=0, help_text="Responses other than 5xx, as Cloud Tasks counts executions."
    )
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_scheduled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last attempt was due (its schedule time)."
    )
    last_response_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last attempt's answer (or timeout) came."
    )
    last_response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True, help_text="The start of the last response.")
    retry_reason = models.CharField(max_length=200, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, default="")
    lease_expires = models.DateTimeField(null=True, blank=True)
    lease_worker = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="The worker holding the lease (LocalWorker.name); its heartbeat keeps it.",
    )
    forced = models.BooleanField(
        default=False,
        help_text="Set by run_task: the next attempt goes out even if the queue is paused.",
    )
    oidc_token = models.JSONField(
        null=True,
        blank=True,
        help_text="The OIDC token Cloud Tasks would add (service_account_email, audience); "
        "empty: none, as for auth=None, auth='oauth' and App Engine targets.",
    )

    class Meta:
        ordering = ("schedule_time", "id")
        verbose_name = "local task"
        constraints = (
            # Two pushes of one name race here; the database decides which one wins.
            models.UniqueConstraint(fields=("queue", "name"), name="cloudtask_unique_task_name"),
        )
        indexes = (
            models.Index(fields=("status", "schedule_time"), name="cloudtask_due"),
            models.Index(fields=("lease_token",), name="cloudtask_lease"),
        )

    def __str__(self) -> str:
        return f"{self.queue}/{self.name}"

    @property
    def retry_count(self) -> int:
        """Retries so far: every dispatch after the first, whatever its answer."""
        return max(self.dispatch_count - 1, 0)

    def describe(self) -> dict[str, Any]:
        """Return the task's state as plain values (for logs and the demo table)."""
        return {
            "queue": self.queue,
            "name": self.name,
            "task": self.task,
            "status": self.status,
            "attempts": self.dispatch_count,
            "last_response_status": self.last_response_status,
            "schedule_time": self.schedule_time,
            "first_attempt_at": self.first_attempt_at,
            "last_attempt_at": self.last_attempt_at,
            "finished_at": self.finished_at,
        }


class LocalWorker(models.Model):
    """A running ``cloudtask_worker``: its heartbeat tells the others it is alive.

    A worker that stops beating (killed, or its machine gone) is found by the others, which
    take its running tasks back as Cloud Tasks retries a dispatch that crashed.
    """

    name = models.CharField(max_length=32, unique=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(help_text="The worker's last heartbeat.")

    class Meta:
        ordering = ("started_at",)
        verbose_name = "local worker"

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} ({self.name})"


class Schedule(models.Model):
    """A periodic task as the local worker fires it, and what the admin shows of it.

    The declaration (``@periodic``, ``CLOUDTASK["SCHEDULES"]``) is the source of truth; a row
    mirrors it (cron, time zone, task) and adds what changes at run time: the next due
    time, the last run and whether it was paused by hand.
    """

    name = models.CharField(max_length=40, primary_key=True)
    task = models.CharField(max_length=255, help_text="Registry name of the task.")
    cron = models.CharField(max_length=255)
    time_zone = models.CharField(max_length=64, default="UTC")
    kwargs = models.JSONField(default=dict, blank=True)
    paused = models.BooleanField(
        default=False, help_text="Not fired while paused (by hand, or declared paused)."
    )
    next_run = models.DateTimeField(
        null=True, blank=True, help_text="When the local worker fires it next."
    )
    last_run = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The due time last fired (or when it was last run by hand).",
    )
    last_call_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ("name",)
        verbose_name = "schedule"

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.time_zone})"


class TaskResult(models.Model):
    """One row per call, kept when ``CLOUDTASK["RESULTS"]`` is True."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        STARTED = "started", "started"
        RETRYING = "retrying", "retrying"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        #: Delivered after its ``expires``: acknowledged without running.
        EXPIRED = "expired", "expired"

    call_id = models.CharField(max_length=64, unique=True)
    task = models.CharField(max_length=255, help_text="Registry name of the task.")
    queue = models.CharField(max_length=100, blank=True)
    task_name = models.CharField(max_length=500, blank=True, help_text="Cloud Tasks task id.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    failure_reason = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    pushed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What a django.tasks result holds besides: empty for @cloudtask.task calls.
    backend = models.CharField(
        max_length=100, blank=True, help_text="The django.tasks backend alias (TASKS key)."
    )
    options = models.JSONField(
        null=True, blank=True, help_text="The Django task's queue_name, priority and run_after."
    )
    errors = models.JSONField(default=list, blank=True, help_text="Every failed attempt's error.")
    worker_ids = models.JSONField(default=list, blank=True, help_text="Who ran each attempt.")
    last_attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = "task result"
        indexes = (models.Index(fields=("created_at",), name="cloudtask_result_created"),)

    def __str__(self) -> str:
        return f"{self.task} {self.call_id} {self.status}"

    @property
    def done(self) -> bool:
        """True once the call succeeded, failed for good or expired."""
        return self.status in {"succeeded", "failed", "expired"}


class Workflow(models.Model):
    """A chain, group or chord of task calls (``cloudtask.workflows``), or a revocable call.

    Every change to a workflow and its steps happens in a transaction that first writes this
    row, so the changes of one workflow are serialized: a step's completion is decided by
    reading its siblings' state under that lock.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        REVOKED = "revoked", "revoked"

    id = models.CharField(max_length=32, primary_key=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    description = models.CharField(
        max_length=255, blank=True, help_text="Its shape, as written: chain(add, group(...))."
    )
    result = models.JSONField(null=True, blank=True, help_text="The last step's result.")
    error = models.TextField(blank=True, help_text="Why it failed or was revoked.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = (
            models.Index(fields=("created_at",), name="cloudtask_workflow_created"),
            models.Index(fields=("status", "finished_at"), name="cloudtask_workflow_status"),
        )

    def __str__(self) -> str:
        return self.id


class WorkflowStep(models.Model):
    """One node of a workflow: a task call, a chain or a group, or an error callback.

    ``key`` is the node's place in the tree ("0", "0.2", "0.2.1"; an error callback's ends
    in "e0"); ``parent`` is the chain or group it belongs to.
    """

    class Kind(models.TextChoices):
        TASK = "task", "task"
        CHAIN = "chain", "chain"
        GROUP = "group", "group"
        ERRBACK = "errback", "error callback"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"
        REVOKED = "revoked", "revoked"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=255)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TASK)
    task = models.CharField(max_length=255, blank=True, help_text="Registry name of the task.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    immutable = models.BooleanField(
        default=False, help_text="Made with .si(): receives no result from its parent."
    )
    countdown = models.FloatField(
        null=True, blank=True, help_text="Seconds to wait once ready (.set(countdown=...))."
    )
    eta = models.DateTimeField(null=True, blank=True, help_text="Not before (.set(eta=...)).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    has_input = models.BooleanField(
        default=False, help_text="It was given its parent's result (stored in input)."
    )
    input = models.JSONField(null=True, blank=True, help_text="The parent's result it gets.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    call_id = models.CharField(max_length=32, db_index=True)
    queue = models.CharField(max_length=100, blank=True)
    task_id = models.CharField(
        max_length=500,
        blank=True,
        help_text="Its Cloud Tasks id, from the workflow, the step and the generation.",
    )
    generation = models.PositiveIntegerField(
        default=0, help_text="Bumped by resume, so a re-push gets a new Cloud Tasks id."
    )
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("id",)
        verbose_name = "workflow step"
        constraints = (
            models.UniqueConstraint(fields=("workflow", "key"), name="cloudtask_step_key"),
        )

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.key} {self.task or self.kind}"
