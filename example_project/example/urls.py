from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("push/<str:kind>/", views.push, name="push"),
    path("admin/", admin.site.urls),
    path("_tasks/", include("cloudtask.urls")),
]
