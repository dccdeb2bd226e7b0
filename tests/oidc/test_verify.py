"""Verifying tokens on the endpoint: claims, signatures, headers, algorithms, the 503 paths."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, override_settings
from freezegun import freeze_time

from cloudtask import conf, signing
from tests import tasks
from tests.support.oidc import (
    AUDIENCE,
    DROP,
    SERVICE_ACCOUNT,
    CertsServer,
    Key,
    alg_none,
    captured_request,
    flip_signature_bit,
    hs256_with_public_key,
    make_key,
    post,
    request_arguments,
    sign,
    tamper_payload,
)

GENERIC_403 = {
    "status": "error",
    "error": "forbidden",
    "detail": "invalid or missing OIDC token",
}


pytestmark = pytest.mark.usefixtures("tokens_required")


def assert_refused(response: Any, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    assert response.status_code == 403
    assert response.json() == GENERIC_403
    assert tasks.calls == []
    refusals = [r.getMessage() for r in caplog.records if "status=refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "code=forbidden" in refusals[0]
    assert reason in refusals[0]


def test_good_token_runs_the_task_and_exposes_the_identity(key: Key) -> None:
    response = post(sign(key))
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    [(name, request)] = tasks.calls
    assert name == "record_request"
    assert request.oidc_email == SERVICE_ACCOUNT


def test_both_google_issuers_are_accepted(key: Key) -> None:
    assert post(sign(key, iss="https://accounts.google.com")).status_code == 200
    assert post(sign(key, iss="accounts.google.com")).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"aud": "https://other.example.com/_tasks/"},
            "aud is 'https://other.example.com/_tasks/', not 'https://app.example.com/_tasks/'",
        ),
        ({"aud": "https://app.example.com/_tasks"}, "aud is 'https://app.example.com/_tasks',"),
        ({"aud": [AUDIENCE]}, "aud is ['https://app.example.com/_tasks/'], not"),
        ({"aud": DROP}, "aud is None, not"),
        ({"iss": "https://evil.example.com"}, "iss 'https://evil.example.com' is not one of"),
        ({"iss": DROP}, "iss None is not one of"),
        (
            {"email": "intruder@other.iam.gserviceaccount.com"},
            "email 'intruder@other.iam.gserviceaccount.com' is not an allowed service account",
        ),
        ({"email": DROP}, "email None is not an allowed service account"),
        ({"email_verified": False}, "email_verified is False"),
        ({"email_verified": "true"}, "email_verified is 'true'"),
        ({"email_verified": DROP}, "email_verified is None"),
        ({"exp": DROP}, "iat or exp missing or not a number"),
        ({"iat": "now"}, "iat or exp missing or not a number"),
        ({"iat": True}, "iat or exp missing or not a number"),
        # Beyond any float: comparing or logging them must not overflow into a 500.
        ({"exp": 10**400}, "iat or exp missing or not a number"),
        ({"iat": -(10**400)}, "iat or exp missing or not a number"),
        ({"exp": 10**10}, "iat or exp missing or not a number"),
    ],
)
def test_wrong_claims_are_refused(
    key: Key, caplog: pytest.LogCaptureFixture, overrides: dict[str, Any], reason: str
) -> None:
    token = sign(key, **overrides)
    response = post(token)
    assert_refused(response, caplog, reason)
    assert token.split(".")[2] not in caplog.text


def test_expired_token_is_refused_past_the_clock_skew(
    key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    with freeze_time("2026-01-01 12:00:00") as frozen:
        token = sign(key)
        frozen.tick(3600 + 9)  # expired 9 s ago: inside the 10 s skew
        assert post(token).status_code == 200
        tasks.calls.clear()
        frozen.tick(2)  # 11 s ago
        assert_refused(post(token), caplog, "expired (exp ")


def test_token_issued_in_the_future_is_refused_past_the_clock_skew(
    key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    with freeze_time("2026-01-01 12:00:00"):
        now = int(time.time())
        assert post(sign(key, iat=now + 10)).status_code == 200
        tasks.calls.clear()
        assert_refused(post(sign(key, iat=now + 11)), caplog, "issued in the future")


def test_clock_skew_is_configurable(key: Key, certs_server: CertsServer) -> None:
    oidc = {"CERTS_URL": certs_server.url, "CLOCK_SKEW": 0}
    with (
        override_settings(CLOUDTASK={**conf.user_settings(), "OIDC": oidc}),
        freeze_time("2026-01-01 12:00:00") as frozen,
    ):
        token = sign(key)
        frozen.tick(3601)
        assert post(token).status_code == 403


def test_tampered_payload_is_refused(key: Key, caplog: pytest.LogCaptureFixture) -> None:
    token = tamper_payload(sign(key, email="someone@else.example"), email=SERVICE_ACCOUNT)
    assert_refused(post(token), caplog, "signature does not verify (kid 'k1')")


def test_flipped_signature_bit_is_refused(key: Key, caplog: pytest.LogCaptureFixture) -> None:
    assert_refused(post(flip_signature_bit(sign(key))), caplog, "signature does not verify")


def test_unknown_kid_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    assert_refused(post(sign(make_key("k9"))), caplog, "no certificate has kid 'k9'")


def test_another_key_under_a_known_kid_is_refused(
    key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    impostor = make_key("impostor")
    forged = Key(kid=key.kid, private_pem=impostor.private_pem, certificate_pem="")
    assert_refused(post(sign(forged)), caplog, "signature does not verify (kid 'k1')")


def test_alg_none_is_refused(key: Key, caplog: pytest.LogCaptureFixture) -> None:
    assert_refused(post(alg_none(key, signature="AAAA")), caplog, "alg is 'none', not 'RS256'")


def test_alg_none_without_signature_is_refused(key: Key, caplog: pytest.LogCaptureFixture) -> None:
    assert_refused(post(alg_none(key)), caplog, "Authorization is not one 'Bearer <JWT>'")


def test_hs256_signed_with_the_public_certificate_is_refused(
    key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    token = hs256_with_public_key(key)
    assert_refused(post(token), caplog, "alg is 'HS256', not 'RS256'")


def test_missing_authorization_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    assert_refused(post(), caplog, "no Authorization header")


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Bearer", "is not one 'Bearer <JWT>'"),
        ("Bearer ", "is not one 'Bearer <JWT>'"),
        ("garbage", "is not one 'Bearer <JWT>'"),
        ("Basic dXNlcjpwYXNzd29yZA==", "is not one 'Bearer <JWT>'"),
        ("Bearer  aaaa.bbbb.cccc", "is not one 'Bearer <JWT>'"),
        ("Bearer aaaa.bbbb", "is not one 'Bearer <JWT>'"),
        ("Bearer aaaa.bbbb.cccc.dddd", "is not one 'Bearer <JWT>'"),
        ("Bearer aa+a.bbbb.cccc", "is not one 'Bearer <JWT>'"),
        ("Bearer " + "a" * 5000 + ".bbbb.cccc", "is not one 'Bearer <JWT>'"),
        ("Bearer aaaa.bbbb.cccc", "header is not JSON"),
        ("Bearer aaaaa.bbbb.cccc", "header is not base64url"),
        ("Bearer W10.bbbb.cccc", "header is not a JSON object"),  # "[]"
        ("Bearer e30.bbbb.cccc", "alg is None, not 'RS256'"),  # "{}"
    ],
)
def test_garbage_authorization_is_refused(
    caplog: pytest.LogCaptureFixture, authorization: str, reason: str
) -> None:
    assert_refused(post(authorization=authorization), caplog, reason)


def test_duplicated_authorization_is_refused(key: Key, caplog: pytest.LogCaptureFixture) -> None:
    # WSGI servers join repeated headers with a comma (see the real server test below).
    token = sign(key)
    assert_refused(
        post(authorization=f"Bearer {token}, Bearer {token}"), caplog, "is not one 'Bearer"
    )


def test_lowercase_scheme_is_accepted(key: Key) -> None:
    assert post(authorization=f"bearer {sign(key)}").status_code == 200


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_two_authorization_headers_through_a_real_wsgi_server(key: Key) -> None:
    request = captured_request()
    token = sign(key)
    server: WSGIServer = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:

        def send(authorizations: list[str]) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            connection.putrequest("POST", request.path)
            for name, value in request.http_request.headers.items():
                connection.putheader(name, value)
            for value in authorizations:
                connection.putheader("Authorization", value)
            connection.putheader("Content-Length", str(len(request.http_request.body)))
            connection.endheaders(request.http_request.body)
            status = connection.getresponse().status
            connection.close()
            return status

        assert send([f"Bearer {token}"]) == 200
        assert send([f"Bearer {token}", f"Bearer {token}"]) == 403
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_certs_endpoint_down_with_nothing_cached_answers_503(
    key: Key, certs_server: CertsServer, caplog: pytest.LogCaptureFixture
) -> None:
    certs_server.failing = True
    response = post(sign(key))
    assert response.status_code == 503
    assert response.json()["error"] == "certificates-unavailable"
    assert tasks.calls == []
    assert certs_server.fetches == 1
    assert "certs_fetch=failed" in caplog.text
    assert "reason=HTTP 503" in caplog.text


def test_certs_endpoint_unreachable_answers_503(key: Key) -> None:
    with CertsServer([key]) as gone:
        url = gone.url  # a port nothing listens on once the server stops
    with override_settings(CLOUDTASK={**conf.user_settings(), "OIDC": {"CERTS_URL": url}}):
        assert post(sign(key)).status_code == 503


def test_stale_certificates_are_served_while_the_endpoint_is_down(
    key: Key, certs_server: CertsServer
) -> None:
    with freeze_time("2026-01-01 12:00:00") as frozen:
        assert post(sign(key)).status_code == 200
        certs_server.failing = True
        frozen.tick(3600 + 1)  # past max-age=3600: the set is stale
        assert post(sign(key)).status_code == 200
        assert certs_server.fetches == 2  # one failed refetch, then the stale set was used
        frozen.tick(7 * 3600)  # past the grace period too
        assert post(sign(key)).status_code == 503
        assert certs_server.fetches == 3


def test_thousand_verified_requests_fetch_the_certificates_once(
    key: Key, certs_server: CertsServer
) -> None:
    arguments = request_arguments(f"Bearer {sign(key)}")
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    statuses = [client.post(**arguments).status_code for _ in range(1000)]
    assert statuses == [200] * 1000
    assert len(tasks.calls) == 1000
    assert certs_server.fetches == 1


def test_key_rotation_costs_exactly_one_extra_fetch(key: Key, certs_server: CertsServer) -> None:
    rotated = make_key("k2")
    with freeze_time("2026-01-01 12:00:00") as frozen:
        assert post(sign(key)).status_code == 200
        certs_server.keys = [key, rotated]  # Google publishes the new key
        frozen.tick(31)
        assert post(sign(rotated)).status_code == 200
        assert certs_server.fetches == 2
        statuses = {post(sign(k)).status_code for k in (key, rotated) * 20}
        assert statuses == {200}
        assert certs_server.fetches == 2


def test_random_kids_cannot_make_us_hammer_the_endpoint(
    key: Key, certs_server: CertsServer
) -> None:
    sprayed = [make_key(f"spray-{n}") for n in range(3)]
    with freeze_time("2026-01-01 12:00:00") as frozen:
        assert post(sign(key)).status_code == 200
        frozen.tick(31)
        statuses = [post(sign(sprayed[n % 3])).status_code for n in range(30)]
        assert statuses == [403] * 30
        assert certs_server.fetches == 2  # one early refetch, then rate-limited
        frozen.tick(29)
        assert post(sign(sprayed[0])).status_code == 403
        assert certs_server.fetches == 2
        frozen.tick(1)
        assert post(sign(sprayed[0])).status_code == 403
        assert certs_server.fetches == 3


def test_tokens_are_never_logged_or_returned(key: Key, caplog: pytest.LogCaptureFixture) -> None:
    good, bad = sign(key), sign(key, aud="https://other.example.com/")
    responses = [post(good), post(bad), post(flip_signature_bit(good))]
    for token in (good, bad):
        for part in token.split("."):
            assert part not in caplog.text
            assert all(part.encode() not in r.content for r in responses)


def test_in_process_deliveries_need_no_token() -> None:
    # ImmediateBackend runs the call inside this process: nothing crossed a network.
    assert tasks.record_request().delay().name
    [(_, request)] = tasks.calls
    assert request.oidc_email is None


def test_required_false_turns_verification_off(certs_server: CertsServer) -> None:
    oidc = {"CERTS_URL": certs_server.url, "REQUIRED": False}
    with override_settings(CLOUDTASK={**conf.user_settings(), "OIDC": oidc}):
        assert post().status_code == 200
        [(_, request)] = tasks.calls
        assert request.oidc_email is None
    assert certs_server.fetches == 0


def test_oidc_dict_alone_requires_tokens(key: Key, certs_server: CertsServer) -> None:
    oidc = {"CERTS_URL": certs_server.url, "SERVICE_ACCOUNTS": ["a@x.iam.gserviceaccount.com"]}
    with override_settings(
        CLOUDTASK={"BACKEND": conf.IMMEDIATE_BACKEND, "URL": AUDIENCE, "OIDC": oidc}
    ):
        assert post().status_code == 403
        assert post(sign(key, email="a@x.iam.gserviceaccount.com")).status_code == 200


def test_hmac_is_still_required_with_a_valid_token(key: Key) -> None:
    arguments = request_arguments(f"Bearer {sign(key)}")
    arguments["headers"][signing.SIGNATURE_HEADER] = "v1=" + "0" * 64
    response = Client(enforce_csrf_checks=True, raise_request_exception=False).post(**arguments)
    assert response.status_code == 403
    assert response.json()["detail"] == "signature does not match"


def test_required_without_service_accounts_answers_503_misconfigured(key: Key) -> None:
    with override_settings(
        CLOUDTASK={"BACKEND": conf.IMMEDIATE_BACKEND, "URL": AUDIENCE, "OIDC": {}}
    ):
        response = post(sign(key))
    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "misconfigured"}


def test_audience_setting_is_used(key: Key, certs_server: CertsServer) -> None:
    audience = "https://tasks.example.com/"
    oidc = {"CERTS_URL": certs_server.url, "AUDIENCE": audience}
    with override_settings(CLOUDTASK={**conf.user_settings(), "OIDC": oidc}):
        assert post(sign(key, aud=audience)).status_code == 200
        assert post(sign(key)).status_code == 403
