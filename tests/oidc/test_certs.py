"""The certificate cache: lifetime, early refetch, stale grace, threads; a real HTTP server."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings

from cloudtask.exceptions import CertificatesUnavailable
from cloudtask.oidc import certs
from tests.support.oidc import CertsServer, make_key


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(certs_server: CertsServer, clock: Clock) -> certs.CertificateCache:
    return certs.CertificateCache(certs_server.url, clock=clock)


def test_certificates_are_parsed_into_verifiers_that_check_signatures(
    cache: certs.CertificateCache,
) -> None:
    from google.auth import crypt

    signer = crypt.RSASigner.from_string(make_key("k1").private_pem)
    verifier = cache.verifier("k1")
    assert verifier is not None
    assert verifier.verify(b"message", signer.sign(b"message")) is True
    assert verifier.verify(b"messagE", signer.sign(b"message")) is False


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        ("public, max-age=120, must-revalidate, no-transform", 120),
        ("max-age=5", 60),  # bounded below
        ("max-age=999999999", 86400),  # bounded above
        ("", 60),
        ("no-store", 60),
    ],
)
def test_the_set_is_kept_for_max_age_within_bounds(
    certs_server: CertsServer,
    cache: certs.CertificateCache,
    clock: Clock,
    cache_control: str,
    lifetime: int,
) -> None:
    certs_server.cache_control = cache_control
    assert cache.verifier("k1") is not None
    clock.now += lifetime - 1
    assert cache.verifier("k1") is not None
    assert certs_server.fetches == 1
    clock.now += 2
    assert cache.verifier("k1") is not None
    assert certs_server.fetches == 2


def test_age_header_shortens_the_lifetime(
    certs_server: CertsServer, cache: certs.CertificateCache, clock: Clock
) -> None:
    certs_server.cache_control = "public, max-age=600"
    certs_server.extra_headers = {"Age": "400"}
    cache.verifier("k1")
    clock.now += 201
    cache.verifier("k1")
    assert certs_server.fetches == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "public, max-age=19844, must-revalidate"}, 19844.0),
        ({"Cache-Control": "max-age=3600", "Age": "600"}, 3000.0),
        ({"Cache-Control": "max-age=3600", "Age": "abc"}, 3600.0),
        ({"Cache-Control": "s-maxage=3600"}, 60.0),
        ({"Cache-Control": 'max-age="7200"'}, 7200.0),
        ({"Cache-Control": "no-cache, max-age=3600"}, 60.0),
        ({"Cache-Control": "max-age=3600", "Age": "3599"}, 60.0),
        ({}, 60.0),
    ],
)
def test_max_age_parsing(headers: dict[str, str], expected: float) -> None:
    assert certs.max_age(headers) == expected


def test_unknown_kid_refetches_at_most_once_per_interval(
    certs_server: CertsServer, cache: certs.CertificateCache, clock: Clock
) -> None:
    cache.verifier("k1")
    assert [cache.verifier(f"random-{n}") for n in range(50)] == [None] * 50
    assert certs_server.fetches == 1  # the set was fetched less than 30 s ago
    clock.now += certs.REFETCH_INTERVAL
    assert [cache.verifier(f"random-{n}") for n in range(50)] == [None] * 50
    assert certs_server.fetches == 2


def test_a_rotated_key_is_found_by_one_early_refetch(
    certs_server: CertsServer, cache: certs.CertificateCache, clock: Clock
) -> None:
    cache.verifier("k1")
    certs_server.keys = [make_key("k1"), make_key("k2")]
    clock.now += certs.REFETCH_INTERVAL
    assert cache.verifier("k2") is not None
    assert cache.verifier("k1") is not None
    assert certs_server.fetches == 2


def test_nothing_cached_and_endpoint_down_raises_and_retries_later(
    certs_server: CertsServer, cache: certs.CertificateCache, clock: Clock
) -> None:
    certs_server.failing = True
    with pytest.raises(CertificatesUnavailable) as raised:
        cache.verifier("k1")
    assert raised.value.status == 503
    with pytest.raises(CertificatesUnavailable):
        cache.verifier("k1")
    assert certs_server.fetches == 1  # no second attempt within the retry interval
    certs_server.failing = False
    clock.now += certs.RETRY_INTERVAL
    assert cache.verifier("k1") is not None
    assert certs_server.fetches == 2


def test_stale_set_is_used_within_the_grace_period_only(
    certs_server: CertsServer, cache: certs.CertificateCache, clock: Clock
) -> None:
    certs_server.cache_control = "max-age=600"
    cache.verifier("k1")
    certs_server.failing = True
    clock.now += 600
    assert cache.verifier("k1") is not None
    assert certs_server.fetches == 2
    clock.now += certs.STALE_GRACE - 1
    assert cache.verifier("k1") is not None
    assert certs_server.fetches == 3
    clock.now += 1
    with pytest.raises(CertificatesUnavailable):
        cache.verifier("k1")
    certs_server.failing = False
    clock.now += certs.RETRY_INTERVAL
    assert cache.verifier("k1") is not None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "no usable certificate"),
        (json.dumps({"k1": "not a certificate"}).encode(), "no usable certificate"),
        (b'{"k": "' + b"x" * (certs.MAX_DOCUMENT + 1) + b'"}', "document larger than"),
    ],
)
def test_bad_documents_are_fetch_failures(
    certs_server: CertsServer,
    cache: certs.CertificateCache,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    reason: str,
) -> None:
    certs_server.body = body
    with pytest.raises(CertificatesUnavailable):
        cache.verifier("k1")
    assert f"certs_fetch=failed url={certs_server.url} serving_stale=false reason=" in caplog.text
    assert reason in caplog.text


def test_one_bad_entry_does_not_hide_the_good_ones(
    certs_server: CertsServer, cache: certs.CertificateCache
) -> None:
    document = {"bad": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}
    document["k1"] = make_key("k1").certificate_pem
    certs_server.body = json.dumps(document).encode()
    assert cache.verifier("k1") is not None
    assert cache.verifier("bad") is None


def test_concurrent_cold_start_fetches_once(
    certs_server: CertsServer, cache: certs.CertificateCache
) -> None:
    certs_server.delay = 0.2
    barrier = threading.Barrier(16, timeout=10)

    def verify(_: int) -> bool:
        barrier.wait()
        return cache.verifier("k1") is not None

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(verify, range(16), timeout=30)) == [True] * 16
    assert certs_server.fetches == 1


def test_stale_set_is_served_while_another_thread_refetches(
    certs_server: CertsServer, cache: certs.CertificateCache, clock: Clock
) -> None:
    cache.verifier("k1")
    clock.now += 3600  # expired
    certs_server.delay = 1.0
    refetch = threading.Thread(target=cache.verifier, args=("k1",))
    refetch.start()
    deadline = time.monotonic() + 5
    while certs_server.fetches < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert certs_server.fetches == 2  # the other thread is inside the slow fetch
    started = time.monotonic()
    assert cache.verifier("k1") is not None
    assert time.monotonic() - started < 0.5  # answered from the stale set, no waiting
    refetch.join(timeout=10)
    assert certs_server.fetches == 2


def test_the_process_wide_caches_reset_when_settings_change(certs_server: CertsServer) -> None:
    first = certs.cache_for(certs_server.url)
    assert certs.cache_for(certs_server.url) is first
    with override_settings(CLOUDTASK={"QUEUE": "other"}):
        assert certs.cache_for(certs_server.url) is not first
