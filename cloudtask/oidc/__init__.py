"""Google OIDC ID tokens on the task endpoint.

- :mod:`.config`: ``CLOUDTASK["OIDC"]`` resolved and validated, and :func:`push_token`, the
  rule for which token Cloud Tasks adds to a push.
- :mod:`.certs`: Google's signing certificates, fetched once and cached.
- :mod:`.devkey`: the development key that signs tokens for the local queue and
  ``capture_tasks()``, where the backend declares ``trusts_development_tokens``.
- :mod:`.verify`: checking a request's bearer token and its claims.
"""

from .config import OidcSettings, push_token, read_setting, settings
from .devkey import authorization, development_token
from .verify import AUTHORIZATION_META_KEY, check_claims, verify_request, verify_token

__all__ = [
    "AUTHORIZATION_META_KEY",
    "OidcSettings",
    "authorization",
    "check_claims",
    "development_token",
    "push_token",
    "read_setting",
    "settings",
    "verify_request",
    "verify_token",
]
