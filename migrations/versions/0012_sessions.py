"""Web sessions: the page signs in by sending a key once and holds an httpOnly cookie after that.

- ``sessions``: one row per signed-in browser. ``id`` is the SHA-256 of the cookie's random token
  (the token itself is never stored, so a copy of the table signs nobody in), ``user_id`` the person,
  ``key_id`` the ``api_keys`` row the sign-in used (NULL for the bootstrap token; deleting or
  revoking the key ends the session), ``csrf`` the token the page sends with each write,
  ``created_at``, ``expires_at`` (``WITHSENSE_SESSION_HOURS`` after sign-in) and ``last_seen``.
- The analyst role gets nothing here (0003's default privileges would grant the table).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=True),
        sa.Column("csrf", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id ~ '^[0-9a-f]{64}$'", name=op.f("ck_sessions_id_sha256")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_sessions_key_id_api_keys"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_key_id"), "sessions", ["key_id"], unique=False)
    op.create_index(op.f("ix_sessions_expires_at"), "sessions", ["expires_at"], unique=False)
    op.execute("REVOKE ALL ON sessions FROM analyst")


def downgrade() -> None:
    op.drop_index(op.f("ix_sessions_expires_at"), table_name="sessions")
    op.drop_index(op.f("ix_sessions_key_id"), table_name="sessions")
    op.drop_table("sessions")
