"""OIDC verification: cloudtask's cached verifier vs google-auth's ``id_token.verify_token``.

Run: .venv/bin/python benchmarks/oidc.py [--rounds R] [--ours N] [--theirs M]

Both verify the same real RS256 ID tokens against the same certificates server on 127.0.0.1
(``{kid: PEM certificate}``, Google's v1 format, keep-alive), in alternating rounds of one
run. google-auth's ``verify_token`` downloads the certificates on every call (its docstring
says so); cloudtask fetches them once and keeps parsed verifiers. Also shown, for reference:
google-auth's ``jwt.decode`` given an already-downloaded certificate dict (parses the
certificate on every call). Prints microseconds per verification, the ratio and how many
times each side fetched the certificates.

cloudtask's side is shown twice: a repeated token (Cloud Tasks sends one token with many
tasks; its signature is checked once, its claims every time) and fresh tokens (each one seen
for the first time: the full check).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="benchmark-secret-key-that-is-long-enough-0123456789",
    INSTALLED_APPS=["cloudtask"],
    DATABASES={},
    USE_TZ=True,
)
django.setup()

import requests  # noqa: E402
from django.test import override_settings  # noqa: E402
from google.auth import jwt  # noqa: E402
from google.auth.transport.requests import Request  # noqa: E402
from google.oauth2 import id_token  # noqa: E402

from cloudtask import oidc  # noqa: E402
from cloudtask.oidc import verify  # noqa: E402
from tests.support.oidc import AUDIENCE, SERVICE_ACCOUNT, CertsServer, make_key, sign  # noqa: E402

#: Stop starting new rounds after this long, whatever --rounds says.
TIME_BUDGET_S = 120.0


def timed(fn: Callable[[str], object], tokens: list[str], n: int) -> float:
    """Return the seconds ``n`` calls of ``fn`` take, cycling through ``tokens``."""
    started = time.perf_counter()
    for i in range(n):
        fn(tokens[i % len(tokens)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ours", type=int, default=5000, help="verifications per round")
    parser.add_argument("--theirs", type=int, default=200, help="verify_token calls per round")
    parser.add_argument("--fresh", type=int, default=1000, help="distinct tokens per round")
    options = parser.parse_args()
    key = make_key("bench-key")
    server = CertsServer([make_key("other-key"), key]).start()
    try:
        fresh = [sign(key, sub=f"fresh-{n}") for n in range(options.fresh)]
        run(server, [sign(key)], fresh, options)
    finally:
        server.stop()


def run(
    server: CertsServer, tokens: list[str], fresh: list[str], options: argparse.Namespace
) -> None:
    session_request = Request(session=requests.Session())
    document = {k.kid: k.certificate_pem for k in server.keys}

    def ours(token: str) -> object:
        return oidc.verify_request({"HTTP_AUTHORIZATION": f"Bearer {token}"})

    def theirs(token: str) -> object:
        return id_token.verify_token(
            token, session_request, audience=AUDIENCE, certs_url=server.url
        )

    def decode_cached(token: str) -> object:
        return jwt.decode(token, certs=document, audience=AUDIENCE)

    cloudtask = {"SAE": SERVICE_ACCOUNT, "URL": AUDIENCE, "OIDC": {"CERTS_URL": server.url}}
    with override_settings(CLOUDTASK=cloudtask):
        fetches = {"ours": 0, "theirs": 0}
        for name, fn in (("ours", ours), ("theirs", theirs)):  # warm up; both must accept
            before = server.fetches
            fn(tokens[0])
            fetches[name] += server.fetches - before
        decode_cached(tokens[0])
        times: dict[str, list[float]] = {"ours": [], "theirs": [], "decode": [], "fresh": []}
        deadline = time.monotonic() + TIME_BUDGET_S
        for _ in range(options.rounds):
            if time.monotonic() > deadline:
                break
            before = server.fetches
            times["ours"].append(timed(ours, tokens, options.ours) / options.ours)
            fetches["ours"] += server.fetches - before
            before = server.fetches
            times["theirs"].append(timed(theirs, tokens, options.theirs) / options.theirs)
            fetches["theirs"] += server.fetches - before
            times["decode"].append(timed(decode_cached, tokens, options.theirs) / options.theirs)
            verify.forget_verified()  # each fresh token is seen for the first time
            times["fresh"].append(timed(ours, fresh, len(fresh)) / len(fresh))
    report(times, fetches, options)


def report(
    times: dict[str, list[float]], fetches: dict[str, int], options: argparse.Namespace
) -> None:
    rounds = len(times["ours"])
    ours, theirs, decode, fresh = (
        statistics.median(times[k]) for k in ("ours", "theirs", "decode", "fresh")
    )
    ratios = [t / o for o, t in zip(times["ours"], times["theirs"], strict=True)]
    print(f"oidc: {rounds} alternating rounds (medians), RS256 2048-bit, certs on 127.0.0.1")
    print(
        f"  cloudtask, repeated token    : {ours * 1e6:8.1f} us/verification  "
        f"{1 / ours:9.0f}/s  certificate fetches: {fetches['ours']} "
        f"in {rounds * options.ours + 1} verifications"
    )
    print(
        f"  cloudtask, fresh tokens      : {fresh * 1e6:8.1f} us/verification  {1 / fresh:9.0f}/s"
    )
    print(
        f"  google-auth verify_token     : {theirs * 1e6:8.1f} us/verification  "
        f"{1 / theirs:9.0f}/s  certificate fetches: {fetches['theirs']} "
        f"in {rounds * options.theirs + 1} verifications"
    )
    print(
        f"  google-auth jwt.decode (dict): {decode * 1e6:8.1f} us/verification  "
        f"{1 / decode:9.0f}/s  (certificates already downloaded)"
    )
    print(f"  speed-up ours vs verify_token: {statistics.median(ratios):.1f}x   (target >= 15x)")
    print(f"  repeated token               : {ours * 1e6:.1f} us   (target <= 10 us)")
    print(f"  fresh token                  : {fresh * 1e6:.1f} us   (target <= 80 us)")


if __name__ == "__main__":
    main()
