"""An HNSW index of its own for each common filter value: a place (camera, uploader) that many photos share.

A search filtered by a value that 10 % of a million photos carry walks the whole library's graph and
keeps one vector in ten it meets: three such walks cost ~45 of a filtered search's ~50 ms
(docs/scaling.md). pgvector's documented answer for a filter with few common values is a partial
index per value. A facet (``place:paris``, migration 0018) carried by at least
``WITHSENSE_FACET_INDEX_MIN_SHARE`` of the active ranker's photos gets one over the ranker's photo
vectors and one per text encoder over the description vectors:
``... WHERE model_id = <model> AND facets @> '{place:paris}'``. The shortlist writes each filter as
that very predicate (service/search/shortlist.py), so the planner proves the index serves it and
walks a graph of only that value's vectors; a rarer value keeps the GIN index or the whole graph.

`withsense train` (for the ranker it activates, else for the active one, so a scheduled
`train --if-better` follows a library that grows by uploads) and `withsense ingest` refresh them
(``refresh``): the missing ones built CONCURRENTLY (uploads keep writing), those of values no
longer common dropped. Below
``WITHSENSE_HNSW_MIN_PHOTOS`` the shortlist scans exactly and none is built. An index, once built,
takes new rows and edits as they come: its predicate reads the row's own facets.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from psycopg import sql
from sqlalchemy import Connection, Engine, text

from service.config import Settings
from service.store.db import driver_connection
from service.store.hnsw import (
    DESCRIPTION_INDEX_PREFIX,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    INDEX_PREFIX,
    TEXT_ENCODERS_SQL,
    run_maintenance,
)
from service.store.model_rows import active_ranker

# The facets of the ranker's photos, with how many photos carry each; the common ones first.
FACET_COUNTS_SQL = text(
    """SELECT f.facet, count(*) AS photos
       FROM photo_embeddings e CROSS JOIN LATERAL unnest(e.facets) AS f(facet)
       WHERE e.model_id = :model_id
       GROUP BY f.facet HAVING count(*) >= :at_least
       ORDER BY photos DESC, f.facet"""
)
RANKER_PHOTOS_SQL = text("SELECT count(*) FROM photo_embeddings WHERE model_id = :model_id")
# Every facet index of these models, built or half built (a CONCURRENTLY build that failed leaves
# an invalid one behind, which is dropped and built again).
FACET_INDEXES_SQL = text(
    """SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE c.relname LIKE ANY(:patterns)"""
)


@dataclass(frozen=True)
class FacetIndex:
    name: str
    table: str
    model_id: int
    dims: int
    facet: str


def facet_index_name(prefix: str, model_id: int, facet: str) -> str:
    """``<prefix><model>_f<10 hex>``: a facet is free text, so its name carries a digest (63 bytes at most)."""
    return f"{prefix}{int(model_id)}_f{hashlib.sha256(facet.encode()).hexdigest()[:10]}"


def _pattern(prefix: str, model_id: int) -> str:
    return f"{prefix}{int(model_id)}\\_f%"


def wanted(conn: Connection, model_id: int, dims: int, encoders: list, *, min_share: float,
           min_photos: int) -> list[FacetIndex]:
    """The facet indexes the ranker's library calls for (``encoders``: the text encoders' (id, dims)):
    those of every facet at least ``min_share`` of its photos carry, none while it has fewer than
    ``min_photos`` (the shortlist scans exactly)."""
    n = conn.execute(RANKER_PHOTOS_SQL, {"model_id": model_id}).scalar_one()
    if n < max(1, min_photos) or min_share <= 0:
        return []
    facets = conn.execute(FACET_COUNTS_SQL, {"model_id": model_id,
                                             "at_least": max(1, int(min_share * n))}).scalars().all()
    spaces = [(INDEX_PREFIX, "photo_embeddings", model_id, dims),
              *((DESCRIPTION_INDEX_PREFIX, "description_embeddings", m, d) for m, d in encoders)]
    return [FacetIndex(facet_index_name(prefix, m, facet), table, m, d, facet)
            for facet in facets for prefix, table, m, d in spaces]


def _ddl(conn: Connection, index: FacetIndex) -> str:
    # The facet is free text from a photographer: quoted by psycopg, never pasted.
    statement = sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING hnsw "
        "((embedding::halfvec({dims})) halfvec_cosine_ops) WITH (m = {m}, ef_construction = {ef}) "
        "WHERE model_id = {model} AND facets @> ARRAY[{facet}]::text[]"
    ).format(name=sql.Identifier(index.name), table=sql.Identifier(index.table), dims=sql.Literal(int(index.dims)),
             m=sql.Literal(HNSW_M), ef=sql.Literal(HNSW_EF_CONSTRUCTION), model=sql.Literal(int(index.model_id)),
             facet=sql.Literal(index.facet))
    return statement.as_string(driver_connection(conn))


def refresh(engine: Engine, model_id: int, dims: int, *, min_share: float, min_photos: int) -> dict[str, list[str]]:
    """Build the facet indexes the library calls for and drop the others of these models (and any
    left invalid by a failed build); returns the names built and dropped."""
    with engine.connect() as conn:
        encoders = conn.execute(TEXT_ENCODERS_SQL).all()
        indexes = wanted(conn, model_id, dims, encoders, min_share=min_share, min_photos=min_photos)
        models = sorted({model_id, *(m for m, _ in encoders)})
        patterns = [_pattern(prefix, m) for m in models for prefix in (INDEX_PREFIX, DESCRIPTION_INDEX_PREFIX)]
        existing = {r.relname: r.indisvalid for r in conn.execute(FACET_INDEXES_SQL, {"patterns": patterns})}
        keep = {index.name for index in indexes}
        drop = sorted(name for name, valid in existing.items() if name not in keep or not valid)
        build = [index for index in indexes if index.name not in existing or not existing[index.name]]
        ddl = [_ddl(conn, index) for index in build]
    run_maintenance(engine, *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in drop), *ddl,
                    *(("ANALYZE photo_embeddings", "ANALYZE description_embeddings") if build else ()))
    return {"built": [index.name for index in build], "dropped": drop}


def refresh_active(engine: Engine, settings: Settings) -> dict[str, list[str]] | None:
    """``refresh`` for the active ranker of these encoders (None when there is none)."""
    with engine.connect() as conn:
        model = active_ranker(conn, settings.encoder_key)
    if model is None:
        return None
    return refresh(engine, model.id, model.dims, min_share=settings.facet_index_min_share,
                   min_photos=settings.hnsw_min_photos)
