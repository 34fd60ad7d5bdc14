"""GET /api/me: who a key (or the page's session) belongs to and what they may do (the web page
shows its controls by it). POST /api/session signs the page in with a key, sent once; DELETE
/api/session signs it out (service/accounts/sessions.py)."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request

from service.accounts import audit, sessions
from service.accounts.roles import PERMISSIONS, Principal
from service.http import schemas
from service.http.auth import SESSION_COOKIE, authenticate, session_principal
from service.http.contract import BODY_ERRORS, DATABASE_ERRORS, RATE_LIMITED, endpoint, reply, responses
from service.http.db_session import get_session
from service.http.errors import ApiError

bp = Blueprint("accounts", __name__, url_prefix="/api")


def _me(principal: Principal, web_session: sessions.WebSession | None = None) -> schemas.Me:
    may = {action: scopes[principal.role] for action, scopes in PERMISSIONS.items() if principal.role in scopes}
    extra = {"csrf": web_session.csrf, "expires_at": web_session.expires_at} if web_session else {}
    return schemas.Me(user_id=principal.user_id, name=principal.name, role=principal.role, may=may, **extra)


@bp.get("/me")
@endpoint(signed_in=True, resp=responses({200: schemas.Me}, (401, 403, *RATE_LIMITED, *DATABASE_ERRORS)))
def me():
    """The key's person: id, name, role, and which photos each action of that role applies to. With
    the session cookie, also the session's CSRF token and end."""
    principal = authenticate()
    web_session = g.get("web_session")
    if web_session is not None:
        sessions.touch(session=get_session(), token=request.cookies[SESSION_COOKIE])
        get_session().commit()
    response = reply(_me(principal, web_session))
    if web_session is not None:
        response.headers["Cache-Control"] = "no-store"  # it carries the session's CSRF token
    return response


@bp.post("/session")
@endpoint(json=schemas.SignIn, resp=responses({200: schemas.Me}, (400, 403, *RATE_LIMITED, *BODY_ERRORS, *DATABASE_ERRORS)))
def sign_in():
    """Sign the web page in: the key is checked once, and the answer sets an httpOnly session cookie
    (SameSite=Strict) and gives the CSRF token the page's changes send as X-CSRF-Token."""
    key = request.context.json.key
    principal = authenticate(token=key)
    settings = current_app.config["WITHSENSE"]
    db = get_session()
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        sessions.end(session=db, token=old)
    token, web_session = sessions.start(session=db, principal=principal, key=key, hours=settings.session_hours)
    audit.record(db, actor_id=principal.user_id, action="sign_in", target_user_id=principal.user_id)
    db.commit()
    response = reply(_me(principal, web_session))
    response.set_cookie(SESSION_COOKIE, token, max_age=round(settings.session_hours * 3600), path="/",
                        httponly=True, samesite="Strict", secure=settings.behind_tls)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.delete("/session")
@endpoint(resp=responses({204: None}, (403, *DATABASE_ERRORS)))
def sign_out():
    """Sign the web page out: the session is deleted and the cookie cleared. A live session needs
    its X-CSRF-Token here too; without a session (or an ended one) this only clears the cookie."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        try:
            session_principal()  # 403 without the session's CSRF token
        except ApiError as exc:
            if exc.status_code != 401:  # 401: the session had ended already
                raise
        sessions.end(session=get_session(), token=token)
        get_session().commit()
    response = current_app.response_class(status=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=current_app.config["WITHSENSE"].behind_tls)
    return response
