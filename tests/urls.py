from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

#: What the hook view received: (method, query, content type, body).
received: list[tuple[str, str, str, bytes]] = []


@csrf_exempt
def hook(request: HttpRequest) -> JsonResponse:
    """A view of the project itself, the target of HTTP tasks in tests."""
    received.append(
        (
            request.method or "",
            request.META.get("QUERY_STRING", ""),
            request.content_type,
            request.body,
        )
    )
    return JsonResponse({"received": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("_tasks/", include("cloudtask.urls")),
    path("hooks/order/", hook),
]
