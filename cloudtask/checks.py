"""System checks for the CLOUDTASK setting; ids are stable and documented in the README.

The configured backend reports its own settings from its ``check()`` method (E003-E005 come
from the Cloud Tasks backend), and ``development`` decides W003, so a subclass of a backend
is checked like its parent.

| id | problem |
|----|---------|
| cloudtask.E001 | CLOUDTASK is not a dict |
| cloudtask.E002 | BACKEND cannot be imported or is not a backend |
| cloudtask.E003 | the Cloud Tasks backend (or a subclass) without PROJECT |
| cloudtask.E004 | the Cloud Tasks backend (or a subclass) without LOCATION |
| cloudtask.E005 | the Cloud Tasks backend (or a subclass) without URL (unless every task targets App Engine) |
| cloudtask.E006 | URL is not an absolute http(s) URL |
| cloudtask.E007 | SECRET / SECRET_FALLBACKS / ACCEPT_DERIVED_KEY invalid, or no key to sign with |
| cloudtask.E008 | QUEUE is not a valid queue id |
| cloudtask.E009 | TIMEOUT is not a duration between 15 s and 30 min |
| cloudtask.E010 | the task endpoint is not in the URLconf and URL is not set |
| cloudtask.E011 | MAX_BODY_SIZE is not a positive integer |
| cloudtask.E012 | RESULTS is not True or False |
| cloudtask.E013 | EMULATOR_HOST is not "host:port" |
| cloudtask.E014 | SIGNATURE_MAX_AGE is not a positive duration |
| cloudtask.E015 | IMPERSONATE is not a service account email |
| cloudtask.E020 | OIDC is not a dict, or has an unknown key |
| cloudtask.E021 | OIDC AUDIENCE is not an absolute http(s) URL, or none can be derived |
| cloudtask.E022 | OIDC required but SERVICE_ACCOUNTS (default [SAE]) empty or not strings |
| cloudtask.E023 | OIDC ISSUERS is not a non-empty list of strings |
| cloudtask.E024 | OIDC CERTS_URL is not an absolute http(s) URL |
| cloudtask.E025 | OIDC CLOCK_SKEW is not a duration between 0 and 5 minutes |
| cloudtask.E026 | OIDC REQUIRED is not True or False |
| cloudtask.E030 | QUEUES is not a dict of queue names to option dicts |
| cloudtask.E031 | a queue name in QUEUES is not a valid queue id |
| cloudtask.E032 | a queue in QUEUES has an unknown option |
| cloudtask.E033 | a queue option has a wrong type or is outside Cloud Tasks' range |
| cloudtask.E034 | LOCAL_DEDUP_WINDOW is not a duration of zero or more |
| cloudtask.E035 | LOCAL_QUEUE_REUSE_WINDOW is not a duration of zero or more |
| cloudtask.E050 | SCHEDULES is not a dict, or an entry is not a dict of known keys with task and cron |
| cloudtask.E051 | a schedule name is not 1-40 letters, digits, '-' or '_' |
| cloudtask.E052 | a schedule's cron expression is not valid unix-cron (five fields) |
| cloudtask.E053 | a schedule's time zone is not a tz database name |
| cloudtask.E054 | a schedule names an unknown task, or @periodic is below @task |
| cloudtask.E055 | a schedule's kwargs do not bind to its task or are not JSON |
| cloudtask.E056 | two schedules share a name |
| cloudtask.E057 | a schedule's paused, description or retry option is invalid |
| cloudtask.E058 | SCHEDULER_LOCATION or SCHEDULER_EMULATOR_HOST is invalid |
| cloudtask.E059 | schedules on Cloud Scheduler without URL or SAE, or of a task not sent to the endpoint by POST |
| cloudtask.W001 | unknown key in CLOUDTASK (a typo?) |
| cloudtask.W002 | (deploy) SECRET shorter than 32 characters |
| cloudtask.W003 | (deploy) a development backend (``development = True``) with DEBUG = False |
| cloudtask.W004 | a setting named like CLOUDTASK (CLOUDTASKS, CLOUD_TASK, ...): a typo? |
| cloudtask.W020 | (deploy) OIDC required but the audience is not an https URL |
| cloudtask.W021 | (deploy) OIDC required but CERTS_URL is not an https URL |
| cloudtask.W022 | (deploy) OIDC REQUIRED is False while SAE is set: tokens go unchecked |
| cloudtask.W023 | OIDC required, but a task sent to this endpoint would carry no OIDC token |
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning

from . import conf, queues, signing
from .backends.base import endpoint_path
from .backends.cloudtasks.client import check_emulator_host, check_service_account
from .backends.loading import load_backend
from .exceptions import ConfigurationError
from .oidc import push_token, read_setting
from .registry import registry
from .schedules import check_schedules

if TYPE_CHECKING:
    from .task import Task


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every misconfiguration of CLOUDTASK that can be seen without network I/O."""
    try:
        user = conf.user_settings()
    except ConfigurationError as exc:
        return [Error(str(exc), hint="CLOUDTASK = {'QUEUE': 'default', ...}", id="cloudtask.E001")]
    messages: list[CheckMessage] = [
        Warning(
            f"CLOUDTASK has an unknown key {key!r}.",
            hint=f"Known keys: {', '.join(sorted(conf.DEFAULTS))}.",
            id="cloudtask.W001",
        )
        for key in user
        if key not in conf.DEFAULTS
    ]
    messages += _check_setting_name()
    messages += _check_backend()
    messages += _check_value("URL", conf.check_url, "cloudtask.E006")
    messages += _check_value("QUEUE", conf.check_queue_name, "cloudtask.E008")
    messages += _check_value("TIMEOUT", conf.check_timeout, "cloudtask.E009")
    messages += _check_value("SIGNATURE_MAX_AGE", conf.check_signature_max_age, "cloudtask.E014")
    try:
        conf.max_body_size()
    except ConfigurationError as exc:
        messages.append(Error(str(exc), id="cloudtask.E011"))
    try:
        signing.keys()
    except ConfigurationError as exc:
        messages.append(Error(str(exc), id="cloudtask.E007"))
    messages += _check_urlconf()
    messages += _check_emulator_host()
    if not isinstance(conf.get("RESULTS"), bool):
        messages.append(
            Error(
                f"CLOUDTASK['RESULTS'] must be True or False, not {conf.get('RESULTS')!r}.",
                id="cloudtask.E012",
            )
        )
    messages += queues.check_queues()
    return messages


