"""Google's OIDC signing certificates, fetched once per process and kept as long as allowed.

One :class:`CertificateCache` per certificates URL, shared by every thread of the process:

- the first verification fetches ``{kid: PEM certificate}`` and parses each certificate once;
- the set is kept for the ``Cache-Control: max-age`` (less ``Age``) the endpoint answers
  with, bounded to :data:`MIN_MAX_AGE` .. :data:`MAX_MAX_AGE`;
- a token whose ``kid`` is not in a fresh set triggers one early refetch (Google has rotated
  its keys), at most once per :data:`REFETCH_INTERVAL`, so random ``kid`` values cannot make
  us hammer the endpoint;
- when a refetch fails, the expired set is still used for :data:`STALE_GRACE`; with nothing
  usable, :class:`~cloudtask.exceptions.CertificatesUnavailable` (503) lets Cloud Tasks retry;
- failed fetches are retried at most once per :data:`RETRY_INTERVAL`.

The caches are dropped whenever the settings change.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import conf
from ..exceptions import CertificatesUnavailable

logger = logging.getLogger("cloudtask")

#: Shortest and longest time a fetched set is used before it is fetched again (seconds).
MIN_MAX_AGE = 60.0
MAX_MAX_AGE = 24 * 3600.0
#: At most one early refetch for an unknown ``kid`` per this many seconds.
REFETCH_INTERVAL = 30.0
#: At most one fetch attempt per this many seconds after a failed one.
RETRY_INTERVAL = 5.0
#: How long past its expiry a set is still used while refetching it fails (seconds).
STALE_GRACE = 6 * 3600.0
#: Timeout of one fetch (seconds): a request waits for it at most this long.
FETCH_TIMEOUT = 5.0
#: The largest certificates document accepted (Google's is about 4 KB).
MAX_DOCUMENT = 256 * 1024

_MAX_AGE_RE = re.compile(r'(?:^|[,\s])max-age\s*=\s*"?([0-9]{1,10})', re.IGNORECASE)


class Verifier(Protocol):
    """What google-auth's ``crypt.RSAVerifier`` offers: check one signature."""

    def verify(self, message: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class _Snapshot:
    verifiers: Mapping[str, Verifier]
    fresh_until: float
    usable_until: float


class FetchFailed(Exception):
    """The certificates could not be fetched or parsed; the message says why."""


class CertificateCache:
    """The signing certificates published at one URL, as parsed verifiers."""

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None) -> None:
        self.url = url
        self.fetches = 0  # fetch attempts, successful or not
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._last_attempt = -math.inf
        self._last_failed = False

    def _now(self) -> float:
        # Looked up at call time so a frozen clock (freezegun) in tests applies.
        return self._clock() if self._clock is not None else time.monotonic()

    def verifier(self, kid: str) -> Verifier | None:
        """Return the verifier for ``kid``, or None when no certificate has that id.

        Raises CertificatesUnavailable when no usable certificate set can be had at all.
        """
        snapshot = self._snapshot
        if snapshot is not None and self._now() < snapshot.fresh_until:
            found = snapshot.verifiers.get(kid)
            if found is not None:
                return found
        return self._refresh(kid)

    def _refresh(self, kid: str) -> Verifier | None:
        if not self._lock.acquire(blocking=False):
            # Another thread is fetching: use what we have rather than queue behind it.
            stale = self._usable(self._now())
            if stale is not None and kid in stale.verifiers:
                return stale.verifiers[kid]
            if not self._lock.acquire(timeout=FETCH_TIMEOUT * 2):
                raise CertificatesUnavailable("timed out waiting for the OIDC certificates")
        try:
            now = self._now()
            if self._should_fetch(kid, now):
                self._fetch(now)
            snapshot = self._usable(now)
            if snapshot is None:
                raise CertificatesUnavailable("no OIDC signing certificates could be fetched")
            return snapshot.verifiers.get(kid)
        finally:
            self._lock.release()

    def _usable(self, now: float) -> _Snapshot | None:
        snapshot = self._snapshot
        return snapshot if snapshot is not None and now < snapshot.usable_until else None

    def _should_fetch(self, kid: str, now: float) -> bool:
        snapshot = self._snapshot
        since = now - self._last_attempt
        if snapshot is None or now >= snapshot.fresh_until:
            return not self._last_failed or since >= RETRY_INTERVAL
        if kid in snapshot.verifiers:
            return False  # another thread refreshed while this one waited
        return since >= REFETCH_INTERVAL

    def _fetch(self, now: float) -> None:
        self.fetches += 1
        self._last_attempt = now
        try:
            verifiers, max_age = download(self.url)
        except FetchFailed as exc:
            self._last_failed = True
            stale = "true" if self._usable(now) is not None else "false"
            logger.warning(
                "oidc certs_fetch=failed url=%s serving_stale=%s reason=%s", self.url, stale, exc
            )
            return
        self._last_failed = False
        self._snapshot = _Snapshot(verifiers, now + max_age, now + max_age + STALE_GRACE)
        logger.info(
            "oidc certs_fetch=ok url=%s keys=%d max_age_s=%d", self.url, len(verifiers), max_age
        )


