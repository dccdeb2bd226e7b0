"""Google OIDC ID tokens on the task endpoint: settings, verification, development tokens.

Cloud Tasks sends ``Authorization: Bearer <ID token>`` minted for ``CLOUDTASK["SAE"]``. When
OIDC is required (:func:`cloudtask.conf.oidc_required`), :func:`verify_request` accepts a
request only if its token is signed by one of Google's current keys (RS256, checked with
google-auth's verifier and certificates cached by :mod:`cloudtask.certs`) and its claims are
exactly right: ``aud`` equals the audience, ``iss`` is a Google issuer, ``email`` is an allowed
service account with ``email_verified`` true, and ``iat``/``exp`` hold within the clock skew.

With the local backend, tokens signed by the development key (:mod:`cloudtask.devkey`) are
trusted as well, so the local worker can authenticate the way Cloud Tasks does.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, lru_cache
from typing import Any, NoReturn, TypeGuard

from . import certs, conf, devkey
from .exceptions import ConfigurationError, InvalidToken

#: The header carrying the token, as Django exposes it in ``request.META``.
AUTHORIZATION_META_KEY = "HTTP_AUTHORIZATION"
DEFAULT_CLOCK_SKEW = timedelta(seconds=10)
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: How long development tokens are valid, like Google's ID tokens.
DEVELOPMENT_TOKEN_LIFETIME = 3600

# One scheme, one space, three base64url segments: anything else (including two headers a
# server joined with a comma) is refused before any decoding.
_BEARER_RE = re.compile(
    r"(?i:bearer) ([A-Za-z0-9_-]{2,4096})\.([A-Za-z0-9_-]{2,8192})\.([A-Za-z0-9_-]{2,4096})"
)


@dataclass(frozen=True)
class OidcSettings:
    """CLOUDTASK["OIDC"] resolved: every default applied, every value validated."""

    audience: str
    service_accounts: tuple[str, ...]
    issuers: tuple[str, ...]
    certs_url: str
    clock_skew: float
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
    path = conf.backend_path()
    if path != conf.CLOUD_TASKS_BACKEND:
        from .backends import load_backend

        return load_backend(path).default_url()
    raise ConfigurationError(
        "OIDC verification needs the token audience: set CLOUDTASK['OIDC']['AUDIENCE'] (or "
        "CLOUDTASK['URL']) to the endpoint's URL, e.g. 'https://app.example.com/_tasks/'."
    )


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
        trust_development_key=conf.backend_path() == conf.LOCAL_BACKEND,
    )


conf.on_change(settings.cache_clear)


def development_tokens_trusted() -> bool:
    """Return True inside ``capture_tasks()``, whose ``run_all()`` signs development tokens."""
    from .backends import development_tokens_trusted as trusted

    return trusted()


def verify_request(meta: Mapping[str, str]) -> str:
    """Verify the request's bearer token and return the service account it was minted for."""
    header = meta.get(AUTHORIZATION_META_KEY)
    if not header:
        raise InvalidToken("no Authorization header")
    match = _BEARER_RE.fullmatch(header)
    if match is None:
        raise InvalidToken("Authorization is not one 'Bearer <JWT>'")
    return verify_token(*match.groups(), options=settings())


def verify_token(
    encoded_header: str, encoded_payload: str, encoded_signature: str, *, options: OidcSettings
) -> str:
    """Check the signature, then the claims, of one token given as its three segments."""
    kid = _key_id(encoded_header)
    verifier = _verifier(kid, options)
    if verifier is None:
        raise InvalidToken(f"no certificate has kid {_shown(kid)}")
    signed = f"{encoded_header}.{encoded_payload}".encode("ascii")
    if not _signature_valid(verifier, signed, _b64(encoded_signature, "signature")):
        raise InvalidToken(f"signature does not verify (kid {_shown(kid)})")
    return check_claims(_json_segment(encoded_payload, "payload"), options)


def check_claims(payload: Mapping[str, Any], options: OidcSettings) -> str:
    """Check every claim exactly; return the verified ``email``."""
    now, skew = time.time(), options.clock_skew
    issued, expires = payload.get("iat"), payload.get("exp")
    if not (_is_time(issued) and _is_time(expires)):
        raise InvalidToken("iat or exp missing or not a number")
    if issued > now + skew:
        raise InvalidToken(f"issued in the future (iat {issued} > now {now:.0f})")
    if expires < now - skew:
        raise InvalidToken(f"expired (exp {expires} < now {now:.0f})")
    audience = payload.get("aud")
    if not isinstance(audience, str) or audience != options.audience:
        raise InvalidToken(f"aud is {_shown(audience)}, not {options.audience!r}")
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or issuer not in options.issuers:
        raise InvalidToken(f"iss {_shown(issuer)} is not one of {list(options.issuers)}")
    email = payload.get("email")
    if not isinstance(email, str) or email not in options.service_accounts:
        raise InvalidToken(f"email {_shown(email)} is not an allowed service account")
    if payload.get("email_verified") is not True:
        raise InvalidToken(f"email_verified is {_shown(payload.get('email_verified'))}")
    return email


def _verifier(kid: str, options: OidcSettings) -> certs.Verifier | None:
    if kid.startswith(devkey.KEY_ID_PREFIX):
        # A development token is refused outright where it is not trusted: no certs fetch.
        trusted = options.trust_development_key or development_tokens_trusted()
        return devkey.development_key().verifier if trusted and kid == devkey.key_id() else None
    return certs.cache_for(options.certs_url).verifier(kid)


def _signature_valid(verifier: certs.Verifier, signed: bytes, signature: bytes) -> bool:
    from google.auth.exceptions import GoogleAuthError

    try:
        return verifier.verify(signed, signature) is True
    except (ValueError, TypeError, GoogleAuthError):
        return False


@lru_cache(maxsize=32)
def _key_id(encoded_header: str) -> str:
    """Return the header's ``kid`` after checking ``alg`` (cached: headers repeat per key)."""
    header = _json_segment(encoded_header, "header")
    algorithm = header.get("alg")
    if algorithm != "RS256":
        # Before any key is touched: 'none', or HS256 keyed with a public certificate.
        raise InvalidToken(f"alg is {_shown(algorithm)}, not 'RS256'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("header has no kid")
    return kid


def _b64(segment: str, what: str) -> bytes:
    # The bearer pattern already limited segments to the base64url alphabet.
    try:
        raw = segment.encode("ascii").translate(_FROM_URLSAFE)
        return binascii.a2b_base64(raw + b"=" * (-len(segment) % 4))
    except binascii.Error:
        raise InvalidToken(f"{what} is not base64url") from None


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
# NaN and Infinity are not JSON: a token carrying them is refused, not compared.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(_b64(segment, what).decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidToken(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"{what} is not a JSON object")
    return value


def _is_time(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    """Return a claim value fit for a log line: quoted, escaped and short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def development_token(audience: str, email: str) -> str:
    """Return an ID token for ``email`` and ``audience`` signed with the development key.

    The endpoint accepts it only while the local backend is configured. An empty ``email``
    stands for the first allowed service account.
    """
    from google.auth import jwt

    try:
        issuer = read_setting("ISSUERS")[0]
        email = email or read_setting("SERVICE_ACCOUNTS")[0]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from exc
    now = int(time.time())
    payload = {
        "aud": audience,
        "iss": issuer,
        "sub": "cloudtask-development",
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + DEVELOPMENT_TOKEN_LIFETIME,
    }
    token: bytes = jwt.encode(devkey.development_key().signer, payload)  # type: ignore[no-untyped-call]
    return token.decode("ascii")
