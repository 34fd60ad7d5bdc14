"""Web sessions: a page signs in by sending a key once (POST /api/session) and holds an httpOnly
cookie after that, so no key is ever kept in the browser's storage where a script could read it.

The cookie holds a random token (``secrets.token_urlsafe(32)``, 256 bits); the ``sessions`` table
(migration 0012) holds only its SHA-256, so a copy of the table signs nobody in. A plain hash, not
argon2: the token is random and long, nothing to stretch. Every worker and server reads the same
table, so a sign-out or a revoked key ends the session everywhere from the next request on.

Each session has its own CSRF token, kept server-side: the page gets it from the sign-in answer or
GET /api/me and sends it as ``X-CSRF-Token`` with every write (service/http/auth.py checks it).

A session ends when it expires (``WITHSENSE_SESSION_HOURS``), when the page signs out, or when the
key it was made from is revoked (``users.revoke`` deletes its sessions; a lookup also refuses a
session whose key is revoked). A session made with the bootstrap token has no key row
(``key_id`` NULL) and lasts only while a bootstrap token is configured.

Functions take the session keyword-only and never commit (the caller does).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.accounts import keys
from service.accounts.roles import Principal

PURGE_SQL = text("DELETE FROM sessions WHERE expires_at <= now()")
INSERT_SQL = text(
    """INSERT INTO sessions (id, user_id, key_id, csrf, expires_at)
       VALUES (:id, :user_id, (SELECT id FROM api_keys WHERE key_id = :key_id), :csrf,
               now() + make_interval(secs => :seconds))
       RETURNING expires_at"""
)
# FOR SHARE OF s: a revocation (which deletes the row) waits for the request that is using the
# session to finish, and every request after it finds no row.
FIND_SQL = text(
    """SELECT s.user_id, u.name, u.role, s.csrf, s.key_id, s.expires_at
       FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN api_keys k ON k.id = s.key_id
       WHERE s.id = :id AND s.expires_at > now() AND k.revoked_at IS NULL
       FOR SHARE OF s"""
)
TOUCH_SQL = text("UPDATE sessions SET last_seen = now() WHERE id = :id")
DELETE_SQL = text("DELETE FROM sessions WHERE id = :id")
END_REVOKED_SQL = text(
    """DELETE FROM sessions WHERE key_id IN
       (SELECT id FROM api_keys WHERE user_id = :user_id AND revoked_at IS NOT NULL)"""
)


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf: str
    expires_at: datetime
    from_key: bool  # made from a stored key (False: the bootstrap token)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(*, session: Session, principal: Principal, key: str, hours: float) -> tuple[str, WebSession]:
    """A new session for ``principal``, who has just shown ``key``; returns (cookie token, session).
    Expired sessions of anyone are cleared on the way."""
    session.execute(PURGE_SQL)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    key_id = keys.key_id_of(key) if keys.looks_like_key(key) else None
    expires_at = session.execute(INSERT_SQL, {"id": _digest(token), "user_id": principal.user_id, "key_id": key_id,
                                              "csrf": csrf, "seconds": hours * 3600.0}).scalar_one()
    return token, WebSession(principal, csrf, expires_at, from_key=key_id is not None)


def find(*, session: Session, token: str) -> WebSession | None:
    """The live session the cookie's token names, or None (unknown, expired, or its key revoked)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(FIND_SQL, {"id": _digest(token)}).first()
    if row is None:
        return None
    return WebSession(Principal(row.user_id, row.name, row.role), row.csrf, row.expires_at,
                      from_key=row.key_id is not None)


def touch(*, session: Session, token: str) -> None:
    session.execute(TOUCH_SQL, {"id": _digest(token)})


def end(*, session: Session, token: str) -> bool:
    """Sign out: delete the session; False when there was none."""
    return bool(token) and session.execute(DELETE_SQL, {"id": _digest(token)}).rowcount > 0


def end_revoked(*, session: Session, user_id: int) -> int:
    """Delete the sessions made from the person's revoked keys; returns how many."""
    return session.execute(END_REVOKED_SQL, {"user_id": user_id}).rowcount
