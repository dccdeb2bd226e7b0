"""Admin for the local queue (run, retry, delete tasks; pause and purge queues), results,
periodic tasks (pause, resume, run now) and workflows (their steps; revoke).

Every page lists newest first; detail pages are read-only (tasks and results are written by
code, never typed in). A call shows as the call it is, ``add(a=2, b=3)``, with its raw JSON
folded below; signature and token headers are redacted; tracebacks keep their indentation.
Actions that change something need the model's change permission.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Mapping
from contextlib import suppress
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import conf, envelope
from .backends.local import store
from .backends.management import redact
from .exceptions import CloudTaskError, MalformedEnvelope
from .models import LocalQueue, LocalTask, LocalWorker, Schedule, TaskResult, Workflow, WorkflowStep
from .registry import registry
from .schedules import local as local_schedules
from .schedules import manage as schedule_manager
from .schedules.declare import history_prefix
from .schedules.records import ScheduleInfo
from .workflows import revoke_workflow
from .workflows.handle import tree_order

if TYPE_CHECKING:
    TaskAdminBase = admin.ModelAdmin[LocalTask]
    QueueAdminBase = admin.ModelAdmin[LocalQueue]
    ResultAdminBase = admin.ModelAdmin[TaskResult]
else:  # ModelAdmin is generic only in the type stubs
    TaskAdminBase = QueueAdminBase = ResultAdminBase = admin.ModelAdmin


def call_text(task_name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """Return a call as it reads in code: ``add(2, b=3)``, under the task's short name."""
    shown = [repr(value) for value in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
    return f"{task_name.rsplit('.', 1)[-1]}({', '.join(shown)})"


def _folded(summary: str, text: str) -> SafeString:
    return format_html("<details><summary>{}</summary><pre>{}</pre></details>", summary, text)


def _pre(text: str) -> SafeString | str:
    # <pre> keeps a traceback's indentation, which a read-only field's <div> would fold.
    return format_html('<pre style="white-space: pre-wrap">{}</pre>', text) if text else "-"


def _flat(fieldset: tuple[Any, ...]) -> tuple[str, ...]:
    """Return the field names of a ``fields`` layout, whose rows may group several."""
    return tuple(name for row in fieldset for name in (row if isinstance(row, tuple) else (row,)))


def _ids(queryset: QuerySet[LocalTask]) -> Q:
    return Q(pk__in=list(queryset.values_list("pk", flat=True)))


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows written by code: newest first, nothing to add or save, actions for changers."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the detail page is a view: no Save buttons

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Who may use the actions: those allowed to change the model."""
        meta = self.model._meta
        return bool(request.user.has_perm(f"{meta.app_label}.change_{meta.model_name}"))


@admin.register(LocalTask)
class LocalTaskAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "call",
        "queue",
        "outcome",
        "dispatch_count",
        "schedule_time",
        "last_attempt_at",
    )
    list_filter = ("status", "queue")
    search_fields = ("name", "task")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ("run_now", "retry", "delete_tasks")
    fields = (
        ("name", "queue"),
        "call",
        "outcome",
        ("dispatch_count", "response_count", "execution_count"),
        ("created_at", "schedule_time", "first_attempt_at", "finished_at"),
        ("last_attempt_scheduled_at", "last_attempt_at", "last_response_at", "lease_worker"),
        "last_answer",
        ("method", "url", "dispatch_deadline"),
        "request_headers",
        "raw_body",
    )
    readonly_fields = _flat(fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting rows outright would free their names at once; delete_tasks keeps them.
        return False

    @admin.display(description="call")
    def call(self, row: LocalTask) -> str:
        try:
            data = envelope.decode(bytes(row.body))
        except MalformedEnvelope:
            return row.task or "-"  # not a cloudtask call (an HTTP task to another service)
        return call_text(data.task_name, data.args, data.kwargs)

    @admin.display(description="status", ordering="status")
    def outcome(self, row: LocalTask) -> str:
        """The status, and for a failed task what failed it."""
        if row.status != "failed":
            return str(row.status)
        if row.retry_reason == "gave up":
            return f"failed: the task gave up (answered {row.last_response_status})"
        return f"failed after {row.dispatch_count} attempt(s): {row.retry_reason or '-'}"

    @admin.display(description="response")
    def last_answer(self, row: LocalTask) -> SafeString | str:
        return _pre(row.last_response)

    @admin.display(description="headers")
    def request_headers(self, row: LocalTask) -> SafeString | str:
        # The signature is valid for this body, so it is never shown (nor any token).
        headers = redact(dict(row.headers))
        return _pre("\n".join(f"{key}: {value}" for key, value in headers.items()))

    @admin.display(description="body")
    def raw_body(self, row: LocalTask) -> SafeString:
        text = bytes(row.body).decode("utf-8", "replace")
        with suppress(ValueError):  # not JSON: shown as it is
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        return _folded(f"the request body ({len(row.body)} bytes of JSON)", text)

    @admin.action(description="Run selected tasks now", permissions=["manage"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[LocalTask]) -> None:
        count = store.run_now(_ids(queryset))
        self.message_user(request, f"{count} queued task(s) made due now.", fail_silently=True)

    @admin.action(description="Retry selected failed tasks", permissions=["manage"])
    def retry(self, request: HttpRequest, queryset: QuerySet[LocalTask]) -> None:
        count = store.retry(_ids(queryset))
        self.message_user(request, f"{count} failed task(s) queued again.", fail_silently=True)

    @admin.action(
        description="Delete selected tasks (their names stay taken a while)",
        permissions=["manage"],
    )
    def delete_tasks(self, request: HttpRequest, queryset: QuerySet[LocalTask]) -> None:
        count = store.delete_tasks(_ids(queryset))
        self.message_user(
            request, f"{count} task(s) deleted.", messages.WARNING, fail_silently=True
        )


class LocalQueueForm(forms.ModelForm):  # type: ignore[type-arg]
    """Only names Cloud Tasks accepts: letters, digits and hyphens, 1 to 100 characters."""

    class Meta:
        model = LocalQueue
        fields = ("name", "paused")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        try:
            return conf.check_queue_name(name, "The queue name")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(LocalQueue)
class LocalQueueAdmin(QueueAdminBase):
    form = LocalQueueForm
    list_display = ("name", "paused", "waiting", "deleted_at")
    list_filter = ("paused",)
    search_fields = ("name",)
    # Changed through cloudtask.update_queue / delete_queue, which validate them.
    readonly_fields = ("config", "deleted_at", "created_at")
    actions = ("pause", "resume", "purge")

    @admin.display(description="waiting tasks")
    def waiting(self, queue: LocalQueue) -> int:
        found = LocalTask.objects.filter(queue=queue.name, status__in=store.WAITING)
        return int(found.aggregate(n=Count("pk"))["n"])

    @admin.action(description="Pause selected queues")
    def pause(self, request: HttpRequest, queryset: QuerySet[LocalQueue]) -> None:
        for name in queryset.values_list("name", flat=True):
            store.pause(name)
        self.message_user(request, "Queue(s) paused.", fail_silently=True)

    @admin.action(description="Resume selected queues")
    def resume(self, request: HttpRequest, queryset: QuerySet[LocalQueue]) -> None:
        for name in queryset.values_list("name", flat=True):
            store.pause(name, paused=False)
        self.message_user(request, "Queue(s) resumed.", fail_silently=True)

    @admin.action(description="Purge selected queues (delete their waiting tasks)")
    def purge(self, request: HttpRequest, queryset: QuerySet[LocalQueue]) -> None:
        count = sum(store.purge(name) for name in queryset.values_list("name", flat=True))
        self.message_user(request, f"{count} task(s) purged.", messages.WARNING, fail_silently=True)


@admin.register(LocalWorker)
class LocalWorkerAdmin(ReadOnlyAdmin):
    """The running workers and their last heartbeat; one silent for 30 s is taken for dead."""

    list_display = ("name", "host", "pid", "started_at", "seen_at", "running_tasks")
    ordering = ("started_at",)
    fields = (("name", "host", "pid"), ("started_at", "seen_at"))
    readonly_fields = _flat(fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a worker removes its own row; the others remove a dead one's

    @admin.display(description="running tasks")
    def running_tasks(self, row: LocalWorker) -> int:
        return int(LocalTask.objects.filter(status="running", lease_worker=row.name).count())


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    """Stored results: read-only, filterable by status and task, pushed again on request."""

    list_display = ("call", "status", "attempts", "queue", "call_id", "created_at", "finished_at")
    list_filter = ("status", "queue", "task")
    search_fields = ("call_id", "task", "task_name")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ("push_again",)
    fields = (
        ("call_id", "task_name", "queue"),
        "call",
        ("status", "failure_reason", "attempts"),
        "result",
        ("error_type", "error_message"),
        "error_traceback",
        ("created_at", "pushed_at", "started_at", "finished_at"),
    )
    readonly_fields = _flat(fields)

    @admin.display(description="call")
    def call(self, row: TaskResult) -> str:
        return call_text(row.task, row.args, row.kwargs)

    @admin.display(description="traceback")
    def error_traceback(self, row: TaskResult) -> SafeString | str:
        return _pre(row.traceback)

    @admin.action(description="Push selected calls again", permissions=["manage"])
    def push_again(self, request: HttpRequest, queryset: QuerySet[TaskResult]) -> None:
        pushed, refused = 0, []
        for row in queryset:
            try:
                registry.get(row.task)(*row.args, **row.kwargs).delay()
            except (CloudTaskError, TypeError, ValueError) as exc:
                refused.append(f"{call_text(row.task, row.args, row.kwargs)}: {exc}")
            else:
                pushed += 1
        self.message_user(request, f"{pushed} call(s) pushed again.", fail_silently=True)
        for reason in refused:
            self.message_user(request, f"Not pushed: {reason}", messages.ERROR, fail_silently=True)


#: What list_schedules said during the changelist request being rendered, by name.
_schedule_infos: contextvars.ContextVar[Mapping[str, ScheduleInfo]] = contextvars.ContextVar(
    "cloudtask_schedule_infos", default=MappingProxyType({})
)


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Periodic tasks as declared in code, with where each stands where it runs.

    The rows mirror the declarations (refreshed on each visit of the list); state, next and
    last run come from Cloud Scheduler with the Cloud Tasks backend, else from the local
    worker's rows. A run's history is the stored results of its calls (``RESULTS`` on).
    """

    list_display = (
        "name",
        "task",
        "cron",
        "time_zone",
        "state",
        "next",
        "last",
        "outcome",
        "history",
    )
    list_filter = ("paused", "task")
    search_fields = ("name", "task")
    ordering = ("name",)
    actions = ("pause", "resume", "run_now")
    fields = (("name", "task"), ("cron", "time_zone"), "kwargs", "paused", "history")
    readonly_fields = _flat(fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # declared in code: remove the declaration, and the row goes

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        found: dict[str, ScheduleInfo] = {}
        try:
            local_schedules.sync()
            found = {info.name: info for info in schedule_manager.list_schedules()}
        except CloudTaskError as exc:
            self.message_user(request, f"Schedules not read: {exc}", messages.ERROR)
        token = _schedule_infos.set(found)  # this request's, for the columns below
        try:
            response = super().changelist_view(request, extra_context)
            # Rendered here, while the columns can read what was found for this request.
            return response.render() if isinstance(response, TemplateResponse) else response
        finally:
            _schedule_infos.reset(token)

    def _info(self, row: Schedule) -> ScheduleInfo | None:
        return _schedule_infos.get().get(row.name)

    @admin.display(description="state")
    def state(self, row: Schedule) -> str:
        info = self._info(row)
        return info.state if info else ("paused" if row.paused else "-")

    @admin.display(description="next run")
    def next(self, row: Schedule) -> Any:
        info = self._info(row)
        return info.next_run if info else None

    @admin.display(description="last run")
    def last(self, row: Schedule) -> Any:
        info = self._info(row)
        return info.last_run if info else row.last_run

    @admin.display(description="last outcome")
    def outcome(self, row: Schedule) -> str:
        info = self._info(row)
        return (info.last_status if info else "") or "-"

    @admin.display(description="history")
    def history(self, row: Schedule) -> SafeString:
        url = reverse("admin:cloudtask_taskresult_changelist")
        return format_html('<a href="{}?q={}">stored results</a>', url, history_prefix(row.name))

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Schedule], act: Any, done: str
    ) -> None:
        for name in queryset.values_list("name", flat=True):
            try:
                act(name)
            except CloudTaskError as exc:
                self.message_user(request, f"{name}: {exc}", messages.ERROR, fail_silently=True)
            else:
                self.message_user(request, f"{name}: {done}.", fail_silently=True)

    @admin.action(description="Pause selected schedules", permissions=["manage"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_manager.pause_schedule, "paused")

    @admin.action(description="Resume selected schedules", permissions=["manage"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_manager.resume_schedule, "resumed")

    @admin.action(description="Run selected schedules now", permissions=["manage"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, schedule_manager.run_schedule, "started")


#: The columns of a workflow's steps table.
_STEP_COLUMNS = ("key", "kind", "task", "status", "attempts", "call id", "error", "result")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyAdmin):
    """Workflows: read-only, with their steps in tree order; running ones can be revoked.

    The search finds a workflow by its id, or by the call id or task of one of its steps.
    """

    list_display = ("id", "status", "description", "created_at", "finished_at")
    list_filter = ("status",)
    # Across the steps: Django makes the results distinct for a search through a relation.
    search_fields = ("id", "steps__call_id", "steps__task")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ("revoke",)
    fields = (
        ("id", "status"),
        "description",
        "result_json",
        "error_text",
        ("created_at", "updated_at", "finished_at"),
        "steps_table",
    )
    readonly_fields = _flat(fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cloudtask_workflows prune and cloudtask_prune remove ended ones

    @admin.display(description="result")
    def result_json(self, row: Workflow) -> SafeString | str:
        return _pre(_json_text(row.result)) if row.status == "succeeded" else "-"

    @admin.display(description="error")
    def error_text(self, row: Workflow) -> SafeString | str:
        return _pre(row.error)

    @admin.display(description="steps")
    def steps_table(self, row: Workflow) -> SafeString:
        """Every node of the workflow (chains and groups too), in tree order."""
        steps = sorted(row.steps.all(), key=lambda step: tree_order(step.key))
        cells = (
            (
                step.key,
                step.get_kind_display(),
                step.task or "-",
                step.status,
                step.attempts,
                step.call_id if step.kind in ("task", "errback") else "-",
                step.error or "-",
                _json_text(step.result) if step.status == "succeeded" else "-",
            )
            for step in steps
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            '<td><pre style="white-space: pre-wrap; margin: 0">{}</pre></td>'
            '<td><code style="white-space: pre-wrap">{}</code></td></tr>',
            cells,
        )
        head = format_html_join("", "<th>{}</th>", ((name,) for name in _STEP_COLUMNS))
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, rows)

    @admin.action(description="Revoke selected workflows", permissions=["manage"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        revoked = ended = 0
        for workflow_id in queryset.values_list("id", flat=True):
            try:
                done = revoke_workflow(workflow_id)
            except CloudTaskError as exc:
                self.message_user(
                    request, f"{workflow_id}: {exc}", messages.ERROR, fail_silently=True
                )
                continue
            revoked, ended = revoked + done, ended + (not done)
        self.message_user(
            request,
            f"{revoked} workflow(s) revoked; {ended} had already ended.",
            fail_silently=True,
        )


@admin.register(WorkflowStep)
class WorkflowStepAdmin(ReadOnlyAdmin):
    """Workflow steps across workflows: find a call by its id, list the failed ones."""

    list_display = ("call_id", "task", "kind", "status", "attempts", "workflow_link", "key")
    list_filter = ("status", "kind")
    search_fields = ("call_id", "task", "workflow__id")
    ordering = ("-workflow__created_at", "-id")
    list_select_related = ("workflow",)
    fields = (
        ("workflow_link", "key", "kind"),
        "call",
        ("status", "attempts", "immutable"),
        "result_json",
        "error_text",
        ("call_id", "queue", "task_id", "generation"),
        ("countdown", "eta"),
        ("started_at", "finished_at"),
    )
    readonly_fields = _flat(fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleted with their workflow

    @admin.display(description="workflow", ordering="workflow")
    def workflow_link(self, row: WorkflowStep) -> SafeString:
        url = reverse("admin:cloudtask_workflow_change", args=(row.workflow_id,))
        return format_html('<a href="{}">{}</a>', url, row.workflow_id)

    @admin.display(description="call")
    def call(self, row: WorkflowStep) -> str:
        if not row.task:
            return "-"  # a chain or a group
        args = [row.input, *row.args] if row.has_input else row.args
        return call_text(row.task, args, row.kwargs)

    @admin.display(description="result")
    def result_json(self, row: WorkflowStep) -> SafeString | str:
        return _pre(_json_text(row.result)) if row.status == "succeeded" else "-"

    @admin.display(description="error")
    def error_text(self, row: WorkflowStep) -> SafeString | str:
        return _pre(row.error)
