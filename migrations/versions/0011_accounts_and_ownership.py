"""Accounts and ownership: users, API keys kept as hashes, photos' owners and tombstones, one live
vote per person per (photo, description) or (photo, query).

- ``users``: a person (name, role ``photographer`` | ``rater`` | ``admin``). The row ``bootstrap``
  (admin) is the author of writes made with the shared ``WITHSENSE_API_TOKEN`` (demo, tests).
- ``api_keys``: a key's public id (``key_id``, the lookup) and its argon2id hash, never the key;
  ``revoked_at`` ends it.
- ``photos.owner_id`` (NULL for dataset photos: only admins change those), ``photos.deleted_at`` and
  ``deleted_by``: a deleted photo stays as a tombstone row, so its descriptions and ratings stay for
  analysts, marked by ``deleted_at``; its files, vectors and queue jobs are removed when it is deleted.
- ``descriptions.author_id``, ``crowd_votes.voter_id``: who wrote it, from the key. Two partial
  unique indexes make a person's later vote on the same pair replace the earlier one
  (``INSERT ... ON CONFLICT DO UPDATE``); votes from before (no voter) are left as they were.
- ``analyst_users``: the users without anything about their keys but counts and dates. The analyst
  role reads this view and neither table (migration 0003's default privileges would grant them).

Revision ID: 0011
Revises: 0009 (re-chained onto 0010 at merge)
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROLES = "role IN ('photographer', 'rater', 'admin')"

ANALYST_USERS = """
CREATE VIEW analyst_users AS
SELECT u.id AS user_id, u.name, u.role, u.created_at,
       count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS active_keys,
       count(k.id) FILTER (WHERE k.revoked_at IS NOT NULL) AS revoked_keys,
       max(k.created_at) AS last_key_created_at,
       max(k.revoked_at) AS last_key_revoked_at
FROM users u
LEFT JOIN api_keys k ON k.user_id = u.id
GROUP BY u.id
"""


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(ROLES, name=op.f("ck_users_role")),
        sa.CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'", name=op.f("ck_users_name_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("key_id ~ '^[0-9a-f]{12}$'", name=op.f("ck_api_keys_key_id_hex")),
        sa.CheckConstraint("key_hash LIKE '$argon2id$%'", name=op.f("ck_api_keys_argon2id")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
    )
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"], unique=False)
    op.execute("INSERT INTO users (name, role) VALUES ('bootstrap', 'admin')")

    op.add_column("photos", sa.Column("owner_id", sa.BigInteger(), nullable=True))
    op.add_column("photos", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("photos", sa.Column("deleted_by", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_photos_owner_id_users"), "photos", "users", ["owner_id"], ["id"])
    op.create_foreign_key(op.f("fk_photos_deleted_by_users"), "photos", "users", ["deleted_by"], ["id"])
    op.create_index(op.f("ix_photos_owner_id"), "photos", ["owner_id"], unique=False)

    op.add_column("descriptions", sa.Column("author_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_descriptions_author_id_users"), "descriptions", "users", ["author_id"], ["id"])

    op.add_column("crowd_votes", sa.Column("voter_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_crowd_votes_voter_id_users"), "crowd_votes", "users", ["voter_id"], ["id"])
    op.create_index("uq_crowd_votes_voter_description", "crowd_votes", ["voter_id", "photo_id", "description_id"],
                    unique=True, postgresql_where=sa.text("voter_id IS NOT NULL AND description_id IS NOT NULL"))
    op.create_index("uq_crowd_votes_voter_query", "crowd_votes", ["voter_id", "photo_id", "query"],
                    unique=True, postgresql_where=sa.text("voter_id IS NOT NULL AND description_id IS NULL"))

    op.execute(ANALYST_USERS)
    # 0003's default privileges grant every new table to the analyst: these two are taken back, and
    # only the view (no key ids, no hashes) is granted.
    op.execute("REVOKE ALL ON users, api_keys FROM analyst")
    op.execute("GRANT SELECT ON analyst_users TO analyst")
    # Who wrote a description or cast a vote is the analyst's to see. Granted per column: 0010 (issue 20)
    # narrows the analyst to listed columns of these tables, so new columns need their own grant;
    # under a table-wide grant this adds nothing. Dropping the columns (downgrade) drops these grants.
    op.execute("GRANT SELECT (voter_id) ON crowd_votes TO analyst")
    op.execute("GRANT SELECT (author_id) ON descriptions TO analyst")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS analyst_users")
    op.drop_index("uq_crowd_votes_voter_query", table_name="crowd_votes",
                  postgresql_where=sa.text("voter_id IS NOT NULL AND description_id IS NULL"))
    op.drop_index("uq_crowd_votes_voter_description", table_name="crowd_votes",
                  postgresql_where=sa.text("voter_id IS NOT NULL AND description_id IS NOT NULL"))
    op.drop_constraint(op.f("fk_crowd_votes_voter_id_users"), "crowd_votes", type_="foreignkey")
    op.drop_column("crowd_votes", "voter_id")
    op.drop_constraint(op.f("fk_descriptions_author_id_users"), "descriptions", type_="foreignkey")
    op.drop_column("descriptions", "author_id")
    op.drop_index(op.f("ix_photos_owner_id"), table_name="photos")
    op.drop_constraint(op.f("fk_photos_deleted_by_users"), "photos", type_="foreignkey")
    op.drop_constraint(op.f("fk_photos_owner_id_users"), "photos", type_="foreignkey")
    op.drop_column("photos", "deleted_by")
    op.drop_column("photos", "deleted_at")
    op.drop_column("photos", "owner_id")
    op.drop_index(op.f("ix_api_keys_user_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
