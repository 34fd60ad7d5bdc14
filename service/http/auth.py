"""Who is writing: the bearer key of every write names a person (service/accounts), or the shared
bootstrap token (settings.api_token) names the built-in admin ``bootstrap``.

401 without a bearer key; 403 with a key that is wrong, unknown or revoked (the message says
which), or whose role may not do the action at all (``roles.check_role``). Whose photo it is is
checked by the views, which know the photo. The person is kept in ``g.principal`` for the view.
"""
from __future__ import annotations

import hmac

from flask import current_app, g, request

from service.accounts import keys, users
from service.accounts.roles import Forbidden, Principal, check_role
from service.http import ratelimit, throttle
from service.http.db_session import get_session
from service.http.errors import ApiError

BOOTSTRAP_CACHE = "withsense.bootstrap_user"


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("send 'Authorization: Bearer <key>'", 401, headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def authenticate() -> Principal:
    """The person behind the request's key (cached in ``g`` for the rest of the request)."""
    if "principal" in g:
        return g.principal
    token = bearer_token()
    throttle.check()
    try:
        principal = _principal(token)
    except ApiError as exc:
        raise throttle.failed_attempt(exc) from None
    g.principal = principal
    return principal


def _principal(token: str) -> Principal:
    if keys.looks_like_key(token):
        try:
            return users.authenticate(session=get_session(), token=token)
        except users.InvalidKey as exc:
            raise ApiError(str(exc), 403) from None
    return _bootstrap(token)


def _bootstrap(token: str) -> Principal:
    expected = current_app.config["WITHSENSE"].api_token
    if not expected:
        raise ApiError("the key is not valid (keys start with 'ws_'; no bootstrap token is configured: "
                       "WITHSENSE_API_TOKEN)", 403)
    # compare_digest: the time taken does not reveal how much of the token was right.
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError("the key is not valid", 403)
    cached = current_app.extensions.get(BOOTSTRAP_CACHE)
    if cached is None:
        cached = current_app.extensions[BOOTSTRAP_CACHE] = users.bootstrap(session=get_session())
    return cached


def require_write(action: str) -> Principal:
    """Authenticate, refuse a role that may never do ``action``, then count the write against the
    person's rate limit (``WITHSENSE_WRITE_RATE_LIMIT``; admins are not limited)."""
    principal = authenticate()
    try:
        check_role(principal, action)
    except Forbidden as exc:
        raise ApiError(str(exc), 403) from None
    _limit_writes(principal)
    return principal


def _limit_writes(principal: Principal) -> None:
    """``WITHSENSE_WRITE_RATE_LIMIT`` per person, shared by every worker (service/http/ratelimit.py)."""
    limit = current_app.config["WITHSENSE"].write_rate_limit
    if limit <= 0 or principal.is_admin:
        return
    wait = ratelimit.limits().hit("write", f"user:{principal.user_id}", limit)
    if wait > 0:
        raise ratelimit.too_many(f"too many writes: at most {limit} per minute per person", wait)
