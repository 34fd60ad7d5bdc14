"""models.package_versions: the package versions that made a model's vectors.

A dict of package -> version (ml/versions.py) recorded when the row is created; a search refuses a
model whose recorded versions differ from the installed ones (``ModelMismatch``). Rows that exist
before this revision get ``{}``: nothing was recorded for them, so they are not checked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("package_versions", postgresql.JSONB(astext_type=sa.Text()),
                                      server_default=sa.text("'{}'::jsonb"), nullable=False))


def downgrade() -> None:
    op.drop_column("models", "package_versions")