def _check_setting_name() -> list[CheckMessage]:
    """Warn about settings named almost like CLOUDTASK: cloudtask reads only CLOUDTASK."""
    names = [name for name in dir(django_settings) if name.isupper() and name != "CLOUDTASK"]
    return [
        Warning(
            f"The setting {name} is not read by cloudtask: did you mean CLOUDTASK?",
            hint=f"Rename {name} to CLOUDTASK (one word, no S).",
            id="cloudtask.W004",
        )
        for name in difflib.get_close_matches("CLOUDTASK", names, n=3, cutoff=0.75)
    ]


def _check_value(
    key: str, validate: Callable[[Any, str], Any], check_id: str
) -> list[CheckMessage]:
    value = conf.get(key)
    if value is None:
        return []
    try:
        validate(value, f"CLOUDTASK['{key}']")
    except (TypeError, ValueError) as exc:
        return [Error(str(exc), id=check_id)]
    return []


def _check_backend() -> list[CheckMessage]:
    try:
        backend = load_backend(conf.backend_path())
    except ConfigurationError as exc:
        return [Error(str(exc), id="cloudtask.E002")]
    return backend.check()


def _check_emulator_host() -> list[CheckMessage]:
    host, account = conf.get("EMULATOR_HOST"), conf.get("IMPERSONATE")
    messages: list[CheckMessage] = []
    try:
        if host is not None:
            check_emulator_host(host)
    except ConfigurationError as exc:
        messages.append(Error(str(exc), id="cloudtask.E013"))
    try:
        if account is not None:
            check_service_account(account, "CLOUDTASK['IMPERSONATE']")
    except ConfigurationError as exc:
        messages.append(Error(str(exc), id="cloudtask.E015"))
    return messages


def _check_urlconf() -> list[CheckMessage]:
    if conf.get("URL"):
        # Pushes go to URL, which may be another service's endpoint: this one needs no route.
        return []
    try:
        endpoint_path()
    except ConfigurationError as exc:
        return [Error(str(exc), id="cloudtask.E010")]
    return []


def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Flag development-only choices when ``check --deploy`` runs."""
    messages: list[CheckMessage] = []
    try:
        secret = conf.get("SECRET")
        backend = load_backend(conf.backend_path())
    except ConfigurationError:
        return []  # reported by check_settings
    if isinstance(secret, str) and len(secret) < 32:
        messages.append(
            Warning(
                f"CLOUDTASK['SECRET'] is {len(secret)} characters long; use at least 32.",
                hint="python -c 'import secrets; print(secrets.token_urlsafe(48))'",
                id="cloudtask.W002",
            )
        )
    if backend.development and not django_settings.DEBUG:
        messages.append(
            Warning(
                f"CLOUDTASK['BACKEND'] is {type(backend).__name__}, a development backend, "
                "while DEBUG is False.",
                hint=f"Use {conf.CLOUD_TASKS_BACKEND!r} (set PROJECT, LOCATION and URL).",
                id="cloudtask.W003",
            )
        )
    return messages


_OIDC_CHECK_IDS = {
    "ISSUERS": "cloudtask.E023",
    "CERTS_URL": "cloudtask.E024",
    "CLOCK_SKEW": "cloudtask.E025",
    "REQUIRED": "cloudtask.E026",
}


def check_oidc(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report invalid CLOUDTASK['OIDC'] settings."""
    try:
        conf.user_settings()
    except ConfigurationError:
        return []  # reported by check_settings as E001
    try:
        options = conf.oidc_options()
    except ConfigurationError as exc:
        return [Error(str(exc), hint="CLOUDTASK['OIDC'] = {'AUDIENCE': ...}", id="cloudtask.E020")]
    messages: list[CheckMessage] = [
        Error(
            f"CLOUDTASK['OIDC'] has an unknown key {key!r}.",
            hint=f"Known keys: {', '.join(conf.OIDC_KEYS)}.",
            id="cloudtask.E020",
        )
        for key in options
        if key not in conf.OIDC_KEYS
    ]
    required = conf.oidc_required()
    # The default audience is URL (checked as E005/E006), or the backend's own URL.
    if "AUDIENCE" in options or (required and not conf.get("URL")):
        messages += _check_oidc_key("AUDIENCE", "cloudtask.E021")
    if "SERVICE_ACCOUNTS" in options or required:
        messages += _check_oidc_key(
            "SERVICE_ACCOUNTS",
            "cloudtask.E022",
            hint="Set CLOUDTASK['SAE'] to the service account Cloud Tasks mints tokens for, "
            "or list the accepted ones in CLOUDTASK['OIDC']['SERVICE_ACCOUNTS'].",
        )
    for key, check_id in _OIDC_CHECK_IDS.items():
        messages += _check_oidc_key(key, check_id)
    return messages


