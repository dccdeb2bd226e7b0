"""The development RSA key that signs OIDC tokens for the local queue.

The local worker (``manage.py cloudtask_worker``) and the web server are different processes,
so they must share the key. It lives in a PEM file in the temporary directory, named after
a hash of the task signing key (``signing.keys()[0]``): processes that share the CLOUDTASK
settings find the same file; other projects on the machine get their own. The first process
that needs the key generates it and publishes it atomically (written to a private temporary
file with mode 0600, then hard-linked into place, so two processes racing never see half a
file and never replace each other's key). A file that is not a regular file owned by the
current user with no permissions for others is refused.

The verifier trusts this key only where the backend declares ``trusts_development_tokens``
(the local backend, ``capture_tasks()``): with the Cloud Tasks backend, a token signed with it
is an unknown key id like any other.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .. import conf, signing
from ..exceptions import ConfigurationError
from .certs import Verifier
from .config import read_setting

#: Key ids of development keys start with this, so logs say where a token came from.
KEY_ID_PREFIX = "cloudtask-development-"
KEY_BITS = 2048
_MAX_FILE = 64 * 1024
_create_lock = threading.Lock()
#: How long development tokens are valid, like Google's ID tokens.
DEVELOPMENT_TOKEN_LIFETIME = 3600
#: How long one development token is reused (tokens live an hour).
TOKEN_REUSE = 300.0
_tokens: dict[tuple[str, str], tuple[str, float]] = {}
_token_lock = threading.Lock()


@dataclass(frozen=True)
class DevelopmentKey:
    """The shared development key: its id, signer and verifier (google-auth objects)."""

    key_id: str
    path: Path
    signer: Any
    verifier: Verifier


def fingerprint() -> str:
    """Return a hash of the task signing key that names the development key."""
    digest = hashlib.sha256(b"cloudtask.oidc.development-key\n" + signing.keys()[0])
    return digest.hexdigest()[:24]


@cache
def key_id() -> str:
    """Return the ``kid`` of the development key for the current settings."""
    return KEY_ID_PREFIX + fingerprint()


def key_path() -> Path:
    """Return where the development key of the current settings is kept."""
    return Path(tempfile.gettempdir()) / f"cloudtask-oidc-{fingerprint()}.pem"


@cache
def development_key() -> DevelopmentKey:
    """Load the development key, generating and publishing it on first use."""
    from google.auth import crypt

    path = key_path()
    with _create_lock:
        try:
            pem = _read_private(path) if path.exists() else _publish(path, _generate())
        except OSError as exc:
            raise ConfigurationError(
                f"Could not create the OIDC development key in {path.parent} ({exc}); set "
                "TMPDIR to a directory this user can write to."
            ) from exc
    try:
        signer = crypt.RSASigner.from_string(pem, key_id=key_id())  # type: ignore[no-untyped-call]
        public = _public_pem(pem)
    except (ValueError, TypeError) as exc:
        raise _refused(path, "not a PEM RSA private key") from exc
    verifier = crypt.RSAVerifier.from_string(public)  # type: ignore[no-untyped-call]
    return DevelopmentKey(key_id=key_id(), path=path, signer=signer, verifier=verifier)


conf.on_change(key_id.cache_clear)
conf.on_change(development_key.cache_clear)
conf.on_change(_tokens.clear)


def authorization(token: Mapping[str, str] | None) -> dict[str, str]:
    """Return the Authorization header standing in for the OIDC token Cloud Tasks would add.

    ``token`` is what :func:`cloudtask.oidc.push_token` returned at push time: the same
    service account and audience, signed with the development key. None: no header, as
    Cloud Tasks sends none.
    """
    if token is None:
        return {}
    key = (token["audience"], token["service_account_email"])
    with _token_lock:
        value, renew_at = _tokens.get(key, ("", 0.0))
        if time.monotonic() >= renew_at:
            # Reused for a few minutes: signing costs more than the request it goes with.
            value = development_token(*key)
            _tokens[key] = (value, time.monotonic() + TOKEN_REUSE)
    return {"Authorization": f"Bearer {value}"}


def development_token(audience: str, email: str) -> str:
    """Return an ID token for ``email`` and ``audience`` signed with the development key.

    The endpoint accepts it only where the backend trusts development tokens. An empty ``email``
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
    token: bytes = jwt.encode(development_key().signer, payload)  # type: ignore[no-untyped-call]
    return token.decode("ascii")


def _cryptography() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as exc:
        raise ConfigurationError(
            "OIDC tokens for the local queue are signed with a development RSA key, which "
            "needs the 'cryptography' package: pip install cryptography"
        ) from exc
    return serialization, rsa


def _generate() -> bytes:
    serialization, rsa = _cryptography()
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def _public_pem(private_pem: bytes) -> bytes:
    serialization, _ = _cryptography()
    key = serialization.load_pem_private_key(private_pem, password=None)
    public: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public


def _publish(path: Path, pem: bytes) -> bytes:
    """Publish ``pem`` at ``path`` unless another process did first; return the winner."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(staging, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(staging, path)  # fails if the file exists: the first key stays
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigurationError(
                f"Could not publish the OIDC development key at {path} ({exc}); set TMPDIR "
                "to a directory on a file system that supports hard links."
            ) from exc
    finally:
        staging.unlink(missing_ok=True)
    return _read_private(path)


def _read_private(path: Path) -> bytes:
    """Read the key file, refusing one that another user could have written or read."""
    # No symlinks, and no blocking on a FIFO someone may have planted under that name.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _refused(path, exc.strerror or type(exc).__name__) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _refused(path, "not a regular file")
        if os.name == "posix" and (
            info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077
        ):
            raise _refused(path, "not owned by this user with mode 0600")
        return handle.read(_MAX_FILE)


def _refused(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"Refusing the OIDC development key {path}: {why}. Delete it; it is recreated on next use."
    )
