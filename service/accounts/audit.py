"""The audit trail: one ``audit_log`` row per write (migration 0013), in the write's own transaction.

``record`` is called by whatever writes, before it commits: the API's views (upload, describe,
vote, edit, delete), ``service.accounts.users`` (user added, key issued, key revoked) and the
sign-in endpoint. A record names who (``actor_id``: the user of the request's key; NULL for the
command line, whose operator is whoever runs the shell), when (the database's ``now()``, the
transaction's start), what (``action``) and the photo or user it touched; ``details`` is a small
JSON object of ids and flags, never a key, a hash or a session token (``record`` refuses such
names). The table is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE, for the service's
own role too. Admins read it through GET /api/audit, analysts through the view ``analyst_audit``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.store.tables import AUDIT_ACTIONS

# Names a detail may never have: secrets belong nowhere in the trail.
SECRET_NAMES = frozenset({"key", "api_key", "key_hash", "token", "secret", "password", "session", "session_token",
                          "csrf", "csrf_token", "authorization", "cookie"})
MAX_PAGE = 500

INSERT_SQL = text(
    """INSERT INTO audit_log (actor_id, action, photo_id, target_user_id, details)
       VALUES (:actor_id, :action, :photo_id, :target_user_id, CAST(:details AS jsonb))"""
)
LIST_SQL = text(
    """SELECT a.id, a.at, a.actor_id, u.name AS actor_name, a.action, a.photo_id, a.target_user_id, a.details
       FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
       WHERE (CAST(:actor AS text) IS NULL OR u.name = :actor)
         AND (CAST(:action AS text) IS NULL OR a.action = :action)
         AND (CAST(:photo_id AS bigint) IS NULL OR a.photo_id = :photo_id)
         AND (CAST(:before AS bigint) IS NULL OR a.id < :before)
       ORDER BY a.id DESC
       LIMIT :limit"""
)


@dataclass(frozen=True)
class AuditRow:
    audit_id: int
    at: datetime
    actor_id: int | None
    actor: str | None
    action: str
    photo_id: int | None
    target_user_id: int | None
    details: dict


def record(session: Session, *, actor_id: int | None, action: str, photo_id: int | None = None,
           target_user_id: int | None = None, details: dict | None = None) -> None:
    """Add one record to the trail in ``session``'s transaction (the caller commits with its write)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    details = details or {}
    secret = SECRET_NAMES.intersection(name.lower() for name in details)
    if secret:
        raise ValueError(f"secrets stay out of the audit trail: {sorted(secret)}")
    session.execute(INSERT_SQL, {"actor_id": actor_id, "action": action, "photo_id": photo_id,
                                 "target_user_id": target_user_id, "details": json.dumps(details, default=str)})


def list_records(session: Session, *, actor: str | None = None, action: str | None = None,
                 photo_id: int | None = None, before: int | None = None, limit: int = 100) -> list[AuditRow]:
    """Newest first; ``before`` (a record id) pages back."""
    rows = session.execute(LIST_SQL, {"actor": actor, "action": action, "photo_id": photo_id, "before": before,
                                      "limit": max(1, min(limit, MAX_PAGE + 1))})
    return [AuditRow(r.id, r.at, r.actor_id, r.actor_name, r.action, r.photo_id, r.target_user_id, r.details)
            for r in rows]
