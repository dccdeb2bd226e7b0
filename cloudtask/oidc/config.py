"""``CLOUDTASK["OIDC"]`` resolved and validated, and which token Cloud Tasks adds to a push."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from .. import conf
from ..backends import loading
from ..exceptions import ConfigurationError

DEFAULT_CLOCK_SKEW = timedelta(seconds=10)
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class OidcSettings:
    """CLOUDTASK["OIDC"] resolved: every default applied, every value validated."""

    audience: str
    service_accounts: tuple[str, ...]
    issuers: tuple[str, ...]
    certs_url: str
    clock_skew: float
    #: The configured backend signs development tokens (``trusts_development_tokens``).
    trust_development_key: bool


def check_strings(value: Any, what: str) -> tuple[str, ...]:
    """Validate a non-empty list of non-empty strings and return it as a tuple."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{what} must be a list of strings, not {type(value).__name__}.")
    if not value or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings, not {value!r}.")
    return tuple(value)


def check_clock_skew(value: Any, what: str) -> float:
    """Validate the allowed clock skew (0 to 5 minutes) and return it in seconds."""
    skew = conf.to_timedelta(value, what)
    if not timedelta(0) <= skew <= MAX_CLOCK_SKEW:
        raise ValueError(f"{what} must be between 0 and 300 seconds, not {skew.total_seconds():g}.")
    return skew.total_seconds()


def default_audience() -> str:
    """Return the audience used when OIDC["AUDIENCE"] is unset: URL, else the backend's URL."""
    url = conf.get("URL")
    if url:
        return conf.check_url(url, "CLOUDTASK['URL']")
    try:
        return loading.configured_backend().default_url()
    except ConfigurationError as exc:
        raise ConfigurationError(
            "OIDC verification needs the token audience: set CLOUDTASK['OIDC']['AUDIENCE'] "
            "(or CLOUDTASK['URL']) to the endpoint's URL, e.g. 'https://app.example.com/_tasks/' "
            f"(the backend gives none: {exc})"
        ) from exc


def read_setting(key: str) -> Any:
    """Return one CLOUDTASK['OIDC'] value, validated, with its default applied."""
    options = conf.oidc_options()
    what = f"CLOUDTASK['OIDC']['{key}']"
    value = options.get(key)
    if key == "AUDIENCE":
        return default_audience() if value is None else conf.check_url(value, what)
    if key == "SERVICE_ACCOUNTS":
        if value is None:
            sae = conf.get("SAE")
            value = [sae] if sae else []
            what = f"{what} (default: [CLOUDTASK['SAE']])"
        return check_strings(value, what)
    if key == "ISSUERS":
        return conf.GOOGLE_ISSUERS if value is None else check_strings(value, what)
    if key == "CERTS_URL":
        return conf.GOOGLE_CERTS_URL if value is None else conf.check_url(value, what)
    if key == "CLOCK_SKEW":
        return check_clock_skew(DEFAULT_CLOCK_SKEW if value is None else value, what)
    if key == "REQUIRED":
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{what} must be True or False, not {value!r}.")
        return conf.oidc_required()
    raise KeyError(key)


@cache
def settings() -> OidcSettings:
    """Return the resolved OIDC settings, raising ConfigurationError when one is invalid."""
    options = conf.oidc_options()
    unknown = [key for key in options if key not in conf.OIDC_KEYS]
    if unknown:
        raise ConfigurationError(
            f"CLOUDTASK['OIDC'] has unknown keys {unknown}; known: {', '.join(conf.OIDC_KEYS)}."
        )
    try:
        values = {key: read_setting(key) for key in conf.OIDC_KEYS}
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from exc
    return OidcSettings(
        audience=values["AUDIENCE"],
        service_accounts=values["SERVICE_ACCOUNTS"],
        issuers=values["ISSUERS"],
        certs_url=values["CERTS_URL"],
        clock_skew=values["CLOCK_SKEW"],
        trust_development_key=loading.configured_backend().trusts_development_tokens,
    )


conf.on_change(settings.cache_clear)


def push_token(
    auth: str | None, url: str, audience: str | None = None, *, app_engine: bool = False
) -> dict[str, str] | None:
    """Return the OIDC token Cloud Tasks adds to a push to ``url``, or None.

    Cloud Tasks mints one only for HTTP targets with ``auth="oidc"`` and only when
    ``CLOUDTASK["SAE"]`` names the service account; its audience is the push's ``audience``
    (``@task(audience=...)``, ``call.audience``, ``push_http(audience=...)``), else
    ``OIDC["AUDIENCE"]`` when set, else the URL. The local backend and ``capture_tasks()``
    follow the same rule, so a task that would be refused in production is refused in
    development too.
    """
    sae = conf.get("SAE")
    if app_engine or auth != "oidc" or not sae:
        return None
    audience = audience or conf.oidc_options().get("AUDIENCE") or url
    return {"service_account_email": sae, "audience": audience}
