"""photos.shows_child: the content rule's mark on a photo, kept in the database for analysts.

A photo is marked when one of its stored descriptions is about a child (``service.policy``) or its
uploader says so. Marked photos still rank; the service withholds their image and replaces flagged
descriptions with the legal notice. The backfill runs the rule over the descriptions already
stored (the rule lives in Python, so it cannot be a SQL expression).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

def upgrade() -> None:
    from service.policy import is_about_children

    op.add_column("photos", sa.Column("shows_child", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("photos", sa.Column("shows_child_source", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_photos_shows_child_source"), "photos",
        "shows_child_source IS NULL OR shows_child_source IN ('description', 'uploader')")
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT photo_id, text FROM descriptions WHERE photo_id IS NOT NULL")).all()
    marked = sorted({photo_id for photo_id, text_ in rows if is_about_children(text_)})
    if marked:
        conn.execute(sa.text("UPDATE photos SET shows_child = true, shows_child_source = 'description' "
                             "WHERE id = ANY(:ids)"), {"ids": marked})


def downgrade() -> None:
    op.drop_constraint(op.f("ck_photos_shows_child_source"), "photos", type_="check")
    op.drop_column("photos", "shows_child_source")
    op.drop_column("photos", "shows_child")
