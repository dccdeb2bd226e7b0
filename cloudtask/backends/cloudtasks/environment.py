"""``"PROJECT": "auto"`` and ``"LOCATION": "auto"``: read from Google Cloud's environment.

On Google Cloud (Cloud Run, App Engine, GKE, Compute Engine, Cloud Functions) a service
knows its project and region: the project from the application default credentials
(``GOOGLE_CLOUD_PROJECT``, a credentials file, or the metadata server), the region from the
metadata server (``instance/region``, else the zone's region). Each is read once per process,
on first use (never at import, never by the system checks), with a time limit; a failure is
not kept, so the next push asks again. Off Google Cloud the answer is a
``ConfigurationError`` that says to set the value.

google-auth honours ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``, which point it at another
metadata server (a test's, on 127.0.0.1).
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

from ... import conf
from ...exceptions import ConfigurationError

#: The value that asks for detection.
AUTO = "auto"
#: How long one metadata request may take, in seconds.
METADATA_TIMEOUT = 3.0
#: Environment variables naming the project, as google-auth reads them.
PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")
#: How long finding the project may take in all (google-auth tries several sources).
PROJECT_TIMEOUT = 10.0


def project() -> str:
    """Return ``CLOUDTASK["PROJECT"]``, detected when it is ``"auto"``."""
    value = conf.get("PROJECT")
    return detected_project() if value == AUTO else value


def location() -> str:
    """Return ``CLOUDTASK["LOCATION"]``, detected when it is ``"auto"``."""
    value = conf.get("LOCATION")
    return detected_location() if value == AUTO else value


@cache
def detected_project() -> str:
    """Return ``GOOGLE_CLOUD_PROJECT``, else the default credentials' project (once)."""
    for variable in PROJECT_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    found: list[Any] = []

    def find() -> None:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            found.append(google.auth.default(scopes=[conf.CLOUD_PLATFORM_SCOPE])[1])
        except DefaultCredentialsError as exc:
            found.append(exc)

    # google-auth's own limits add up (its metadata server check retries): bound the whole.
    finder = threading.Thread(target=find, name="cloudtask-project", daemon=True)
    finder.start()
    finder.join(PROJECT_TIMEOUT)
    result = found[0] if found else None
    if isinstance(result, str) and result:
        return result
    reason = (
        f"no answer within {PROJECT_TIMEOUT:g} s"
        if not found
        else str(result or "the credentials name no project")
    )
    raise ConfigurationError(
        "CLOUDTASK['PROJECT'] is 'auto', but the application default credentials give no "
        f"project ({reason}). Off Google Cloud, set it to your project id (e.g. "
        "'my-project') or set the GOOGLE_CLOUD_PROJECT environment variable."
    )


@cache
def detected_location() -> str:
    """Return the region this process runs in, from the metadata server (once per process)."""
    region = _metadata("instance/region")
    if region:
        # "projects/123456789/regions/europe-west6" on Cloud Run and App Engine.
        return region.rsplit("/", 1)[-1]
    zone = _metadata("instance/zone")
    if zone:
        # "projects/123456789/zones/europe-west6-a" on Compute Engine and GKE.
        return zone.rsplit("/", 1)[-1].rsplit("-", 1)[0]
    raise ConfigurationError(
        "CLOUDTASK['LOCATION'] is 'auto', but no Google Cloud metadata server answered with "
        "this instance's region: is this running on Google Cloud? Off Google Cloud, set it to "
        "the queues' region, e.g. 'europe-west6'."
    )


def _metadata(path: str) -> str | None:
    """Return one metadata value, or None when there is no server or no such value."""
    from google.auth import exceptions
    from google.auth.compute_engine import _metadata
    from google.auth.transport.requests import Request

    try:
        value = _metadata.get(  # type: ignore[no-untyped-call]
            Request(),
            path,
            timeout=METADATA_TIMEOUT,
            retry_count=1,
            return_none_for_not_found_error=True,
        )
    except (exceptions.TransportError, exceptions.GoogleAuthError, OSError):
        return None
    return value if isinstance(value, str) and value else None


def reset() -> None:
    """Forget what was detected (for tests; a process's environment does not change)."""
    detected_project.cache_clear()
    detected_location.cache_clear()
