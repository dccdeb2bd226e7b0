"""Verifying the Google OIDC ID token of a task request.

Cloud Tasks sends ``Authorization: Bearer <ID token>`` minted for ``CLOUDTASK["SAE"]``. When
OIDC is required (:func:`cloudtask.conf.oidc_required`), :func:`verify_request` accepts a
request only if its token is signed by one of Google's current keys (RS256, checked with
google-auth's verifier and certificates cached by :mod:`cloudtask.oidc.certs`) and its claims are
exactly right: ``aud`` equals the audience (``OIDC["AUDIENCE"]``, or one a registered task
declares with ``@task(audience=...)``), ``iss`` is a Google issuer, ``email`` is an allowed
service account with ``email_verified`` true, and ``iat``/``exp`` hold within the clock skew.

Where the backend declares ``trusts_development_tokens`` (the local queue, ``capture_tasks()``),
tokens signed by the development key (:mod:`cloudtask.oidc.devkey`) are trusted as well, so the
local worker can authenticate the way Cloud Tasks does.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import math
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple, NoReturn, TypeGuard

from .. import conf
from ..backends import loading
from ..exceptions import InvalidToken
from ..registry import registry
from . import certs, devkey
from .config import OidcSettings, settings

#: The header carrying the token, as Django exposes it in ``request.META``.
AUTHORIZATION_META_KEY = "HTTP_AUTHORIZATION"

# One scheme, one space, three base64url segments: anything else (including two headers a
# server joined with a comma) is refused before any decoding.
_BEARER_RE = re.compile(
    r"(?i:bearer) ([A-Za-z0-9_-]{2,4096})\.([A-Za-z0-9_-]{2,8192})\.([A-Za-z0-9_-]{2,4096})"
)


#: How many tokens whose signature verified are kept (Cloud Tasks reuses a token while it lasts).
MAX_VERIFIED = 1024


class _Verified(NamedTuple):
    """A token whose signature verified: the key that verified it, and its decoded claims."""

    kid: str
    verifier: certs.Verifier
    payload: dict[str, Any]


#: Exact Authorization header -> its verified signature. Only a signature that verified is
#: kept, never a failure; the claims (expiry, audience, account) are checked on every request.
_verified: dict[str, _Verified] = {}


def verify_request(meta: Mapping[str, str]) -> str:
    """Verify the request's bearer token and return the service account it was minted for.

    A token seen before skips the signature check, as long as the key that verified it is
    still the current one for its ``kid`` (a new certificate set makes new verifiers, so key
    rotation and a lost development-key trust take effect at once). Its claims are checked
    again every time, against the settings of now.
    """
    header = meta.get(AUTHORIZATION_META_KEY)
    if not header:
        raise InvalidToken("no Authorization header")
    options = settings()
    known = _verified.get(header)
    if known is not None and _verifier(known.kid, options) is known.verifier:
        return check_claims(known.payload, options)
    match = _BEARER_RE.fullmatch(header)
    if match is None:
        raise InvalidToken("Authorization is not one 'Bearer <JWT>'")
    return verify_token(*match.groups(), options=options, remember_as=header)


def verify_token(
    encoded_header: str,
    encoded_payload: str,
    encoded_signature: str,
    *,
    options: OidcSettings,
    remember_as: str | None = None,
) -> str:
    """Check the signature, then the claims, of one token given as its three segments.

    With ``remember_as``, a signature that verifies is kept under that key for
    :func:`verify_request`.
    """
    kid = _key_id(encoded_header)
    verifier = _verifier(kid, options)
    if verifier is None:
        raise InvalidToken(f"no certificate has kid {_shown(kid)}")
    signed = f"{encoded_header}.{encoded_payload}".encode("ascii")
    if not _signature_valid(verifier, signed, _b64(encoded_signature, "signature")):
        raise InvalidToken(f"signature does not verify (kid {_shown(kid)})")
    payload = _json_segment(encoded_payload, "payload")
    if remember_as is not None:
        _remember(remember_as, _Verified(kid, verifier, payload))
    return check_claims(payload, options)


def _remember(key: str, verified: _Verified) -> None:
    if len(_verified) >= MAX_VERIFIED:
        # Drop the oldest first; a token still in use is verified again on its next request.
        # Another thread may change the dict meanwhile: nothing is lost but a cache entry.
        with contextlib.suppress(KeyError, StopIteration, RuntimeError):
            del _verified[next(iter(_verified))]
    _verified[key] = verified


@conf.on_change
def forget_verified() -> None:
    """Forget every verified token (the settings changed)."""
    _verified.clear()


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
    if not isinstance(audience, str) or (
        audience != options.audience and audience not in registry.audiences()
    ):
        raise InvalidToken(
            f"aud is {_shown(audience)}, not {options.audience!r} or a task's audience"
        )
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
        trusted = options.trust_development_key or loading.overridden_by_trusting_backend()
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


#: Seconds since the epoch beyond any real token's times (the year 2286 and later).
_MAX_TIME = 10**10


def _is_time(value: Any) -> TypeGuard[float]:
    # Bounded before any float conversion: 10**400 would overflow one.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -_MAX_TIME < value < _MAX_TIME if isinstance(value, int) else math.isfinite(value)


def _shown(value: Any) -> str:
    """Return a claim value fit for a log line: quoted, escaped and short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
