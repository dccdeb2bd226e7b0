"""capture_tasks().run_all() when OIDC is required: development tokens, only inside the block."""

from __future__ import annotations

from django.test import Client, override_settings

from cloudtask import signing
from cloudtask.testing import capture_tasks
from tests import tasks

OIDC_ON = {
    "BACKEND": "cloudtask.backends.immediate.ImmediateBackend",
    "SAE": "invoker@my-project.iam.gserviceaccount.com",
    "URL": "http://testserver/_tasks/",
}


@override_settings(CLOUDTASK=OIDC_ON)
def test_run_all_passes_oidc_with_a_development_token() -> None:
    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        [response] = captured.run_all()
    assert response.status_code == 200
    assert response.json()["result"] == 3


@override_settings(CLOUDTASK=OIDC_ON)
def test_the_same_token_is_refused_outside_capture() -> None:
    from cloudtask import oidc

    with capture_tasks() as captured:
        tasks.add(a=1, b=2).delay()
        token = oidc.development_token(oidc.settings().audience, "")
    request = captured[0].http_request
    response = Client(enforce_csrf_checks=True).post(
        captured[0].path,
        request.body,
        content_type="application/json",
        headers={
            signing.SIGNATURE_HEADER: request.headers[signing.SIGNATURE_HEADER],
            "Authorization": f"Bearer {token}",
        },
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "invalid or missing OIDC token"
    assert tasks.calls == []
