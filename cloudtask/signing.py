"""HMAC-SHA256 signatures over the task request.

The signature covers the target path and the body. The body carries the task's registry
name, its arguments and the call id, so a signature taken from one request cannot be
replayed onto another task, other arguments or another endpoint. Headers (other than the
signature itself) and the query string are not covered.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from . import conf
from .exceptions import AuthenticationFailed, ConfigurationError

#: Header carrying the signature, as sent (``X-CloudTask-Signature: v1=<hex>``).
SIGNATURE_HEADER = "X-CloudTask-Signature"
#: The same header as Django exposes it in ``request.META``.
SIGNATURE_META_KEY = "HTTP_X_CLOUDTASK_SIGNATURE"

#: The signed body field with the Unix time after which the endpoint refuses the body.
EXPIRES_FIELD = "exp"
_SIGNATURE_RE = re.compile(r"v1=([0-9a-f]{64})")
_DERIVATION_SALT = b"cloudtask.signing.v1"


def _derive(secret_key: str | bytes) -> bytes:
    """Derive a signing key from a Django SECRET_KEY, so the raw key never signs tasks."""
    raw = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(raw, _DERIVATION_SALT, hashlib.sha256).digest()


def _as_key(value: object, what: str) -> bytes:
    if isinstance(value, bytes) and value:
        return value
    if isinstance(value, str) and value:
        return value.encode()
    raise ConfigurationError(f"{what} must be a non-empty string.")


@cache
def keys() -> tuple[bytes, ...]:
    """Return the signing key first, then every key still accepted for verification."""
    secret = conf.get("SECRET")
    fallbacks = conf.get("SECRET_FALLBACKS")
    if not isinstance(fallbacks, list | tuple):
        raise ConfigurationError(
            "CLOUDTASK['SECRET_FALLBACKS'] must be a list of strings (older secrets still "
            "accepted while tasks signed with them drain)."
        )
    found = [_as_key(v, "Each CLOUDTASK['SECRET_FALLBACKS'] entry") for v in fallbacks]
    accept_derived = conf.get("ACCEPT_DERIVED_KEY")
    if not isinstance(accept_derived, bool):
        raise ConfigurationError(
            f"CLOUDTASK['ACCEPT_DERIVED_KEY'] must be True or False, not {accept_derived!r}."
        )
    if secret is not None:
        # Switching to an explicit SECRET: tasks queued before were signed with the derived key.
        accepted = _derived_keys() if accept_derived else []
        return (_as_key(secret, "CLOUDTASK['SECRET']"), *found, *accepted)
    derived = _derived_keys()
    if not derived:
        raise ConfigurationError(
            "Set CLOUDTASK['SECRET'] or Django's SECRET_KEY: tasks are signed with one of them."
        )
    return (derived[0], *found, *derived[1:])


def _derived_keys() -> list[bytes]:
    """Return the keys derived from SECRET_KEY and SECRET_KEY_FALLBACKS ([] without a key)."""
    try:
        secret_key = django_settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses an empty SECRET_KEY on access.
        secret_key = ""
    if not secret_key:
        return []
    fallbacks = getattr(django_settings, "SECRET_KEY_FALLBACKS", [])
    return [_derive(k) for k in [secret_key, *fallbacks]]


conf.on_change(keys.cache_clear)


def _mac(key: bytes, path: str, body: bytes) -> str:
    # One-shot hmac.digest runs in C; the message is small enough to concatenate.
    message = b"cloudtask-v1\n" + path.encode("utf-8", "surrogateescape") + b"\n" + body
    return hmac.digest(key, message, "sha256").hex()


def sign(path: str, body: bytes) -> str:
    """Return the signature header value for a body sent to ``path``."""
    return "v1=" + _mac(keys()[0], path, body)


def verify(path: str, body: bytes, header: str | None) -> None:
    """Raise AuthenticationFailed unless ``header`` signs ``body`` for ``path``."""
    if not header:
        raise AuthenticationFailed(f"missing {SIGNATURE_HEADER} header")
    match = _SIGNATURE_RE.fullmatch(header)
    if match is None:
        raise AuthenticationFailed(f"malformed {SIGNATURE_HEADER} header")
    given = match.group(1)
    # Every key is tried so the time taken does not tell which one (if any) matched.
    valid = False
    for key in keys():
        valid |= hmac.compare_digest(_mac(key, path, body), given)
    if not valid:
        raise AuthenticationFailed("signature does not match")


def expires(first_delivery: datetime | None) -> int | None:
    """Return the ``exp`` to sign into a body, or None while SIGNATURE_MAX_AGE is unset.

    The age counts from the first planned delivery (the ETA, or now), so a task scheduled
    for next week is not refused on arrival.
    """
    max_age = conf.signature_max_age()
    if max_age is None:
        return None
    start = first_delivery.timestamp() if first_delivery is not None else time.time()
    return math.ceil(start + max_age.total_seconds())


def check_expiry(fields: Mapping[str, Any], *, required: bool = True) -> None:
    """Raise AuthenticationFailed if a verified body's ``exp`` has passed.

    A body that carries ``exp`` is held to it whatever this side's setting; while
    SIGNATURE_MAX_AGE is set, a body without one is refused as well, unless ``required`` is
    False (a Cloud Scheduler job's body, which is sent again at every run).
    """
    expiry = fields.get(EXPIRES_FIELD)
    if expiry is None:
        if required and conf.signature_max_age() is not None:
            raise AuthenticationFailed(
                "signed body has no expiry while CLOUDTASK['SIGNATURE_MAX_AGE'] is set"
            )
        return
    if type(expiry) is not int:
        raise AuthenticationFailed(f"signed body's {EXPIRES_FIELD!r} is not a Unix time")
    if time.time() > expiry:
        raise AuthenticationFailed("signature expired (CLOUDTASK['SIGNATURE_MAX_AGE'])")
