"""GET /api/me: who a key belongs to and what they may do (the web page shows its controls by it)."""
from __future__ import annotations

from flask import Blueprint

from service.accounts.roles import PERMISSIONS
from service.http import schemas
from service.http.auth import authenticate
from service.http.contract import DATABASE_ERRORS, RATE_LIMITED, endpoint, reply, responses

bp = Blueprint("accounts", __name__, url_prefix="/api")


@bp.get("/me")
@endpoint(signed_in=True, resp=responses({200: schemas.Me}, (401, 403, *RATE_LIMITED, *DATABASE_ERRORS)))
def me():
    """The key's person: id, name, role, and which photos each action of that role applies to."""
    principal = authenticate()
    may = {action: scopes[principal.role] for action, scopes in PERMISSIONS.items() if principal.role in scopes}
    return reply(schemas.Me(user_id=principal.user_id, name=principal.name, role=principal.role, may=may))
