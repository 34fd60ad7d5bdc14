"""An HNSW index per text encoder over its description vectors.

The shortlist's description searches (service/search/shortlist.py) were exact scans of every
description vector of the encoder: 30 % of a million photos described is 300,000 vectors a search.
From now on `withsense train` builds, beside the ranker's photo index, a partial halfvec HNSW index
per text encoder (service/store/hnsw.py: ``description_embeddings_hnsw_m<id>``), and the shortlist
uses them once the library is large enough. A database whose ranker was trained before this change
gets them here. The DDL is written out here (not imported from service/) so this revision stays as
it was when it ran.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEX_PREFIX = "description_embeddings_hnsw_m"


def upgrade() -> None:
    conn = op.get_bind()
    encoders = conn.execute(sa.text(
        "SELECT id, dims FROM models WHERE kind = 'encoder' AND name LIKE 'text:%' ORDER BY id")).all()
    for model_id, dims in encoders:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX_PREFIX}{int(model_id)} ON description_embeddings "
            f"USING hnsw ((embedding::halfvec({int(dims)})) halfvec_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE model_id = {int(model_id)}"
        )


def downgrade() -> None:
    # Every text encoder's index, including those `withsense train` built after the upgrade.
    conn = op.get_bind()
    names = conn.execute(sa.text(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'description_embeddings' AND indexname LIKE :prefix"
    ), {"prefix": INDEX_PREFIX + "%"}).scalars().all()
    for name in names:
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
