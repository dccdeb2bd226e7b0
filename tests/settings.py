"""Settings of the test suite."""

import django

SECRET_KEY = "tests-secret-key-that-is-long-enough-for-hmac-derivation"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the admin's CSS, served by live_server to the browser test
    "cloudtask",
    "tests",
    "tests.discovered",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "tests.urls"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
CLOUDTASK = {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}
STATIC_URL = "/static/"
# Django's task framework on cloudtask (django.tasks; the django_tasks backport on 5.2, an app
# there: its checks and log receivers are connected when it is installed).
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")
TASKS = {
    "default": {
        "BACKEND": "cloudtask.django_tasks.CloudTaskBackend",
        "QUEUES": ["default", "emails", "Mail Queue"],
        "OPTIONS": {"QUEUE_MAP": {"Mail Queue": "emails"}},
    }
}
