"""The bearer token that write endpoints require (one shared token: settings.api_token)."""
from __future__ import annotations

import hmac

from flask import current_app, request

from service.http.errors import ApiError


def require_write_token() -> None:
    """401 without a token, 403 with a wrong one; with no token configured, writes are refused (403)."""
    expected = current_app.config["WITHSENSE"].api_token
    if not expected:
        raise ApiError("writes are disabled on this server: no API token is configured (WITHSENSE_API_TOKEN)", 403)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("send 'Authorization: Bearer <token>'", 401, headers={"WWW-Authenticate": "Bearer"})
    # compare_digest: the time taken does not reveal how much of the token was right.
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError("the token is not valid", 403)
