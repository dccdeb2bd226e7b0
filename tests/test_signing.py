"""Keys, rotation and laziness of the signing settings."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from cloudtask import ConfigurationError, signing
from cloudtask.testing import capture_tasks
from tests import tasks
from tests.support.helpers import ENDPOINT, post

BODY = json.dumps(
    {"v": 1, "task": "tests.tasks.noop", "id": "x", "args": [], "kwargs": {}}
).encode()
OLD = "old-secret-value-that-is-long-enough-123"
NEW = "new-secret-value-that-is-long-enough-456"


def test_default_key_is_derived_from_secret_key_not_equal_to_it() -> None:
    key = signing.keys()[0]
    assert len(key) == 32
    assert key != b"tests-secret-key-that-is-long-enough-for-hmac-derivation"


def test_secret_key_change_takes_effect_at_once() -> None:
    before = signing.sign(ENDPOINT, BODY)
    with override_settings(SECRET_KEY="a-different-secret-key-for-this-test-only"):
        assert signing.sign(ENDPOINT, BODY) != before
    assert signing.sign(ENDPOINT, BODY) == before


def test_secret_key_fallbacks_accept_tasks_signed_with_the_old_key() -> None:
    with override_settings(SECRET_KEY="the-old-secret-key-used-before-rotation"):
        old_signature = signing.sign(ENDPOINT, BODY)
    assert post(BODY, signature=old_signature).status_code == 403
    with override_settings(SECRET_KEY_FALLBACKS=["the-old-secret-key-used-before-rotation"]):
        assert post(BODY, signature=old_signature).status_code == 200
        # New tasks are signed with the current key only.
        assert signing.sign(ENDPOINT, BODY) != old_signature


def test_explicit_secret_and_its_fallbacks() -> None:
    with override_settings(CLOUDTASK={"SECRET": OLD}):
        old_signature = signing.sign(ENDPOINT, BODY)
    with override_settings(CLOUDTASK={"SECRET": NEW}):
        assert post(BODY, signature=old_signature).status_code == 403
    with override_settings(CLOUDTASK={"SECRET": NEW, "SECRET_FALLBACKS": [OLD]}):
        assert post(BODY, signature=old_signature).status_code == 200
        assert signing.sign(ENDPOINT, BODY) == signing.sign(ENDPOINT, BODY)
        assert signing.keys()[0] == NEW.encode()


def test_switching_to_an_explicit_secret_accepts_the_derived_key_only_when_asked() -> None:
    derived_signature = signing.sign(ENDPOINT, BODY)  # tests.settings set no SECRET
    with override_settings(CLOUDTASK={"SECRET": NEW}):
        assert post(BODY, signature=derived_signature).status_code == 403
    with override_settings(CLOUDTASK={"SECRET": NEW, "ACCEPT_DERIVED_KEY": True}):
        assert post(BODY, signature=derived_signature).status_code == 200
        # New tasks are signed with SECRET; the derived key only verifies.
        assert signing.keys()[0] == NEW.encode()
        assert signing.sign(ENDPOINT, BODY) != derived_signature


@override_settings(SECRET_KEY_FALLBACKS=["the-old-secret-key-used-before-rotation"])
def test_accepted_derived_keys_include_secret_key_fallbacks() -> None:
    with override_settings(SECRET_KEY="the-old-secret-key-used-before-rotation"):
        old_signature = signing.sign(ENDPOINT, BODY)
    with override_settings(CLOUDTASK={"SECRET": NEW, "ACCEPT_DERIVED_KEY": True}):
        assert post(BODY, signature=old_signature).status_code == 200
        assert len(signing.keys()) == 3


def test_explicit_secret_is_used_as_is() -> None:
    with override_settings(CLOUDTASK={"SECRET": NEW}):
        assert signing.keys() == (NEW.encode(),)


@pytest.mark.parametrize(
    ("cloudtask", "message"),
    [
        ({"SECRET": ""}, r"CLOUDTASK\['SECRET'\] must be a non-empty string"),
        ({"SECRET": 42}, r"CLOUDTASK\['SECRET'\] must be a non-empty string"),
        ({"SECRET_FALLBACKS": "old"}, r"SECRET_FALLBACKS'\] must be a list of strings"),
        ({"SECRET_FALLBACKS": [None]}, r"SECRET_FALLBACKS'\] entry must be a non-empty string"),
        ({"ACCEPT_DERIVED_KEY": 1}, r"ACCEPT_DERIVED_KEY'\] must be True or False, not 1"),
    ],
)
def test_bad_secret_settings_raise_configuration_error(
    cloudtask: dict[str, object], message: str
) -> None:
    with override_settings(CLOUDTASK=cloudtask), pytest.raises(ConfigurationError, match=message):
        signing.keys()


@override_settings(SECRET_KEY="")
def test_no_key_at_all_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigurationError, match="Set CLOUDTASK\\['SECRET'\\] or Django's SECRET_KEY"
    ):
        signing.keys()


def test_push_refuses_when_settings_are_broken() -> None:
    with (
        override_settings(CLOUDTASK={"SECRET": ""}),
        capture_tasks() as captured,
        pytest.raises(ConfigurationError),
    ):
        tasks.noop().delay()
    assert captured == []


def test_verification_tries_every_key_in_constant_time_order() -> None:
    with override_settings(CLOUDTASK={"SECRET": NEW, "SECRET_FALLBACKS": [OLD]}):
        signing.verify(ENDPOINT, BODY, signing.sign(ENDPOINT, BODY))
        with pytest.raises(signing.AuthenticationFailed):
            signing.verify(ENDPOINT, BODY, "v1=" + "0" * 64)
