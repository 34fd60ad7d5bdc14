"""Shared rate limits and the audit trail.

- ``rate_counters``: hits per (bucket, client, window start), one row per fixed window of 60 s. Every
  worker of every server counts in the same row (``INSERT ... ON CONFLICT DO UPDATE SET n = n + 1
  RETURNING n``: one statement per limited request). UNLOGGED: counters are worth nothing after a
  crash (PostgreSQL empties an unlogged table on crash recovery; a limit that starts over once is
  harmless), and writing no WAL keeps the statement on the search path cheap. Unlogged tables are
  not streamed to replicas, which is right: only the primary counts. Old windows are deleted by
  the service now and then (service/http/ratelimit.py).
- ``audit_log``: one row per write (upload, description, vote, edit, delete, key issued, key
  revoked, sign-in): when, who (``actor_id``), what (``action``), the photo or user it touched,
  and ``details`` (JSON, never a key or a hash). Written in the transaction of the write it records.
  Append-only for everyone, the service's own role included: the service connects as the database
  owner, and an owner may always grant itself UPDATE back, so grants alone cannot make it real. A
  trigger refuses UPDATE and DELETE row by row and TRUNCATE per statement; taking it away needs
  ALTER TABLE (``DISABLE TRIGGER``) or DROP, which a migration does, never the running service.
- ``analyst_audit``: the trail for analysts, without ``details`` (free text that could one day hold
  something private) and without the actor's key id; who, when, what and which photo or user.

Revision ID: 0013
Revises: 0011 (re-chained at merge: 0012 is the sessions table)
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ACTIONS = ("upload", "describe", "vote", "edit", "delete", "key_issued", "key_revoked", "user_added", "sign_in")

APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

ANALYST_AUDIT = """
CREATE VIEW analyst_audit AS
SELECT a.id AS audit_id, a.at, a.actor_id, u.name AS actor_name, u.role AS actor_role,
       a.action, a.photo_id, a.target_user_id
FROM audit_log a
LEFT JOIN users u ON u.id = a.actor_id
"""


def upgrade() -> None:
    op.execute("""
        CREATE UNLOGGED TABLE rate_counters (
            bucket text NOT NULL,
            client text NOT NULL,
            window_start timestamptz NOT NULL,
            n integer NOT NULL DEFAULT 1,
            CONSTRAINT pk_rate_counters PRIMARY KEY (bucket, client, window_start)
        )""")
    op.create_index(op.f("ix_rate_counters_window_start"), "rate_counters", ["window_start"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("photo_id", sa.BigInteger(), nullable=True),
        sa.Column("target_user_id", sa.BigInteger(), nullable=True),
        sa.Column("details", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.CheckConstraint("action IN (" + ", ".join(repr(a) for a in ACTIONS) + ")",
                           name=op.f("ck_audit_log_action")),
        # No foreign keys: a record outlives what it names (a user or photo row is never deleted
        # today, but the trail must not be what stops it).
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor_id", "id"])
    op.create_index("ix_audit_log_photo_id", "audit_log", ["photo_id", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "id"])
    op.execute(APPEND_ONLY)
    op.execute("""CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
                  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""")
    op.execute("""CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""")
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC")

    op.execute(ANALYST_AUDIT)
    # 0003's default privileges grant every new table to the analyst: these two are taken back, and
    # only the view is granted.
    op.execute("REVOKE ALL ON audit_log, rate_counters FROM analyst")
    op.execute("GRANT SELECT ON analyst_audit TO analyst")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS analyst_audit")
    op.drop_table("audit_log")  # DROP is not UPDATE, DELETE or TRUNCATE: the triggers go with it
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("rate_counters")
