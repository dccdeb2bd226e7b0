"""Admin for the local queue (run, retry, delete tasks; pause and purge queues) and results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from .backends.local import store
from .models import LocalQueue, LocalTask, TaskResult

if TYPE_CHECKING:
    TaskAdminBase = admin.ModelAdmin[LocalTask]
    QueueAdminBase = admin.ModelAdmin[LocalQueue]
    ResultAdminBase = admin.ModelAdmin[TaskResult]
else:  # ModelAdmin is generic only in the type stubs
    TaskAdminBase = QueueAdminBase = ResultAdminBase = admin.ModelAdmin


def _ids(queryset: QuerySet[LocalTask]) -> Q:
    return Q(pk__in=list(queryset.values_list("pk", flat=True)))


@admin.register(LocalTask)
class LocalTaskAdmin(TaskAdminBase):
    list_display = (
        "name",
        "task",
        "queue",
        "status",
        "dispatch_count",
        "last_response_status",
        "schedule_time",
        "last_attempt_at",
    )
    list_filter = ("status", "queue")
    search_fields = ("name", "task")
    date_hierarchy = "created_at"
    actions = ("run_now", "retry", "delete_tasks")
    readonly_fields = tuple(
        f.name for f in LocalTask._meta.get_fields() if f.concrete and f.name != "id"
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are pushed by code, never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting rows outright would free their names at once; delete_tasks keeps them.
        return False

    @admin.action(description="Run selected tasks now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[LocalTask]) -> None:
        count = store.run_now(_ids(queryset))
        self.message_user(request, f"{count} queued task(s) made due now.", fail_silently=True)

    @admin.action(description="Retry selected failed tasks")
    def retry(self, request: HttpRequest, queryset: QuerySet[LocalTask]) -> None:
        count = store.retry(_ids(queryset))
        self.message_user(request, f"{count} failed task(s) queued again.", fail_silently=True)

    @admin.action(description="Delete selected tasks (their names stay taken a while)")
    def delete_tasks(self, request: HttpRequest, queryset: QuerySet[LocalTask]) -> None:
        count = store.delete_tasks(_ids(queryset))
        self.message_user(
            request, f"{count} task(s) deleted.", messages.WARNING, fail_silently=True
        )


@admin.register(LocalQueue)
class LocalQueueAdmin(QueueAdminBase):
    list_display = ("name", "paused", "waiting", "deleted_at")
    list_filter = ("paused",)
    search_fields = ("name",)
    # Changed through cloudtask.update_queue / delete_queue, which validate them.
    readonly_fields = ("config", "deleted_at", "created_at")
    actions = ("pause", "resume", "purge")

    @admin.display(description="waiting tasks")
    def waiting(self, queue: LocalQueue) -> int:
        found = LocalTask.objects.filter(queue=queue.name, status__in=("queued", "running"))
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


@admin.register(TaskResult)
class TaskResultAdmin(ResultAdminBase):
    """Stored results: read-only, filterable by status and task."""

    list_display = ("task", "status", "attempts", "queue", "call_id", "created_at", "finished_at")
    list_filter = ("status", "queue", "task")
    search_fields = ("call_id", "task", "task_name")
    date_hierarchy = "created_at"
    readonly_fields = tuple(
        f.name for f in TaskResult._meta.get_fields() if f.concrete and f.name != "id"
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
