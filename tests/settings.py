SECRET_KEY = "tests-secret-key-that-is-long-enough-for-hmac-derivation"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
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
]
CLOUDTASK = {"BACKEND": "cloudtask.backends.immediate.ImmediateBackend"}
STATIC_URL = "/static/"
