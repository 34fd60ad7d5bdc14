"""embedding_jobs: photos stored but not yet searchable, waiting for their image vectors.

An upload commits the photo, its fingerprint and its description at once and leaves a row here;
a worker claims rows with ``FOR UPDATE SKIP LOCKED``, writes the image features and the active
ranker's vectors, and deletes the row in the same transaction. A worker that dies mid-job rolls
back, so the row is claimed again; one whose job raises records the error and counts the attempt,
and the job is ``failed`` after too many.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_jobs",
        sa.Column("photo_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('queued', 'failed')", name=op.f("ck_embedding_jobs_state")),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], name=op.f("fk_embedding_jobs_photo_id_photos"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("photo_id", name=op.f("pk_embedding_jobs")),
    )
    # What a worker scans: the queued jobs, oldest first.
    op.create_index("ix_embedding_jobs_queued", "embedding_jobs", ["enqueued_at"], unique=False,
                    postgresql_where=sa.text("state = 'queued'"))


def downgrade() -> None:
    op.drop_index("ix_embedding_jobs_queued", table_name="embedding_jobs", postgresql_where=sa.text("state = 'queued'"))
    op.drop_table("embedding_jobs")
