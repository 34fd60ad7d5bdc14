"""An HNSW index per text encoder over its description vectors, and the filters' expressions indexed.

The shortlist's description searches (service/search/shortlist.py) were exact scans of every
description vector of the encoder: 30 % of a million photos described is 300,000 vectors a search.
From now on `withsense train` builds, beside the ranker's photo index, a partial halfvec HNSW index
per text encoder (service/store/hnsw.py: ``description_embeddings_hnsw_m<id>``), and the shortlist
uses them once the library is large enough. A database whose ranker was trained before this change
gets them here. The DDL is written out here (not imported from service/) so this revision stays as
it was when it ran.

The shortlist's filters now reach the planner as plain predicates (``lower(p.place) = lower(..)``).
Without statistics on the expression the planner guessed that a place holds 0.5 % of the photos and,
at a million photos, matched the descriptions of a 10 % place by an exact scan (3.4 s p50). The
indexes on ``lower(place)``, ``lower(camera)`` and ``lower(uploader)`` give it the statistics, and
serve a filter that keeps only a few photos (an HNSW scan would walk past them).

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
FILTER_COLUMNS = ("place", "camera", "uploader")


def upgrade() -> None:
    for column in FILTER_COLUMNS:
        op.create_index(f"ix_photos_lower_{column}", "photos", [sa.text(f"lower({column})")])
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
    for column in FILTER_COLUMNS:
        op.drop_index(f"ix_photos_lower_{column}", table_name="photos")
