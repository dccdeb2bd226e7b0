"""How a body arrives: chunked on ASGI, a Content-Length that lies, on WSGI and ASGI alike."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.test import override_settings

from cloudtask import signing
from tests import tasks
from tests.support.handlers import call_asgi, call_wsgi
from tests.support.helpers import ENDPOINT


def signed_headers(body: bytes, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        (signing.SIGNATURE_HEADER, signing.sign(ENDPOINT, body)),
        *extra,
    ]


def add_body(pad: int = 0) -> bytes:
    data = {"v": 1, "task": "tests.tasks.add", "id": "c1", "kwargs": {"a": 1, "b": 2}}
    return json.dumps({**data, "pad": "x" * pad}).encode()


def chunks_of(body: bytes, size: int = 1000) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def test_a_chunked_body_within_the_limit_runs_on_asgi() -> None:
    body = add_body(pad=5000)
    answer = call_asgi("POST", ENDPOINT, signed_headers(body), chunks_of(body))
    assert answer.status == 200, answer.body
    assert tasks.calls == [("add", (1, 2))]


@override_settings(CLOUDTASK={"MAX_BODY_SIZE": 2000})
def test_a_signed_chunked_body_over_the_limit_is_refused_on_asgi() -> None:
    body = add_body(pad=5000)
    answer = call_asgi("POST", ENDPOINT, signed_headers(body), chunks_of(body))
    assert answer.status == 413
    assert json.loads(answer.body)["detail"] == (
        "body is over 2000 bytes; CLOUDTASK['MAX_BODY_SIZE'] is 2000"
    )
    assert tasks.calls == []


@override_settings(CLOUDTASK={"MAX_BODY_SIZE": 2000})
def test_an_unsigned_body_over_the_limit_is_refused_before_any_hmac_on_asgi() -> None:
    body = b"x" * 50_000
    with mock.patch.object(signing, "verify", wraps=signing.verify) as verify:
        answer = call_asgi("POST", ENDPOINT, [("Content-Type", "application/json")], [body])
    assert answer.status == 413
    verify.assert_not_called()


@override_settings(CLOUDTASK={"MAX_BODY_SIZE": 2000})
@pytest.mark.parametrize("call", [call_asgi, call_wsgi], ids=["asgi", "wsgi"])
def test_a_content_length_shorter_than_the_body_never_lets_more_than_the_limit_in(
    call: object,
) -> None:
    body = add_body(pad=5000)
    headers = signed_headers(body, ("Content-Length", "100"))
    payload = [body] if call is call_asgi else body
    answer = call("POST", ENDPOINT, headers, payload)  # type: ignore[operator]
    # WSGI reads the 100 bytes declared (the signature fails); ASGI has the whole body and
    # reads one byte over the limit.
    assert answer.status in (403, 413)
    assert tasks.calls == []


@pytest.mark.parametrize("call", [call_asgi, call_wsgi], ids=["asgi", "wsgi"])
def test_a_content_length_longer_than_the_body_is_not_a_server_error(call: object) -> None:
    body = add_body()
    headers = signed_headers(body, ("Content-Length", str(len(body) + 500)))
    payload = [body] if call is call_asgi else body
    answer = call("POST", ENDPOINT, headers, payload)  # type: ignore[operator]
    # The bytes that arrived are the signed ones: the call runs.
    assert answer.status == 200, answer.body
    assert tasks.calls == [("add", (1, 2))]