def _check_oidc_key(key: str, check_id: str, hint: str | None = None) -> list[CheckMessage]:
    try:
        read_setting(key)
    except (TypeError, ValueError, ConfigurationError) as exc:
        return [Error(str(exc), hint=hint, id=check_id)]
    return []


def check_periodic_tasks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report bad periodic task declarations and settings (``cloudtask.E050``-``E059``)."""
    try:
        cloud_scheduler = load_backend(conf.backend_path()).uses_cloud_scheduler
    except ConfigurationError:
        cloud_scheduler = False  # reported as cloudtask.E002
    return check_schedules(cloud_scheduler=cloud_scheduler)


def check_oidc_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Flag OIDC choices that do not belong in production when ``check --deploy`` runs."""
    try:
        required = conf.oidc_required()
        audience = read_setting("AUDIENCE") if required else ""
        certs_url = read_setting("CERTS_URL")
    except (TypeError, ValueError, ConfigurationError):
        return []  # reported by check_settings / check_oidc
    messages: list[CheckMessage] = []
    if required and urlsplit(audience).scheme != "https":
        messages.append(
            Warning(
                f"The OIDC audience {audience!r} is not an https URL.",
                hint="Cloud Tasks delivers to https targets: set CLOUDTASK['URL'] (or "
                "CLOUDTASK['OIDC']['AUDIENCE']) to the endpoint's https URL.",
                id="cloudtask.W020",
            )
        )
    if required and urlsplit(certs_url).scheme != "https":
        messages.append(
            Warning(
                f"CLOUDTASK['OIDC']['CERTS_URL'] {certs_url!r} is not an https URL: anyone on "
                "the path could substitute signing keys.",
                hint=f"Remove it to use Google's {conf.GOOGLE_CERTS_URL!r}.",
                id="cloudtask.W021",
            )
        )
    if not required and conf.get("SAE"):
        messages.append(
            Warning(
                "CLOUDTASK['OIDC']['REQUIRED'] is False while SAE is set: the OIDC tokens "
                "Cloud Tasks sends are not checked, only the HMAC signature.",
                hint="Remove REQUIRED to verify them.",
                id="cloudtask.W022",
            )
        )
    return messages


def check_task_tokens(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn about tasks that Cloud Tasks would send to this endpoint without an OIDC token."""
    try:
        if not conf.oidc_required():
            return []
        # No per-task url: the task goes to this project's endpoint, which needs the token.
        ours = [task for task in map(registry.get, registry) if task.url is None]
        tokenless = [
            task
            for task in ours
            if push_token(task.auth, "", app_engine=task.app_engine is not None) is None
        ]
    except ConfigurationError:
        return []  # reported by check_settings / check_oidc
    hint = (
        "Cloud Tasks adds an OIDC token only to HTTP targets with auth='oidc' (the default), "
        "minted for CLOUDTASK['SAE']; the local queue and capture_tasks() do the same."
    )
    if not conf.get("SAE") and any(task.auth == "oidc" for task in tokenless):
        return [
            Warning(
                "OIDC tokens are required, but CLOUDTASK['SAE'] is not set, so Cloud Tasks "
                "sends none: every request to the task endpoint would be refused with 403.",
                hint="Set CLOUDTASK['SAE'] to the service account Cloud Tasks mints tokens for.",
                id="cloudtask.W023",
            )
        ]
    return [
        Warning(
            f"Task {task.name!r} is sent to the task endpoint {_without_token(task)}, but the "
            "endpoint requires OIDC tokens: its requests would be refused with 403.",
            hint=hint,
            id="cloudtask.W023",
        )
        for task in tokenless
    ]


def _without_token(task: Task[Any, Any]) -> str:
    if task.app_engine is not None:
        return "as an App Engine task, which carries no OIDC token"
    if task.auth == "oauth":
        return "with an OAuth access token (auth='oauth'), not an OIDC token"
    return "without a token (auth=None)"
