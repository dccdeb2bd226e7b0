"""Random bodies and headers: never a 500, never an execution without a valid signature."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloudtask import signing
from tests import tasks
from tests.support.handlers import call_asgi, call_wsgi
from tests.support.helpers import ENDPOINT, post

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
task_names = st.sampled_from(
    [
        "tests.tasks.add",
        "tests.tasks.noop",
        "tests.tasks.echo",
        "tests.tasks.record_request",
        "os.system",
        "",
    ]
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None, True]),
        "task": task_names | st.integers(),
        "id": st.text(max_size=10) | st.integers(),
        "args": st.lists(json_values, max_size=3) | json_values,
        "kwargs": st.dictionaries(st.sampled_from(["a", "b", "c", "to"]), json_values, max_size=3)
        | json_values,
    },
)
complete_envelopes = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "task": task_names,
        "id": st.text(max_size=10),
        "args": st.lists(json_values, max_size=3),
        "kwargs": st.dictionaries(st.sampled_from(["a", "b", "c", "to"]), json_values, max_size=3),
    }
)
bodies = (
    complete_envelopes.map(lambda e: json.dumps(e).encode())
    | st.binary(max_size=300)
    | envelopes.map(lambda e: json.dumps(e).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30
) | st.sampled_from(["abc", "-1", "1e999", "nan", "99999999999", ""])
cloud_headers = st.dictionaries(
    st.sampled_from(
        [
            "X-CloudTasks-TaskRetryCount",
            "X-CloudTasks-TaskExecutionCount",
            "X-CloudTasks-TaskETA",
            "X-CloudTasks-TaskPreviousResponse",
            "X-CloudTasks-TaskRetryReason",
            "X-CloudTasks-QueueName",
            "X-CloudTasks-TaskName",
        ]
    ),
    header_values,
    max_size=7,
)
signatures = (
    st.none()
    | header_values
    | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "v1=" + h)
)

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=bodies, headers=cloud_headers, signature=signatures)
def test_unsigned_or_badly_signed_requests_never_run(
    body: bytes, headers: dict[str, str], signature: str | None
) -> None:
    tasks.calls.clear()
    response = post(body, signature=signature, headers=headers)
    assert response.status_code in (403, 413)
    assert tasks.calls == []


@FUZZ
@given(body=bodies, headers=cloud_headers)
def test_validly_signed_random_requests_never_answer_500(
    body: bytes, headers: dict[str, str]
) -> None:
    tasks.calls.clear()
    response = post(body, headers=headers)
    assert response.status_code in (200, 400, 404, 500)
    assert response["Content-Type"] == "application/json"
    if response.status_code in (400, 404):
        assert tasks.calls == []
    if response.status_code == 500:
        # Only the task's own exception may answer 500 (e.g. add(a="x", b=1)).
        assert tasks.calls != []
        assert response.json()["status"] == "failed"
    assert signing.sign(ENDPOINT, body)[3:] not in response.content.decode()


# The whole request, through Django's own WSGI and ASGI handlers: method, path, headers, body
# bytes and framing all vary; only an untouched signed request may run anything.
methods = st.sampled_from(["POST"] * 6 + ["GET", "HEAD", "PUT", "OPTIONS", "PATCH", "DELETE"])
tampering = st.sampled_from(["none", "none", "body", "path", "signature", "no-signature"])
lengths = st.sampled_from(["exact", "exact", "absent", "shorter", "longer"]) | header_values
other_headers = st.lists(
    st.tuples(
        st.sampled_from(
            ["Content-Type", "Authorization", "Transfer-Encoding", "X-Forwarded-For", "Cookie"]
        ),
        header_values,
    ),
    max_size=3,
)


def _tamper(kind: str, body: bytes, path: str, signature: str) -> tuple[bytes, str, str | None]:
    if kind == "body":
        # In front: a Content-Length one byte short must not cut the change off again, which
        # would leave the server reading exactly the signed body.
        return b" " + body, path, signature
    if kind == "path":
        return body, path + "x/", signature
    if kind == "signature":
        return body, path, signature[:-1] + ("0" if signature[-1] != "0" else "1")
    if kind == "no-signature":
        return body, path, None
    return body, path, signature


def _content_length(kind: str, body: bytes) -> str | None:
    sizes = {"exact": len(body), "shorter": max(len(body) - 1, 0), "longer": len(body) + 7}
    if kind == "absent":
        return None
    return str(sizes[kind]) if kind in sizes else kind


@FUZZ
@example(  # a tampered body whose declared length is one byte short
    transport="wsgi",
    method="POST",
    body=b'{"v": 1, "task": "tests.tasks.add", "id": "0", "args": [], "kwargs": {}}',
    tamper="body",
    length="shorter",
    extra=[],
    cloud={},
    chunk=1,
)
@given(
    transport=st.sampled_from(["wsgi", "asgi"]),
    method=methods,
    body=bodies,
    tamper=tampering,
    length=lengths,
    extra=other_headers,
    cloud=cloud_headers,
    chunk=st.integers(min_value=1, max_value=64),
)
def test_whole_requests_never_answer_500_and_never_run_unless_signed(
    transport: str,
    method: str,
    body: bytes,
    tamper: str,
    length: str,
    extra: list[tuple[str, str]],
    cloud: dict[str, str],
    chunk: int,
) -> None:
    tasks.calls.clear()
    signature = signing.sign(ENDPOINT, body)
    sent_body, path, sent_signature = _tamper(tamper, body, ENDPOINT, signature)
    headers = [*extra, *cloud.items()]
    if sent_signature is not None:
        headers.append((signing.SIGNATURE_HEADER, sent_signature))
    declared = _content_length(length, sent_body)
    if declared is not None:
        headers.append(("Content-Length", declared))
    if transport == "wsgi":
        answer = call_wsgi(method, path, headers, sent_body)
    else:
        pieces = [sent_body[i : i + chunk] for i in range(0, len(sent_body), chunk)]
        answer = call_asgi(method, path, headers, pieces)

    if tamper != "none" or method != "POST":
        assert tasks.calls == []
    if answer.status == 500:
        # Only the task's own exception may answer 500, and then as the endpoint's JSON.
        assert tasks.calls != []
        assert json.loads(answer.body)["status"] == "failed"
    assert signature[3:] not in answer.body.decode("utf-8", "replace")
