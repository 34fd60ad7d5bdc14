"""The HNSW index of a ranker's photo vectors: one partial expression index per ranker.

``photo_embeddings`` holds the vectors of every model, with no fixed dimension, so the index is
partial (``WHERE model_id = <ranker>``) over the vectors cast to ``halfvec(<dims>)``: the shape
pgvector documents for a column shared by several models. halfvec halves the index with no loss of
recall@100 here (reports/bench/scale.md). `withsense train` builds it before it activates the
ranker; the shortlist uses it once the ranker covers ``WITHSENSE_HNSW_MIN_PHOTOS`` photos.
"""
from __future__ import annotations

from sqlalchemy import Engine, text

INDEX_PREFIX = "photo_embeddings_hnsw_m"
# m and ef_construction as measured in scripts/bench_scale.py (recall@100 >= 0.97 at 1M vectors).
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64


def index_name(model_id: int) -> str:
    return f"{INDEX_PREFIX}{int(model_id)}"


def index_ddl(model_id: int, dims: int, *, concurrently: bool = True) -> str:
    # DDL takes no bind parameters; both numbers are integers from our own models row.
    return (f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {index_name(model_id)} "
            f"ON photo_embeddings USING hnsw ((embedding::halfvec({int(dims)})) halfvec_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE model_id = {int(model_id)}")


def build_index(engine: Engine, model_id: int, dims: int) -> str:
    """Build (CONCURRENTLY: uploads keep writing meanwhile) and ANALYZE; returns the index name."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        conn.execute(text(index_ddl(model_id, dims)))
        conn.execute(text("ANALYZE photo_embeddings"))
    return index_name(model_id)


def drop_index(engine: Engine, model_id: int) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(model_id)}"))
