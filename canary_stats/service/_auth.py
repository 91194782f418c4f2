"""Bearer-token authentication of the judge endpoints.

Argo Rollouts sends ``Authorization: Bearer <token>`` (from a ``secretKeyRef``).
Flagger cannot send headers, so its hooks may carry the token in
``metadata.token`` instead. ``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI
document need none: a network policy should keep them inside the cluster.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer

from ._errors import Unauthorized
from ._settings import Settings

__all__ = ["bearer", "check_token"]

#: Reads the header without failing, so a missing one becomes our own 401.
bearer = HTTPBearer(auto_error=False, description="The service's token.")


def check_token(settings: Settings, presented: str | None) -> None:
    """Raise `Unauthorized` unless ``presented`` is the service's token."""
    if settings.insecure_no_auth:
        return
    expected = settings.token.get_secret_value() if settings.token else None
    if expected is None or presented is None:
        raise Unauthorized("a bearer token is required")
    # Constant time: the comparison must not leak how much of a guess was right.
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("the token is not valid")
