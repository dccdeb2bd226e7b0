"""A token Cloud Tasks reuses is verified once: expiry, claims and key rotation still hold."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings
from freezegun import freeze_time

from cloudtask import conf, oidc
from cloudtask.exceptions import InvalidToken
from cloudtask.oidc import certs, verify
from tests.support.oidc import (
    AUDIENCE,
    CertsServer,
    Key,
    flip_signature_bit,
    make_key,
    oidc_settings,
    post,
    sign,
)

NOW = "2026-01-01 12:00:00"


pytestmark = pytest.mark.usefixtures("tokens_required")


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record each RSA signature check verify_request makes (the real check still runs)."""
    made: list[bool] = []
    real = verify._signature_valid

    def counted(*args: Any) -> bool:
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(verify, "_signature_valid", counted)
    return made


def meta(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_reused_token_is_verified_once(key: Key, signature_checks: list[bool]) -> None:
    token = sign(key)
    emails = {oidc.verify_request(meta(token)) for _ in range(100)}
    assert len(emails) == 1
    assert signature_checks == [True]
    other = sign(key, sub="another")  # other bytes: verified on its own
    oidc.verify_request(meta(other))
    assert signature_checks == [True, True]


def test_a_cached_token_still_expires(key: Key) -> None:
    with freeze_time(NOW) as frozen:
        token = sign(key)  # exp: an hour from now
        assert post(token).status_code == 200
        frozen.tick(3600 + 11)  # past exp and the 10 s clock skew
        with pytest.raises(InvalidToken) as refused:
            oidc.verify_request(meta(token))
        assert refused.value.reason.startswith("expired")
        assert post(token).status_code == 403


def test_claims_are_checked_against_the_settings_of_now(
    key: Key, certs_server: CertsServer
) -> None:
    token = sign(key)
    oidc.verify_request(meta(token))
    other_audience = oidc_settings(
        conf.IMMEDIATE_BACKEND,
        certs_server,
        OIDC={"CERTS_URL": certs_server.url, "AUDIENCE": AUDIENCE + "x/"},
    )
    with override_settings(CLOUDTASK=other_audience), pytest.raises(InvalidToken) as refused:
        oidc.verify_request(meta(token))
    assert refused.value.reason.startswith("aud is")
    assert verify._verified == {}  # a settings change forgets every verified token


def test_a_rotated_out_key_no_longer_verifies_a_cached_token(
    key: Key, certs_server: CertsServer
) -> None:
    with freeze_time(NOW) as frozen:
        token = sign(key, exp=int(time.time()) + 7200)
        assert post(token).status_code == 200
        certs_server.keys = [make_key("k2")]  # Google stops publishing k1
        frozen.tick(3600 + 60)  # the certificates' max-age has passed; the token is valid
        with pytest.raises(InvalidToken) as refused:
            oidc.verify_request(meta(token))
        assert refused.value.reason == "no certificate has kid 'k1'"
        assert certs_server.fetches == 2


def test_a_refreshed_certificate_set_verifies_again(
    key: Key, certs_server: CertsServer, signature_checks: list[bool]
) -> None:
    token = sign(key)
    oidc.verify_request(meta(token))
    certs.reset()  # new verifier objects, as after a refetch: the cached one is not theirs
    oidc.verify_request(meta(token))
    assert signature_checks == [True, True]


def test_a_failure_is_never_cached(key: Key, signature_checks: list[bool]) -> None:
    token = sign(key)
    forged = flip_signature_bit(token)
    for _ in range(3):
        with pytest.raises(InvalidToken) as refused:
            oidc.verify_request(meta(forged))
        assert refused.value.reason.startswith("signature does not verify")
    assert oidc.verify_request(meta(token))
    assert signature_checks == [False, False, False, True]


def test_the_cache_is_bounded(key: Key, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "MAX_VERIFIED", 5)
    tokens = [sign(key, sub=str(n)) for n in range(8)]
    for token in tokens:
        oidc.verify_request(meta(token))
    assert list(verify._verified) == [f"Bearer {t}" for t in tokens[3:]]
