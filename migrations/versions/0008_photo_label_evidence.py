"""photo_embeddings: what the listwise reranker reads about a photo besides its two vectors.

For a ranker's rows: ``label_ids`` / ``label_probs`` are the photo's top ImageNet classes and
their probabilities (the reranker's label evidence: the query's similarity to each label phrase,
weighted by its probability), and ``mapper_norm`` the length of the kernel ridge output before
normalising (small for a photo far from every training photo). Computed once at publish or
upload time, read with the shortlist, never recomputed per search. NULL for encoder rows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photo_embeddings", sa.Column("label_ids", postgresql.ARRAY(sa.Integer()), nullable=True))
    op.add_column("photo_embeddings", sa.Column("label_probs", postgresql.ARRAY(sa.REAL()), nullable=True))
    op.add_column("photo_embeddings", sa.Column("mapper_norm", sa.REAL(), nullable=True))


def downgrade() -> None:
    op.drop_column("photo_embeddings", "mapper_norm")
    op.drop_column("photo_embeddings", "label_probs")
    op.drop_column("photo_embeddings", "label_ids")
