"""The task endpoint, for Django's tasks suite."""

from django.urls import include, path

urlpatterns = [path("_tasks/", include("cloudtask.urls"))]
