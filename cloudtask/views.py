"""The task endpoint: the one URL Cloud Tasks and the local worker POST to."""

from __future__ import annotations

import logging

from django.conf import settings as django_settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import conf, envelope, executor
from .exceptions import ConfigurationError, InvalidRequest, PayloadRefused

logger = logging.getLogger("cloudtask")


class _MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method-not-allowed"


# Authenticated by the HMAC signature (and OIDC token), not by a session cookie.
@csrf_exempt
# A task owns its transactions: a failure must not roll back work it already committed.
@transaction.non_atomic_requests
def endpoint(request: HttpRequest) -> HttpResponse:
    """Verify and run one task request."""
    if request.method != "POST":
        # Cloud Tasks only POSTs; anything else is refused before the body is touched.
        refused = _MethodNotAllowed(f"method {request.method!r} is not allowed; use POST")
        response = _respond(executor.refuse(refused))
        response["Allow"] = "POST"
        return response
    try:
        conf.require_installed()
        outcome = _deliver(request)
    except ConfigurationError as exc:
        outcome = executor.misconfigured(exc)
    return _respond(outcome)


def _deliver(request: HttpRequest) -> executor.Outcome:
    limit, limit_name = _body_limit()
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not (isinstance(length, str) and length.isascii() and length.isdigit()):
        # Django's request.body would fail on it with a 500; nothing is read.
        return executor.refuse(InvalidRequest("Content-Length is not a number of bytes"))
    declared = int(length)
    # The length is checked before the body is read, so a huge body is never buffered.
    if declared > limit:
        return executor.refuse(PayloadRefused(f"body is {declared} bytes; {limit_name} is {limit}"))
    if request._read_started and not hasattr(request, "_body"):  # type: ignore[attr-defined]
        # A middleware parsed the body as form data first; a task body is JSON.
        return executor.refuse(InvalidRequest("body was already read as form data"))
    # At most one byte over the limit is read, whatever Content-Length said: a chunked body
    # (no Content-Length, possible on ASGI) or one longer than declared is cut off here.
    body = request.read(limit + 1)
    if len(body) > limit:
        return executor.refuse(
            PayloadRefused(f"body is over {limit} bytes; {limit_name} is {limit}")
        )
    return executor.deliver(path=request.path, body=body, meta=request.META, http_request=request)


def _body_limit() -> tuple[int, str]:
    """Return the largest body accepted and the setting that sets it.

    Django's DATA_UPLOAD_MAX_MEMORY_SIZE is honoured too, as it is for any other view.
    """
    limit = conf.max_body_size()
    django_limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if django_limit is not None and django_limit < limit:
        return django_limit, "Django's DATA_UPLOAD_MAX_MEMORY_SIZE"
    return limit, "CLOUDTASK['MAX_BODY_SIZE']"


def _respond(outcome: executor.Outcome) -> HttpResponse:
    response = HttpResponse(outcome.content, status=outcome.status, content_type="application/json")
    response[envelope.OUTCOME_HEADER] = outcome.outcome
    # Without a length, runserver (wsgiref) closes the connection after every answer, and
    # the local worker opens a new one, and runserver a new thread, for each delivery.
    response["Content-Length"] = str(len(outcome.content))
    # The executor already logged this delivery with its reason; Django need not log it again.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
