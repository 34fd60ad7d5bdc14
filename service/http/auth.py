"""Who is writing: the bearer key of every write names a person (service/accounts), or the shared
bootstrap token (settings.api_token) names the built-in admin ``bootstrap``.

The web page signs in once instead (POST /api/session, service/accounts/sessions.py) and sends the
session cookie; a request with that cookie and no ``Authorization`` header is its session's
person, and one that changes something must carry the session's ``X-CSRF-Token`` as well.
Scripts keep ``Authorization: Bearer <key>``, which needs no CSRF token (no browser adds it by itself).

401 without a bearer key; 403 with a key that is wrong, unknown or revoked (the message says
which), or whose role may not do the action at all (``roles.check_role``). Whose photo it is is
checked by the views, which know the photo. The person is kept in ``g.principal`` for the view.
"""
from __future__ import annotations

import hmac

from flask import current_app, g, request

from service.accounts import keys, sessions, users
from service.accounts.roles import Forbidden, Principal, check_role
from service.http import ratelimit, throttle
from service.http.db_session import get_session
from service.http.errors import ApiError

BOOTSTRAP_CACHE = "withsense.bootstrap_user"
SESSION_COOKIE = "withsense_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("send 'Authorization: Bearer <key>'", 401, headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def authenticate(token: str | None = None) -> Principal:
    """The person behind the request's key (cached in ``g`` for the rest of the request), or behind
    its session cookie when it sends no ``Authorization``. ``token``: a key sent another way (the
    sign-in's body)."""
    if "principal" in g:
        return g.principal
    if token is None and uses_session():
        return session_principal()
    token = bearer_token() if token is None else token
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


def uses_session() -> bool:
    """The request comes from the signed-in page: a session cookie and no ``Authorization`` header."""
    return SESSION_COOKIE in request.cookies and "Authorization" not in request.headers


def session_principal() -> Principal:
    """The session cookie's person; 401 when the session has ended, 403 for a change without the
    session's CSRF token."""
    found = sessions.find(session=get_session(), token=request.cookies.get(SESSION_COOKIE, ""))
    principal = None if found is None else _live_principal(found)
    if principal is None:
        raise ApiError("the session has ended: sign in again (POST /api/session) or send "
                       "'Authorization: Bearer <key>'", 401, headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), found.csrf.encode()):
            raise ApiError(f"a change made with the session cookie needs its {CSRF_HEADER} header "
                           "(from the sign-in answer or GET /api/me)", 403)
    g.web_session = found
    g.principal = principal
    return principal


def _live_principal(found: sessions.WebSession) -> Principal | None:
    """A session from the bootstrap token lasts only while a bootstrap token is configured."""
    if not found.from_key and not current_app.config["WITHSENSE"].api_token:
        return None
    return found.principal


def _limit_writes(principal: Principal) -> None:
    """``WITHSENSE_WRITE_RATE_LIMIT`` per person, shared by every worker (service/http/ratelimit.py)."""
    limit = current_app.config["WITHSENSE"].write_rate_limit
    if limit <= 0 or principal.is_admin:
        return
    wait = ratelimit.limits().hit("write", f"user:{principal.user_id}", limit)
    if wait > 0:
        raise ratelimit.too_many(f"too many writes: at most {limit} per minute per person", wait)
