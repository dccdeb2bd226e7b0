"""Settings for Django's own tasks suite: this backend, tasks run at once, a test database."""

import django

SECRET_KEY = "django-suite-secret-key-that-is-long-enough-0123456789"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "cloudtask", "tasks"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "tests.django_suite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
CLOUDTASK = {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}
TASKS = {
    "default": {
        "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
        "QUEUES": [],
        "OPTIONS": {"RESULTS": False},
    }
}
