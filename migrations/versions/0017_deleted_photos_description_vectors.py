"""A deleted photo's descriptions lose their vectors, as its own vectors are lost.

Deleting a photo (``uploads.delete_photo``) tombstones its row and deletes its vectors; from this
revision on it deletes its descriptions' vectors too (the texts stay for analysts, marked by
``photos.deleted_at``). So a description search needs no probe of ``photos`` to skip a tombstone:
one primary-key probe per candidate description, about 0.5 ms of a search's ~10 at a million photos
(docs/scaling.md). This revision deletes the vectors of descriptions of photos deleted before it,
and `withsense ingest` no longer computes vectors for them.

The downgrade restores nothing: the vectors are derived data, and `withsense ingest` under the
older code computes every missing one again.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """DELETE FROM description_embeddings de
           USING descriptions d, photos p
           WHERE de.description_id = d.id AND d.photo_id = p.id AND p.deleted_at IS NOT NULL"""
    )


def downgrade() -> None:
    pass
