"""The HNSW indexes of the shortlist: one partial expression index per ranker over its photo vectors,
and one per text encoder over its description vectors.

``photo_embeddings`` and ``description_embeddings`` hold the vectors of every model, with no fixed
dimension, so each index is partial (``WHERE model_id = <model>``) over the vectors cast to
``halfvec(<dims>)``: the shape pgvector documents for a column shared by several models. halfvec
halves the index with no loss of recall@100 here (reports/bench/scale.md). `withsense train` builds
the ranker's index, and the text encoders' ones not built yet, before it activates the ranker
(migration 0014 builds the text encoders' for a database trained before them); the shortlist uses
them once the ranker covers ``WITHSENSE_HNSW_MIN_PHOTOS`` photos. An index, once built, takes
new rows as they are written. A common filter value has partial indexes of its own beside these
(service/store/facet_indexes.py).
"""
from __future__ import annotations

from sqlalchemy import Engine, text

from service.store.db import driver_connection, driver_errors

INDEX_PREFIX = "photo_embeddings_hnsw_m"
DESCRIPTION_INDEX_PREFIX = "description_embeddings_hnsw_m"
# m and ef_construction as measured in scripts/bench_scale.py (recall@100 >= 0.97 at 1M vectors).
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64
BUILD_MEMORY_MB = 512
# The text encoders' rows (service/store/model_rows.py registers them as 'text:<name>').
TEXT_ENCODERS_SQL = text("SELECT id, dims FROM models WHERE kind = 'encoder' AND name LIKE 'text:%' ORDER BY id")


def index_name(model_id: int) -> str:
    return f"{INDEX_PREFIX}{int(model_id)}"


def description_index_name(model_id: int) -> str:
    return f"{DESCRIPTION_INDEX_PREFIX}{int(model_id)}"


def _ddl(name: str, table: str, model_id: int, dims: int, concurrently: bool) -> str:
    # DDL takes no bind parameters; both numbers are integers from our own models row.
    return (f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {name} "
            f"ON {table} USING hnsw ((embedding::halfvec({int(dims)})) halfvec_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE model_id = {int(model_id)}")


def index_ddl(model_id: int, dims: int, *, concurrently: bool = True) -> str:
    return _ddl(index_name(model_id), "photo_embeddings", model_id, dims, concurrently)


def description_index_ddl(model_id: int, dims: int, *, concurrently: bool = True) -> str:
    return _ddl(description_index_name(model_id), "description_embeddings", model_id, dims, concurrently)


def run_maintenance(engine: Engine, *statements: str, memory_mb: int = BUILD_MEMORY_MB) -> None:
    """Index DDL outside a transaction (CONCURRENTLY needs that), with the build's memory. Sent by
    psycopg without parameters, so nothing in a statement is read as a placeholder (a facet index's
    predicate quotes a photographer's text: service/store/facet_indexes.py)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn, driver_errors(conn):
        raw = driver_connection(conn)
        raw.execute(f"SET maintenance_work_mem = '{int(memory_mb)}MB'")
        for statement in statements:
            raw.execute(statement)


def build_description_indexes(engine: Engine, *, memory_mb: int = BUILD_MEMORY_MB) -> list[str]:
    """Every text encoder's description index not built yet (IF NOT EXISTS: a built one costs
    nothing), then ANALYZE; returns their names."""
    with engine.connect() as conn:
        encoders = conn.execute(TEXT_ENCODERS_SQL).all()
    run_maintenance(engine, *(description_index_ddl(m, d) for m, d in encoders), "ANALYZE description_embeddings",
         memory_mb=memory_mb)
    return [description_index_name(m) for m, _ in encoders]


def build_index(engine: Engine, model_id: int, dims: int, *, memory_mb: int = BUILD_MEMORY_MB) -> str:
    """The ranker's index (CONCURRENTLY: uploads keep writing meanwhile) and the text encoders'
    description indexes, each ANALYZEd; returns the ranker's index name. ``memory_mb``: a graph
    larger than this is built on disk, several times slower (~1.5 GB for a million photos)."""
    run_maintenance(engine, index_ddl(model_id, dims), "ANALYZE photo_embeddings", memory_mb=memory_mb)
    build_description_indexes(engine, memory_mb=memory_mb)
    return index_name(model_id)


def drop_index(engine: Engine, model_id: int) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(model_id)}"))