def download(url: str) -> tuple[dict[str, Verifier], float]:
    """Fetch and parse ``{kid: PEM certificate}`` from ``url``; return it and its lifetime."""
    import requests

    chunks: list[bytes] = []
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT, stream=True) as response:
            if response.status_code != 200:
                raise FetchFailed(f"HTTP {response.status_code}")
            for chunk in response.iter_content(16 * 1024):
                chunks.append(chunk)
                if sum(map(len, chunks)) > MAX_DOCUMENT:
                    raise FetchFailed(f"document larger than {MAX_DOCUMENT} bytes")
            headers = response.headers
    except (requests.RequestException, OSError, ValueError) as exc:
        # RequestException covers connection, timeout and decoding failures; OSError and
        # ValueError what urllib3 or an invalid URL may still raise underneath.
        raise FetchFailed(f"{type(exc).__name__}: {exc}") from exc
    return parse_certificates(b"".join(chunks)), max_age(headers)


def parse_certificates(raw: bytes) -> dict[str, Verifier]:
    """Parse a v1 certificates document into one google-auth verifier per key id."""
    import json

    from google.auth import crypt

    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FetchFailed(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise FetchFailed("not a JSON object of key ids to PEM certificates")
    verifiers: dict[str, Verifier] = {}
    for kid, pem in document.items():
        try:
            verifiers[kid] = crypt.RSAVerifier.from_string(pem)  # type: ignore[no-untyped-call]
        except Exception as exc:  # a bad entry must not hide the good ones
            logger.warning("oidc certs_entry=skipped kid=%.80r reason=%s", kid, type(exc).__name__)
    if not verifiers:
        raise FetchFailed("no usable certificate in the document")
    return verifiers


def max_age(headers: Mapping[str, str]) -> float:
    """Return how long a response may be used: ``max-age`` less ``Age``, within bounds."""
    control = headers.get("Cache-Control") or ""
    match = _MAX_AGE_RE.search(control)
    if match is None or "no-store" in control.lower() or "no-cache" in control.lower():
        return MIN_MAX_AGE
    age = headers.get("Age") or "0"
    seconds = int(match.group(1)) - (int(age) if age.isascii() and age.isdigit() else 0)
    return min(max(float(seconds), MIN_MAX_AGE), MAX_MAX_AGE)


_caches: dict[str, CertificateCache] = {}
_caches_lock = threading.Lock()


def cache_for(url: str) -> CertificateCache:
    """Return the process-wide cache of the certificates published at ``url``."""
    found = _caches.get(url)
    if found is None:
        with _caches_lock:
            found = _caches.setdefault(url, CertificateCache(url))
    return found


@conf.on_change
def reset() -> None:
    """Forget every fetched certificate (the settings changed)."""
    with _caches_lock:
        _caches.clear()
