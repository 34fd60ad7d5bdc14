"""photo_embeddings.bridge: the photo's zero-shot text-space vector, read by the scorer.

For a ranker's rows, ``embedding`` is the photo in the learned joint space (what the SQL shortlist
compares) and ``bridge`` a second view of it in the same text space made without training (the
ImageNet label bridge, or CLIP's own image vector). Stored so a search reads both with the
shortlist instead of recomputing them from the raw features. NULL for encoder rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photo_embeddings", sa.Column("bridge", pgvector.sqlalchemy.VECTOR(), nullable=True))
    # The analyst view lists columns explicitly; recreate it so analysts see the bridge too.
    op.execute("DROP VIEW analyst_photo_embeddings")
    op.execute(
        """
        CREATE VIEW analyst_photo_embeddings AS
        SELECT p.id AS photo_id, p.file_name, p.split,
               m.id AS model_id, m.kind AS model_kind, m.name AS model_name, m.version AS model_version,
               m.active AS model_active, vector_dims(pe.embedding) AS dims, pe.embedding, pe.bridge
        FROM photo_embeddings pe
        JOIN photos p ON p.id = pe.photo_id
        JOIN models m ON m.id = pe.model_id
        """
    )
    op.execute("GRANT SELECT ON analyst_photo_embeddings TO analyst")


def downgrade() -> None:
    op.execute("DROP VIEW analyst_photo_embeddings")
    op.execute(
        """
        CREATE VIEW analyst_photo_embeddings AS
        SELECT p.id AS photo_id, p.file_name, p.split,
               m.id AS model_id, m.kind AS model_kind, m.name AS model_name, m.version AS model_version,
               m.active AS model_active, vector_dims(pe.embedding) AS dims, pe.embedding
        FROM photo_embeddings pe
        JOIN photos p ON p.id = pe.photo_id
        JOIN models m ON m.id = pe.model_id
        """
    )
    op.execute("GRANT SELECT ON analyst_photo_embeddings TO analyst")
    op.drop_column("photo_embeddings", "bridge")
