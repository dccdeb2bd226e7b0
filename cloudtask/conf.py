"""Lazy access to the CLOUDTASK setting.

Nothing here is read at import time: every attribute goes back to ``django.conf.settings``,
so ``override_settings(CLOUDTASK=...)`` takes effect at once. Values derived from settings
(signing keys, the backend instance) are cached elsewhere and dropped on ``setting_changed``
through :func:`on_change`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .exceptions import ConfigurationError

CLOUD_TASKS_BACKEND = "cloudtask.backends.cloudtasks.CloudTasksBackend"
LOCAL_BACKEND = "cloudtask.backends.local.LocalBackend"
IMMEDIATE_BACKEND = "cloudtask.backends.immediate.ImmediateBackend"

#: Every key CLOUDTASK understands, with its default.
DEFAULTS: dict[str, Any] = {
    "PROJECT": None,
    "LOCATION": None,
    "SAE": None,
    "URL": None,
    "QUEUE": "default",
    "SECRET": None,
    "SECRET_FALLBACKS": [],
    # While SECRET is set, still accept the key derived from SECRET_KEY: for the switch.
    "ACCEPT_DERIVED_KEY": False,
    "BACKEND": None,
    "TIMEOUT": None,
    "MAX_BODY_SIZE": 1024 * 1024,
    # How long a signed body stays valid after its first planned delivery; None: for ever.
    "SIGNATURE_MAX_AGE": None,
    "EMULATOR_HOST": None,
    # Push and manage as this service account (impersonated on top of the default
    # credentials); None: as the default credentials themselves.
    "IMPERSONATE": None,
    "AUTO_CREATE_QUEUES": True,
    "OIDC": None,
    "QUEUES": {},
    "RESULTS": False,
    # How long LocalBackend refuses a task name after the task ran or was deleted (Cloud
    # Tasks reserves it for about an hour for queues it created).
    "LOCAL_DEDUP_WINDOW": 3600,
    # How long LocalBackend refuses the name of a deleted queue (Cloud Tasks: 7 days);
    # 0 allows re-creating it at once, handy in development.
    "LOCAL_QUEUE_REUSE_WINDOW": 7 * 24 * 3600,
    # Periodic tasks by name (see cloudtask.schedules), besides those declared with @periodic.
    "SCHEDULES": {},
    # Where the Cloud Scheduler jobs of periodic tasks live; None: LOCATION.
    "SCHEDULER_LOCATION": None,
    # "host:port" of a Cloud Scheduler stand-in, reached over an insecure gRPC channel.
    "SCHEDULER_EMULATOR_HOST": None,
}

#: Settings that affect cached values; a change to any of them calls the reset hooks.
WATCHED_SETTINGS = frozenset(
    {"CLOUDTASK", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "ROOT_URLCONF", "INSTALLED_APPS"}
)

QUEUE_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
MIN_TIMEOUT = timedelta(seconds=15)
MAX_TIMEOUT = timedelta(minutes=30)

_reset_hooks: list[Callable[[], None]] = []


def on_change(hook: Callable[[], None]) -> Callable[[], None]:
    """Register ``hook`` to run whenever a setting cloudtask depends on changes."""
    _reset_hooks.append(hook)
    return hook


@receiver(setting_changed)
def _reset_caches(*, setting: str, **kwargs: Any) -> None:
    if setting in WATCHED_SETTINGS:
        for hook in _reset_hooks:
            hook()


def user_settings() -> Mapping[str, Any]:
    """Return the project's CLOUDTASK dict, refusing anything that is not a mapping."""
    value = getattr(django_settings, "CLOUDTASK", None)
    if type(value) is dict:  # the usual case, without the slower ABC check below
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"CLOUDTASK must be a dict of settings, not {type(value).__name__}."
        )
    return value


@cache
def require_installed() -> None:
    """Raise ConfigurationError unless "cloudtask" is in INSTALLED_APPS.

    Without it nothing finds the ``tasks`` modules, the system checks do not run and the
    local queue has no tables, so every push and delivery would fail in a puzzling way.
    """
    if not apps.is_installed("cloudtask"):
        raise ConfigurationError(
            'cloudtask is not in INSTALLED_APPS: add "cloudtask" to INSTALLED_APPS in your '
            "settings, then run python manage.py migrate."
        )


def get(key: str) -> Any:
    """Return one CLOUDTASK value, or its default."""
    return user_settings().get(key, DEFAULTS[key])


def max_body_size() -> int:
    """Return MAX_BODY_SIZE, refusing anything that is not a positive number of bytes."""
    limit = get("MAX_BODY_SIZE")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ConfigurationError(
            f"CLOUDTASK['MAX_BODY_SIZE'] must be a positive number of bytes, not {limit!r}."
        )
    return limit


