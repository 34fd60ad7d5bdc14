"""GET /api/audit: the audit trail, for admins (service/accounts/audit.py writes it)."""
from __future__ import annotations

from flask import Blueprint, request

from service.accounts import audit
from service.http import schemas
from service.http.auth import authenticate
from service.http.contract import DATABASE_ERRORS, RATE_LIMITED, endpoint, reply, responses
from service.http.db_session import get_session
from service.http.errors import ApiError

bp = Blueprint("audit", __name__, url_prefix="/api")


@bp.get("/audit")
@endpoint(query=schemas.AuditQuery, signed_in=True,
          resp=responses({200: schemas.AuditPage}, (400, 401, 403, *RATE_LIMITED, *DATABASE_ERRORS)))
def audit_trail():
    """Every write, newest first: who, when, what, which photo or user. Admins only; filter by
    ``actor`` (a user name), ``action`` and ``photo_id``; page back with ``before``."""
    principal = authenticate()
    if not principal.is_admin:
        raise ApiError("only admins read the audit trail", 403)
    query: schemas.AuditQuery = request.context.query
    rows = audit.list_records(get_session(), actor=query.actor, action=query.action, photo_id=query.photo_id,
                              before=query.before, limit=query.limit + 1)
    page, more = rows[:query.limit], len(rows) > query.limit
    return reply(schemas.AuditPage(
        records=[schemas.AuditRecordOut(audit_id=r.audit_id, at=r.at.isoformat(), actor_id=r.actor_id, actor=r.actor,
                                        action=r.action, photo_id=r.photo_id, target_user_id=r.target_user_id,
                                        details=r.details) for r in page],
        next=page[-1].audit_id if more else None))
