"""``path("_tasks/", include("cloudtask.urls"))`` mounts the task endpoint."""

from django.urls import path

from .views import endpoint

app_name = "cloudtask"
urlpatterns = [path("", endpoint, name="endpoint")]