@cache
def signature_max_age() -> timedelta | None:
    """Return SIGNATURE_MAX_AGE (None when unset), refusing anything but a positive duration.

    Asked on every delivery, so kept until a setting changes (``on_change``).
    """
    value = get("SIGNATURE_MAX_AGE")
    if value is None:
        return None
    try:
        return check_signature_max_age(value, "CLOUDTASK['SIGNATURE_MAX_AGE']")
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None


def check_signature_max_age(value: Any, what: str) -> timedelta:
    """Validate a signature lifetime: a positive number of seconds or a timedelta."""
    age = to_timedelta(value, what)
    if age <= timedelta(0):
        raise ValueError(
            f"{what} must be a positive duration (e.g. 7 * 24 * 3600 for a week) or None, "
            f"not {age.total_seconds():g} seconds."
        )
    return age


def backend_path() -> str:
    """Return the dotted path of the configured backend, applying the documented default."""
    path = get("BACKEND")
    if path:
        return str(path)
    return CLOUD_TASKS_BACKEND if get("PROJECT") else LOCAL_BACKEND


def to_timedelta(value: Any, what: str) -> timedelta:
    """Turn seconds (int or float) or a timedelta into a timedelta, refusing anything else."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{what} must be a number of seconds or a datetime.timedelta, "
            f"not {type(value).__name__}."
        )
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, not {value!r}.")
    return timedelta(seconds=value)


def check_timeout(value: Any, what: str) -> timedelta:
    """Validate a dispatch deadline against Cloud Tasks' range for HTTP targets."""
    deadline = to_timedelta(value, what)
    if not MIN_TIMEOUT <= deadline <= MAX_TIMEOUT:
        raise ValueError(
            f"{what} must be between 15 seconds and 30 minutes (Cloud Tasks' range for "
            f"HTTP targets), not {deadline.total_seconds():g} seconds."
        )
    return deadline


def check_url(value: Any, what: str) -> str:
    """Validate an absolute http(s) URL and return it."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string URL, not {type(value).__name__}.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{what} must be an absolute http(s) URL such as "
            f"'https://app.example.com/_tasks/', not {value!r}."
        )
    return value


def dedup_window() -> timedelta:
    """Return how long a task name stays taken after its task ran or was deleted (locally)."""
    return check_dedup_window(get("LOCAL_DEDUP_WINDOW"), "CLOUDTASK['LOCAL_DEDUP_WINDOW']")


def check_dedup_window(value: Any, what: str) -> timedelta:
    """Validate a local window (de-duplication, queue name reuse): a duration of 0 or more."""
    window = to_timedelta(value, what)
    if window < timedelta(0):
        raise ValueError(f"{what} must not be negative, not {window.total_seconds():g} seconds.")
    return window


#: The OAuth scope of the Cloud Tasks client, and of ``auth="oauth"`` tokens by default.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: The ``iss`` values Google puts in the ID tokens it mints.
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
#: Google's OIDC signing certificates, as ``{kid: PEM certificate}``.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
#: Every key CLOUDTASK["OIDC"] understands.
OIDC_KEYS = ("AUDIENCE", "SERVICE_ACCOUNTS", "ISSUERS", "CERTS_URL", "CLOCK_SKEW", "REQUIRED")


def oidc_options() -> Mapping[str, Any]:
    """Return CLOUDTASK['OIDC'] ({} when unset), refusing anything that is not a dict."""
    value = get("OIDC")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"CLOUDTASK['OIDC'] must be a dict of OIDC settings, not {type(value).__name__}."
        )
    return value


@cache
def oidc_required() -> bool:
    """Return whether task requests need an OIDC token on top of the HMAC signature.

    Asked on every request, so kept until a setting changes (``on_change``).
    """
    options = get("OIDC")
    if isinstance(options, Mapping) and "REQUIRED" in options:
        # Only an explicit False turns it off: a malformed value fails closed.
        return options["REQUIRED"] is not False
    return bool(get("SAE")) or options is not None


on_change(oidc_required.cache_clear)
on_change(signature_max_age.cache_clear)
on_change(require_installed.cache_clear)


def check_queue_name(value: Any, what: str) -> str:
    """Validate a Cloud Tasks queue id and return it."""
    if not isinstance(value, str) or not QUEUE_ID_RE.match(value):
        raise ValueError(
            f"{what} must be a Cloud Tasks queue id (letters, digits and hyphens, "
            f"1 to 100 characters), not {value!r}."
        )
    return value
