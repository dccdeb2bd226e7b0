"""The task endpoint: the one URL Cloud Tasks and the local worker POST to."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.http.request import RawPostDataException
from django.views.decorators.csrf import csrf_exempt

from . import conf, executor
from .exceptions import PayloadRefused


# Authenticated by the HMAC signature (and OIDC token), not by a session cookie.
@csrf_exempt
# A task owns its transactions: a failure must not roll back work it already committed.
@transaction.non_atomic_requests
def endpoint(request: HttpRequest) -> HttpResponse:
    """Verify and run one task request."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    limit = conf.get("MAX_BODY_SIZE")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    try:
        # The length is checked before the body is read, so a huge body is never buffered.
        if declared > limit:
            raise PayloadRefused(f"body is {declared} bytes; the limit is {limit}")
        body = request.body
    except (RequestDataTooBig, RawPostDataException):
        outcome = executor.refuse(PayloadRefused(f"body exceeds the limit of {limit} bytes"))
    except PayloadRefused as exc:
        outcome = executor.refuse(exc)
    else:
        outcome = executor.deliver(
            path=request.path, body=body, meta=request.META, http_request=request
        )
    response = HttpResponse(outcome.content, status=outcome.status, content_type="application/json")
    # The executor already logged this delivery with its reason; Django need not log it again.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
