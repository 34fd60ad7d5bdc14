"""Shortlist storage: joint vectors kept in the row (STORAGE MAIN), and an HNSW index for the
rankers already active when this revision runs.

A ranker's row holds two 384-d vectors (embedding + bridge, ~3 KB), above PostgreSQL's 2 KB
TOAST threshold, so the toaster moves one of them out of line, and with equal sizes it took the
``embedding`` that every exact shortlist scan reads, so each row compared cost a TOAST index
lookup. STORAGE MAIN on ``embedding`` makes ``bridge`` the one moved out (it is read only for the
~100 shortlisted rows); an exact scan over 5,000 such rows went from 44 to 20 ms p50 on this
machine. Encoder rows (image features of 2,280-9,120 floats, bridge NULL) still go out of line,
as MAIN allows when a row cannot fit. Existing ranker rows are rewritten so they take the new
layout (a value that is only copied would keep its old TOAST pointer).

From now on `withsense train` builds a partial halfvec HNSW index per published ranker
(service/store/hnsw.py: ``photo_embeddings_hnsw_m<id>``) before activating it, and the shortlist
uses it once the library is large enough. A database trained before this change gets the index
for its active rankers here, so it does not have to be retrained. The DDL is written out here
(not imported from service/) so this revision stays as it was when it ran.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX_PREFIX = "photo_embeddings_hnsw_m"


def upgrade() -> None:
    op.execute("ALTER TABLE photo_embeddings ALTER COLUMN embedding SET STORAGE MAIN")
    # A new datum (through real[]) is toasted afresh under the new storage rule.
    op.execute("UPDATE photo_embeddings SET embedding = CAST(CAST(embedding AS real[]) AS vector) "
               "WHERE bridge IS NOT NULL")
    conn = op.get_bind()
    rankers = conn.execute(sa.text("SELECT id, dims FROM models WHERE kind = 'ranker' AND active")).all()
    for model_id, dims in rankers:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX_PREFIX}{int(model_id)} ON photo_embeddings "
            f"USING hnsw ((embedding::halfvec({int(dims)})) halfvec_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE model_id = {int(model_id)}"
        )


def downgrade() -> None:
    # Every ranker's index, including those `withsense train` built after the upgrade.
    conn = op.get_bind()
    names = conn.execute(sa.text(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'photo_embeddings' AND indexname LIKE :prefix"
    ), {"prefix": INDEX_PREFIX + "%"}).scalars().all()
    for name in names:
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
    op.execute("ALTER TABLE photo_embeddings ALTER COLUMN embedding SET STORAGE DEFAULT")
