"""A fake of the Google endpoints that need Google: metadata server, OAuth token, IAM credentials.

A real HTTP server on 127.0.0.1. google-auth talks to it as to Google when pointed at it:
``GCE_METADATA_HOST``/``GCE_METADATA_IP`` for the metadata server, a credentials file's
``token_uri`` for the OAuth token endpoint, and an IAM endpoint override for
``generateAccessToken``. Each answer has the shape Google documents for it; the facts the
tests stand on are those shapes (metadata paths and the ``Metadata-Flavor`` header, the
token endpoint's JSON, IAM's ``accessToken``/``expireTime`` and its PERMISSION_DENIED error).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METADATA_PREFIX = "/computeMetadata/v1/"
GENERATE = ":generateAccessToken"
#: What IAM answers when the caller may not act as the service account.
DENIED = {
    "error": {
        "code": 403,
        "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
        "(or it may not exist).",
        "status": "PERMISSION_DENIED",
    }
}


class FakeGoogle:
    """The metadata server, the OAuth token endpoint and IAM's generateAccessToken."""

    def __init__(self, metadata: dict[str, str] | None = None) -> None:
        #: Metadata paths (``project/project-id``, ``instance/region``) to their values.
        self.metadata = dict(metadata or {})
        #: Whether IAM lets the caller act as the service account.
        self.impersonation_allowed = True
        #: Every request: (method, path, headers with lowercase names, body).
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.record(self, b"")
                if self.headers.get("Metadata-Flavor") != "Google":
                    self.answer(403, b"Missing Metadata-Flavor")
                elif self.path == "/":  # google-auth's "is this Google Cloud?" ping
                    self.answer(200, b"", "application/text")
                elif self.path.startswith(METADATA_PREFIX):
                    value = owner.metadata.get(self.path.removeprefix(METADATA_PREFIX))
                    status = 404 if value is None else 200
                    self.answer(status, (value or "").encode(), "application/text")
                else:
                    self.answer(404, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.record(self, body)
                if self.path == "/token":
                    token = {
                        "access_token": "source-token",
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    }
                    self.answer(200, json.dumps(token).encode())
                elif self.path.endswith(GENERATE) and owner.impersonation_allowed:
                    token = {
                        "accessToken": "impersonated-token",
                        "expireTime": "2099-01-01T00:00:00Z",
                    }
                    self.answer(200, json.dumps(token).encode())
                elif self.path.endswith(GENERATE):
                    self.answer(403, json.dumps(DENIED).encode())
                else:
                    self.answer(404, b"")

            def answer(
                self, status: int, body: bytes, content_type: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def record(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            headers = {key.lower(): value for key, value in handler.headers.items()}
            self.requests.append((handler.command, handler.path, headers, body))

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, path, _, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
