"""Real OIDC material for tests: RSA keys, self-signed certificates, signed ID tokens, a
certificates endpoint on 127.0.0.1 in the format of Google's v1 certs (``{kid: PEM}``), settings
that require tokens, task requests posted with a token, and the fixtures ``certs_server`` and
``development_key_dir`` (loaded for every test by tests/conftest.py)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.test import Client
from google.auth import crypt, jwt

from cloudtask.backends.capture import CapturedTask
from cloudtask.oidc import devkey
from cloudtask.testing import capture_tasks
from tests import tasks

SERVICE_ACCOUNT = "invoker@my-project.iam.gserviceaccount.com"
#: Settings for capture_tasks() tests with OIDC required, the endpoint on the test client's host.
OIDC_ON = {
    "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
    "SAE": SERVICE_ACCOUNT,
    "URL": "http://testserver/_tasks/",
}
AUDIENCE = "https://app.example.com/_tasks/"
ISSUER = "https://accounts.google.com"


@dataclass(frozen=True)
class Key:
    """An RSA key pair with its key id and self-signed certificate (PEM)."""

    kid: str
    private_pem: str
    certificate_pem: str

    def signer(self) -> crypt.RSASigner:
        return _signer(self.private_pem, self.kid)


@cache
def _signer(private_pem: str, kid: str) -> crypt.RSASigner:
    # Parsing a private key costs milliseconds; tests sign many tokens with a few keys.
    return crypt.RSASigner.from_string(private_pem, key_id=kid)


@cache
def make_key(kid: str) -> Key:
    """Generate (once per kid and test run) an RSA key and a self-signed certificate."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(private, hashes.SHA256())
    )
    return Key(
        kid=kid,
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
    )


def claims(**overrides: Any) -> dict[str, Any]:
    """Return the claims of a good Cloud Tasks ID token, with ``overrides`` applied."""
    now = int(time.time())
    values: dict[str, Any] = {
        "aud": AUDIENCE,
        "iss": ISSUER,
        "sub": "104392281731001034829",
        "email": SERVICE_ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not _DROP}


_DROP = object()
DROP: Any = _DROP  # pass as a claim value to leave the claim out


def sign(key: Key, **overrides: Any) -> str:
    """Return an RS256 ID token signed by ``key`` with google-auth's own signer."""
    token: bytes = jwt.encode(key.signer(), claims(**overrides))
    return token.decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Return ``header.payload`` encoded as a JWT signing input."""
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())


def hs256_with_public_key(key: Key, **overrides: Any) -> str:
    """Return an HS256 token whose HMAC key is the public certificate (key confusion)."""
    signing_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims(**overrides))
    mac = hmac.new(key.certificate_pem.encode(), signing_input.encode(), hashlib.sha256)
    return signing_input + "." + b64(mac.digest())


def alg_none(key: Key, signature: str = "", **overrides: Any) -> str:
    """Return an unsigned token claiming ``alg: none``."""
    return unsigned({"alg": "none", "kid": key.kid}, claims(**overrides)) + "." + signature


def flip_signature_bit(token: str) -> str:
    """Return ``token`` with one bit of its signature flipped."""
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64(bytes(raw))}"


def tamper_payload(token: str, **changes: Any) -> str:
    """Return ``token`` with claims changed but the original signature kept."""
    head, payload, signature = token.split(".")
    values = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    values.update(changes)
    return f"{head}.{b64(json.dumps(values).encode())}.{signature}"


@dataclass
class CertsServer:
    """A real HTTP server on 127.0.0.1 serving ``{kid: PEM certificate}``.

    ``fetches`` counts GET requests; ``failing`` makes it answer 503; ``cache_control`` is
    sent as the Cache-Control header; ``delay`` slows every answer down; ``body`` replaces the
    document and ``extra_headers`` are added to the answer.
    """

    keys: list[Key]
    cache_control: str = "public, max-age=3600, must-revalidate, no-transform"
    failing: bool = False
    delay: float = 0.0
    body: bytes | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    fetches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/oauth2/v1/certs"

    def document(self) -> bytes:
        return json.dumps({key.kid: key.certificate_pem for key in self.keys}).encode()

    def start(self) -> CertsServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Google's endpoint offers
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between writes

            def do_GET(self) -> None:
                with owner._lock:
                    owner.fetches += 1
                time.sleep(owner.delay)  # a slow endpoint widens the window for races
                if owner.failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = owner.document() if owner.body is None else owner.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", owner.cache_control)
                for name, value in owner.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CertsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def oidc_settings(backend: str, certs_server: CertsServer, **extra: Any) -> dict[str, Any]:
    """Return CLOUDTASK settings requiring tokens for SERVICE_ACCOUNT and AUDIENCE."""
    return {
        "BACKEND": backend,
        "SAE": SERVICE_ACCOUNT,
        "URL": AUDIENCE,
        "OIDC": {"CERTS_URL": certs_server.url},
        **extra,
    }


def captured_request() -> CapturedTask:
    """Return a signed request for tests.tasks.record_request, as Cloud Tasks would send it."""
    with capture_tasks() as captured:
        tasks.record_request().delay()
    return captured[0]


def request_arguments(authorization: str | None = None) -> dict[str, Any]:
    """Return ``Client.post()`` arguments sending :func:`captured_request` over HTTPS."""
    request = captured_request()
    headers = dict(request.http_request.headers)
    content_type = headers.pop("Content-Type")
    if authorization is not None:
        headers["Authorization"] = authorization
    return {
        "path": request.path,
        "data": request.http_request.body,
        "content_type": content_type,
        "headers": headers,
        "secure": True,
    }


def post(token: str | None = None, *, authorization: str | None = None) -> Any:
    """POST a signed task request with ``Authorization: Bearer <token>`` through the view."""
    if token is not None:
        authorization = f"Bearer {token}"
    return Client(enforce_csrf_checks=True, raise_request_exception=False).post(
        **request_arguments(authorization)
    )


@pytest.fixture
def certs_server() -> Iterator[CertsServer]:
    """Google's certificates endpoint, stood in for on 127.0.0.1, publishing the key "k1"."""
    with CertsServer([make_key("k1")]) as running:
        yield running


@pytest.fixture
def development_key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give the test a temporary directory of its own, where the development key file goes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    devkey.development_key.cache_clear()
    return tmp_path
