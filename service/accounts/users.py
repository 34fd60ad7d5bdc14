"""People in the database: adding them with a key shown once, listing, revoking, and finding the
person a request's key belongs to.

Functions take the session keyword-only and never commit (the caller does). Authentication reads
(and share-locks, until the request's transaction ends) the key's row on every request (one indexed lookup and one argon2 check of about a millisecond,
service/accounts/keys.py), with no cache: a revoked key is refused from the next request on.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.accounts import audit, keys, sessions
from service.accounts.roles import ROLES, Principal

BOOTSTRAP = "bootstrap"  # the admin row that WITHSENSE_API_TOKEN writes as (migration 0011)

INSERT_USER_SQL = text("INSERT INTO users (name, role) VALUES (:name, :role) ON CONFLICT (name) DO NOTHING RETURNING id")
INSERT_KEY_SQL = text("INSERT INTO api_keys (user_id, key_id, key_hash) VALUES (:user_id, :key_id, :key_hash)")
KEY_ROW_SQL = text(
    """SELECT k.key_hash, k.revoked_at, u.id AS user_id, u.name, u.role
       FROM api_keys k JOIN users u ON u.id = k.user_id
       WHERE k.key_id = :key_id
       FOR SHARE OF k"""
)
USER_SQL = text("SELECT id, name, role FROM users WHERE name = :name")
LIST_SQL = text(
    """SELECT u.id, u.name, u.role, u.created_at,
              count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS active_keys,
              count(k.id) FILTER (WHERE k.revoked_at IS NOT NULL) AS revoked_keys
       FROM users u LEFT JOIN api_keys k ON k.user_id = u.id
       GROUP BY u.id ORDER BY u.id"""
)
REVOKE_SQL = text(
    """UPDATE api_keys SET revoked_at = now()
       WHERE user_id = :user_id AND revoked_at IS NULL AND (CAST(:key_id AS text) IS NULL OR key_id = :key_id)"""
)


class AccountError(ValueError):
    """A user command that cannot be done (an existing name, an unknown user, a bad role)."""


class InvalidKey(PermissionError):
    """The key names nobody, is wrong, or was revoked; the message says which (a 403)."""


@dataclass(frozen=True)
class UserRow:
    user_id: int
    name: str
    role: str
    created_at: datetime
    active_keys: int
    revoked_keys: int


def add_user(*, session: Session, name: str, role: str, actor_id: int | None = None) -> tuple[int, str]:
    """A new person and their first key; returns (user id, key). The key is shown once: only its
    hash is stored. Both go into the audit trail (``actor_id``: who did it; None = the command line)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    user_id = session.execute(INSERT_USER_SQL, {"name": name, "role": role}).scalar()
    if user_id is None:
        raise AccountError(f"a user called {name!r} exists already")
    audit.record(session, actor_id=actor_id, action="user_added", target_user_id=user_id,
                 details={"name": name, "role": role})
    return user_id, _issue(session, user_id, actor_id)


def issue_key(*, session: Session, name: str, actor_id: int | None = None) -> str:
    """Another key for an existing person (after a revocation, or to rotate)."""
    if name == BOOTSTRAP:
        raise AccountError("the bootstrap admin's key is WITHSENSE_API_TOKEN, not a stored key")
    return _issue(session, _user(session, name).user_id, actor_id)


def _issue(session: Session, user_id: int, actor_id: int | None) -> str:
    made = keys.new_key()
    session.execute(INSERT_KEY_SQL, {"user_id": user_id, "key_id": made.key_id, "key_hash": made.key_hash})
    # The key's public id only (the lookup id printed by `users list`), never the key or its hash.
    audit.record(session, actor_id=actor_id, action="key_issued", target_user_id=user_id,
                 details={"key_id": made.key_id})
    return made.key


def _user(session: Session, name: str) -> Principal:
    row = session.execute(USER_SQL, {"name": name}).first()
    if row is None:
        raise AccountError(f"there is no user called {name!r}")
    return Principal(row.id, row.name, row.role)


def list_users(*, session: Session) -> list[UserRow]:
    return [UserRow(r.id, r.name, r.role, r.created_at, r.active_keys, r.revoked_keys)
            for r in session.execute(LIST_SQL)]


def revoke(*, session: Session, name: str, key_id: str | None = None, actor_id: int | None = None) -> int:
    """Revoke the person's keys (or the one with ``key_id``) and end the web sessions signed in with
    them; returns how many keys were revoked. A request already past its key check holds the key's
    row (``FOR SHARE`` in ``KEY_ROW_SQL``, ``sessions.FIND_SQL``), so this waits for it to finish."""
    if name == BOOTSTRAP:
        raise AccountError("the bootstrap admin has no stored key: unset WITHSENSE_API_TOKEN to end it")
    user = _user(session, name)
    count = session.execute(REVOKE_SQL, {"user_id": user.user_id, "key_id": key_id}).rowcount
    sessions.end_revoked(session=session, user_id=user.user_id)
    if count:
        audit.record(session, actor_id=actor_id, action="key_revoked", target_user_id=user.user_id,
                     details={"key_id": key_id, "revoked": count})
    return count


def bootstrap(*, session: Session) -> Principal:
    """The admin that WITHSENSE_API_TOKEN stands for."""
    return _user(session, BOOTSTRAP)


def authenticate(*, session: Session, token: str) -> Principal:
    """The person a ``ws_`` key belongs to, or ``InvalidKey``."""
    key_id = keys.key_id_of(token)
    row = session.execute(KEY_ROW_SQL, {"key_id": key_id}).first() if key_id else None
    if row is None or not keys.verify(row.key_hash, token):
        raise InvalidKey("the key is not valid")
    if row.revoked_at is not None:
        raise InvalidKey(f"the key was revoked at {row.revoked_at.isoformat(timespec='seconds')}")
    return Principal(row.user_id, row.name, row.role)
