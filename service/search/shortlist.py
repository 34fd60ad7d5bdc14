"""The SQL shortlist: one named, parameterised statement, in two forms (exact scan or HNSW index).

Both are the hybrid search of pgvector-python's example: two named candidate searches, then their
union with both signals per photo. Run through psycopg directly with binary transfer (parsing
~150 vectors from text would cost more than the query itself), in pipeline mode, so the
``SET LOCAL`` lines and the query travel to the server in one round trip.
  semantic_search     - nearest photos to the query in the joint space of the active ranker;
  description_search  - photos whose descriptions (written for that photo, never the held-out
                        test queries) are nearest to the query's text vector;
  description_match   - for every candidate, its best-matching description (NULL when it has none).
  multilingual_description_search - the same in USE multilingual's space (ml/multilingual.py), so
                        a description in one language is found by a query in another.
With text_model_id NULL the description side is empty and this is the image-only shortlist; with
multilingual_model_id NULL (no USE vectors stored, or the image-only search) so is USE's.
A deleted photo has no vectors (``uploads.delete_photo``), so the joins to ``photo_embeddings`` drop
it; its descriptions stay, so the description sides skip its tombstone, lest they take shortlist places.
``query_vector`` is the query in the ranker's space (photo side), ``text_vector`` the text
encoder's own vector and ``multilingual_vector`` USE's (description side).
"""
from __future__ import annotations

from functools import lru_cache

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection

from service.store.db import driver_connection

# Filters on the photo, shared by both candidate searches; each is off when its parameter is NULL.
# taken_after/taken_before form a half-open interval [after, before).
_PHOTO_FILTERS = """
      (CAST(%(splits)s AS text[]) IS NULL OR p.split = ANY(CAST(%(splits)s AS text[])))
      AND (CAST(%(camera)s AS text) IS NULL OR lower(p.camera) = lower(CAST(%(camera)s AS text)))
      AND (CAST(%(place)s AS text) IS NULL OR lower(p.place) = lower(CAST(%(place)s AS text)))
      AND (CAST(%(uploader)s AS text) IS NULL OR lower(p.uploader) = lower(CAST(%(uploader)s AS text)))
      AND (CAST(%(taken_after)s AS timestamptz) IS NULL OR p.taken_at >= CAST(%(taken_after)s AS timestamptz))
      AND (CAST(%(taken_before)s AS timestamptz) IS NULL OR p.taken_at < CAST(%(taken_before)s AS timestamptz))
"""


def _hybrid_shortlist_sql(photo_distance: str) -> str:
    return f"""
    WITH semantic_search AS (
        SELECT e.photo_id
        FROM photo_embeddings e
        JOIN photos p ON p.id = e.photo_id
        WHERE e.model_id = %(model_id)s AND {_PHOTO_FILTERS}
        ORDER BY {photo_distance}
        LIMIT %(shortlist_size)s
    ), description_search AS (
        SELECT d.photo_id
        FROM description_embeddings de
        JOIN descriptions d ON d.id = de.description_id
        JOIN photos p ON p.id = d.photo_id
        WHERE de.model_id = %(text_model_id)s AND d.source <> 'test' AND p.deleted_at IS NULL AND {_PHOTO_FILTERS}
        ORDER BY de.embedding <=> %(text_vector)s
        LIMIT %(shortlist_size)s
    ), multilingual_description_search AS (
        SELECT d.photo_id
        FROM description_embeddings de
        JOIN descriptions d ON d.id = de.description_id
        JOIN photos p ON p.id = d.photo_id
        WHERE de.model_id = %(multilingual_model_id)s AND d.source <> 'test' AND p.deleted_at IS NULL
          AND {_PHOTO_FILTERS}
        ORDER BY de.embedding <=> %(multilingual_vector)s
        LIMIT %(shortlist_size)s
    ), candidates AS (
        SELECT photo_id FROM semantic_search
        UNION
        SELECT photo_id FROM description_search
        UNION
        SELECT photo_id FROM multilingual_description_search
    ), description_match AS (
        -- CASE, not FILTER: each space's vectors only ever meet a query vector of their own dimension
        SELECT d.photo_id,
               max(CASE WHEN de.model_id = %(text_model_id)s THEN 1 - (de.embedding <=> %(text_vector)s) END) AS best,
               max(CASE WHEN de.model_id = %(multilingual_model_id)s
                        THEN 1 - (de.embedding <=> %(multilingual_vector)s) END) AS best_multilingual
        FROM candidates c
        JOIN descriptions d ON d.photo_id = c.photo_id AND d.source <> 'test'
        JOIN description_embeddings de ON de.description_id = d.id
             AND de.model_id IN (%(text_model_id)s, %(multilingual_model_id)s)
        GROUP BY d.photo_id
    )
    SELECT p.id AS photo_id, p.file_name, p.shows_child, e.embedding AS photo_vector, e.bridge AS photo_bridge,
           e.label_ids, e.label_probs, e.mapper_norm,
           1 - (e.embedding <=> %(query_vector)s) AS similarity,
           dm.best AS description_match, dm.best_multilingual AS multilingual_description_match
    FROM candidates c
    JOIN photos p ON p.id = c.photo_id
    JOIN photo_embeddings e ON e.photo_id = p.id AND e.model_id = %(model_id)s
    LEFT JOIN description_match dm ON dm.photo_id = p.id
    ORDER BY similarity DESC, p.id
"""


# Exact: every photo vector of the ranker is compared (full precision); right for small libraries.
EXACT_SHORTLIST_SQL = _hybrid_shortlist_sql("e.embedding <=> %(query_vector)s")


@lru_cache(maxsize=8)
def indexed_shortlist_sql(dims: int) -> str:
    """The same statement ordered by the expression the ranker's HNSW index holds
    (service/store/hnsw.py), so the planner can serve semantic_search from it."""
    return _hybrid_shortlist_sql(f"e.embedding::halfvec({int(dims)}) <=> CAST(%(query_vector)s AS halfvec({int(dims)}))")


def fetch_shortlist(conn: Connection, params: dict, *, use_index: bool, dims: int, ef_search: int,
                    filtered: bool) -> list:
    """Candidate rows for one query. With the index: ``hnsw.ef_search`` for this transaction, and an
    iterative scan when filters are set (a plain HNSW scan would return only the filtered share of
    its ef_search candidates: recall 0.20 at a 10 % filter in reports/bench/scale.md)."""
    raw = driver_connection(conn)
    with raw.pipeline(), raw.cursor(binary=True, row_factory=namedtuple_row) as cur:
        if use_index:
            # Integers from our own settings: SET takes no bind parameters.
            cur.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            cur.execute(f"SET LOCAL hnsw.iterative_scan = {'relaxed_order' if filtered else 'off'}")
            # The index is partial (model_id = <ranker>): a generic plan of a prepared statement could
            # not prove that from a parameter and would fall back to a full scan.
            cur.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            cur.execute(indexed_shortlist_sql(dims), params)
        else:
            cur.execute(EXACT_SHORTLIST_SQL, params)
        return cur.fetchall()
