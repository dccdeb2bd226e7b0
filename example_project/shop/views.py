"""A page that pushes the example tasks and lists what the local queue holds."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from cloudtask import TaskAlreadyExists, TaskHandle
from cloudtask.models import LocalTask

from . import tasks

PUSHES: dict[str, tuple[str, Callable[[], TaskHandle]]] = {
    "add": ("add(a=2, b=3).delay()", lambda: tasks.add(a=2, b=3).delay()),
    "reminder": (
        "send_reminder(order_id=7).schedule(countdown=5)",
        lambda: tasks.send_reminder(order_id=7).schedule(countdown=5),
    ),
    "index": ("rebuild_search_index().delay()", lambda: tasks.rebuild_search_index().delay()),
    "inventory": (
        'sync_inventory(sku="ABC-1").delay()',
        lambda: tasks.sync_inventory(sku="ABC-1").delay(),
    ),
    "charge": ("charge_card(order_id=7).delay()", lambda: tasks.charge_card(order_id=7).delay()),
}


def index(request: HttpRequest) -> HttpResponse:
    """List the pushes on offer and the most recent local tasks."""
    recent = LocalTask.objects.order_by("-created_at")[:20]
    pushes = [(kind, code) for kind, (code, _) in PUSHES.items()]
    return render(request, "shop/index.html", {"pushes": pushes, "recent": recent})


@require_POST
def push(request: HttpRequest, kind: str) -> HttpResponse:
    """Push one of the example tasks."""
    if kind not in PUSHES:
        raise Http404(kind)
    code, make = PUSHES[kind]
    try:
        handle = make()
    except TaskAlreadyExists as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"{code} -> task {handle.name} in queue {handle.queue}")
    return redirect("index")
