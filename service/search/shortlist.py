"""The SQL shortlist: one named, parameterised statement per search shape, generated and cached.

The hybrid search of pgvector-python's example: named candidate searches, then their union with
the scalars the reranker reads per photo. Run through psycopg directly with binary transfer, in
pipeline mode, so the ``SET LOCAL`` lines and the query travel to the server in one round trip.
  semantic_search     - nearest photos to the query in the joint space of the active ranker;
  description_search  - photos whose descriptions (written for that photo, never the held-out
                        test queries) are nearest to the query's text vector: the
                        ``description_shortlist_size`` nearest (``WITHSENSE_DESCRIPTION_SHORTLIST``,
                        30), since their rows and description matches are most of the statement's
                        cost at a million photos;
  multilingual_description_search - the same in USE multilingual's space (ml/multilingual.py), so
                        a description in one language is found by a query in another;
  description_match   - for every candidate, its best-matching description in each space.
Each candidate comes back with scalars only: its joint and bridge cosines to the query (computed
here, so no 384-d vector travels: ~0.5 MB a search at a shortlist of 100 before), its top labels
(ml/listwise.py ``label_evidence``) and its mapper norm.

An English query (routed to MiniLM) matches in USE's space only the descriptions in other
languages (``descriptions.language``, migration 0016): MiniLM's side reads the English ones, and a
library with none in another language has no USE side for it at all.

A search's shape is a :class:`ShortlistShape`: which candidate searches run, each by its HNSW index
(service/store/hnsw.py) or by an exact scan, and which photo filters are set. Each set filter is a
plain predicate the planner can see; an unset one is not in the statement at all (a
``CAST(x AS ..) IS NULL OR ..`` would hide both from it). So there is one statement per shape,
made once per process by ``shortlist_sql``. Place, camera and uploader are tested in the vector's
own row (its ``facets``, migration 0018: ``facets @> photo_facets(place => ..)``, the function that
made them), so the index scan that meets a vector decides it without probing ``photos`` (at a
10 % place filter it meets about ten vectors per candidate); its GIN index serves a filter that
keeps a few photos.

A deleted photo has no vectors, and its descriptions none either (``uploads.delete_photo``), so no
candidate search meets it and none probes ``photos`` for its tombstone (0.5 ms of ~10 at a million
photos, docs/scaling.md); a search reads ``photos`` only for a ``taken_at`` or ``splits`` filter and
for its candidates' file names and content marks. (The loader may still write vectors for a
description whose photo is deleted meanwhile: such a candidate has no photo vectors, so the final
join drops it.)
``query_vector`` is the query in the ranker's space (photo side), ``text_vector`` the text
encoder's own vector and ``multilingual_vector`` USE's (description side).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection

from service.store.db import driver_connection, driver_errors, session_settings_of
from service.store.tables import OTHER_LANGUAGE

# The filters a vector row carries (its photo's ``facets``, migration 0018), matched case-insensitively:
# tested in the row the index scan reads, with no probe of ``photos``.
FACET_FILTERS = ("camera", "place", "uploader")
# The filters read from ``photos``; taken_after/taken_before form a half-open interval [after, before).
PHOTO_FILTERS = {
    "splits": "p.split = ANY(%(splits)s)",
    "taken_after": "p.taken_at >= %(taken_after)s",
    "taken_before": "p.taken_at < %(taken_before)s",
}
FILTERS = (*FACET_FILTERS, *PHOTO_FILTERS)


@dataclass(frozen=True)
class Space:
    """One candidate search's vector space: its dimension and whether its HNSW index serves it."""

    dims: int
    indexed: bool


@dataclass(frozen=True)
class ShortlistShape:
    photos: Space
    text: Space | None = None          # MiniLM's description search; None: off (image-only, or no vectors)
    multilingual: Space | None = None  # USE's description search; None: off
    filters: tuple[str, ...] = ()      # names in FILTERS that are set, in its order
    # USE's side only among descriptions in other languages (an English query: MiniLM reads the rest)
    multilingual_other_languages: bool = False

    @property
    def indexed(self) -> bool:
        return any(s is not None and s.indexed for s in (self.photos, self.text, self.multilingual))


_COLUMN_SEPARATOR = ",\n               "


def filters_set(params: dict) -> tuple[str, ...]:
    return tuple(name for name in FILTERS if params.get(name) is not None)


def nearest_order(column: str, vector: str, space: Space) -> str:
    """The ORDER BY of a nearest-neighbour search against the placeholder ``vector``: the index's own
    expression (halfvec of the stored vector) when the index serves it, so the planner can match it;
    the full-precision distance otherwise."""
    if not space.indexed:
        return f"{column} <=> {vector}"
    half = f"halfvec({int(space.dims)})"
    return f"{column}::{half} <=> CAST({vector} AS {half})"


def _where(alias: str, *conditions: str, filters: tuple[str, ...]) -> str:
    """The conditions, then each set facet filter as a test of the vector row's ``facets`` (the same
    function made both sides), then the set filters of ``photos``. One test per filter, each the
    very predicate of a common value's own index (service/store/facet_indexes.py), so the planner
    can prove that index serves it; the other filters are checked in the rows that index yields."""
    facets = [f"{alias}.facets @> photo_facets({name} => %({name})s)" for name in filters if name in FACET_FILTERS]
    return "\n          AND ".join([*conditions, *facets,
                                   *(PHOTO_FILTERS[name] for name in filters if name in PHOTO_FILTERS)])


def _photos_join(filters: tuple[str, ...], photo_id: str) -> str:
    """``photos`` only when a filter of it is set: a deleted photo has no vectors, and the facets
    travel with the vectors, so nothing else needs it."""
    return f"\n        JOIN photos p ON p.id = {photo_id}" if any(f in PHOTO_FILTERS for f in filters) else ""


def _description_search(name: str, model_param: str, vector: str, space: Space, filters: tuple[str, ...],
                        other_languages: bool = False) -> str:
    where = _where("de", f"de.model_id = %({model_param})s", "d.source <> 'test'",
                   *((OTHER_LANGUAGE,) if other_languages else ()), filters=filters)
    return f"""{name} AS (
        SELECT d.photo_id
        FROM description_embeddings de
        JOIN descriptions d ON d.id = de.description_id{_photos_join(filters, "d.photo_id")}
        WHERE {where}
        ORDER BY {nearest_order("de.embedding", f"%({vector})s", space)}
        LIMIT %(description_shortlist_size)s
    )"""


# Integer parameters an unfiltered index search writes into its statement's text, so that one
# generic plan serves every query (``fetch_shortlist``): the partial indexes' ``model_id = <model>``
# must be provable from the text, and a LIMIT the planner cannot see is planned as 10 % of the rows.
INLINED = ("model_id", "text_model_id", "multilingual_model_id", "shortlist_size", "description_shortlist_size")


@lru_cache(maxsize=256)
def shortlist_sql(shape: ShortlistShape, inlined: tuple[tuple[str, int], ...] = ()) -> str:
    """The statement of one search shape (a few hundred are possible; a process meets a few), with
    the ``inlined`` (name, integer) parameters written into the text instead of their placeholders."""
    sql = _statement(shape)
    for name, value in inlined:
        sql = sql.replace(f"%({name})s", str(int(value)))
    return sql


def _statement(shape: ShortlistShape) -> str:
    ctes = [f"""semantic_search AS (
        SELECT e.photo_id
        FROM photo_embeddings e{_photos_join(shape.filters, "e.photo_id")}
        WHERE {_where("e", "e.model_id = %(model_id)s", filters=shape.filters)}
        ORDER BY {nearest_order("e.embedding", "%(query_vector)s", shape.photos)}
        LIMIT %(shortlist_size)s
    )"""]
    searches, matches = ["semantic_search"], []
    for name, model_param, vector, column, space, other_languages in (
            ("description_search", "text_model_id", "text_vector", "description_match", shape.text, False),
            ("multilingual_description_search", "multilingual_model_id", "multilingual_vector",
             "multilingual_description_match", shape.multilingual, shape.multilingual_other_languages)):
        if space is None:
            continue
        ctes.append(_description_search(name, model_param, vector, space, shape.filters, other_languages))
        searches.append(name)
        # CASE, not FILTER: each space's vectors only ever meet a query vector of their own dimension
        when = f"de.model_id = %({model_param})s" + (f" AND {OTHER_LANGUAGE}" if other_languages else "")
        matches.append(f"max(CASE WHEN {when} THEN 1 - (de.embedding <=> %({vector})s) END) AS {column}")
    ctes.append("candidates AS (\n        " + "\n        UNION\n        ".join(
        f"SELECT photo_id FROM {s}" for s in searches) + "\n    )")
    if matches:
        spaces = ", ".join(f"%({p})s" for p, s in (("text_model_id", shape.text),
                                                   ("multilingual_model_id", shape.multilingual)) if s is not None)
        ctes.append(f"""description_match AS (
        SELECT d.photo_id,
               {_COLUMN_SEPARATOR.join(matches)}
        FROM candidates c
        JOIN descriptions d ON d.photo_id = c.photo_id AND d.source <> 'test'
        JOIN description_embeddings de ON de.description_id = d.id AND de.model_id IN ({spaces})
        GROUP BY d.photo_id
    )""")
    match_columns = ", ".join(
        f"dm.{c}" if s is not None else f"NULL::float8 AS {c}"
        for c, s in (("description_match", shape.text), ("multilingual_description_match", shape.multilingual)))
    return f"""
    WITH {", ".join(ctes)}
    SELECT p.id AS photo_id, p.file_name, p.shows_child,
           1 - (e.embedding <=> %(query_vector)s) AS cos_joint,
           1 - (e.bridge <=> %(query_vector)s) AS cos_bridge,
           e.label_ids, e.label_probs, e.mapper_norm,
           {match_columns}
    FROM candidates c
    JOIN photos p ON p.id = c.photo_id
    JOIN photo_embeddings e ON e.photo_id = p.id AND e.model_id = %(model_id)s
    {"LEFT JOIN description_match dm ON dm.photo_id = p.id" if matches else ""}
    ORDER BY cos_joint DESC, p.id
"""


def shortlist_params(query_vector, *, model_id: int, shortlist_size: int, description_shortlist_size: int,
                     text_vector=None, text_model_id: int | None = None, multilingual_vector=None,
                     multilingual_model_id: int | None = None, **filters) -> dict:
    """Every parameter a shortlist statement may name. A description side runs where its vector and
    model id are given (``ShortlistShape``); ``filters`` are names of :data:`FILTERS`, a missing one unset."""
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise TypeError(f"unknown shortlist filters: {sorted(unknown)}")
    return {"query_vector": query_vector, "model_id": model_id,
            "text_vector": text_vector, "text_model_id": text_model_id,
            "multilingual_vector": multilingual_vector, "multilingual_model_id": multilingual_model_id,
            "shortlist_size": shortlist_size, "description_shortlist_size": description_shortlist_size,
            **{name: filters.get(name) for name in FILTERS}}


def search_ef(hnsw_ef_search: int, shortlist_size: int) -> int:
    """An index search's ``hnsw.ef_search``: the setting, or the shortlist it must fill if larger."""
    return max(int(hnsw_ef_search), int(shortlist_size))


def session_settings(ef_search: int) -> dict[str, str]:
    """What an unfiltered index search needs of its connection's session, set when the connection
    opens (``service.store.db.make_autocommit_engine``), so that such a search is its statement alone."""
    return {"hnsw.ef_search": str(int(ef_search)), "hnsw.iterative_scan": "relaxed_order"}


def fetch_shortlist(conn: Connection, params: dict, shape: ShortlistShape, *, ef_search: int) -> list:
    """Candidate rows for one query. With an index: ``hnsw.ef_search`` for this transaction and an
    iterative scan, so a filter (the description sides always have one: no test queries, no
    tombstones) still yields the whole shortlist (a plain HNSW scan would return only the passing
    share of its ef_search candidates: recall 0.20 at a 10 % filter in reports/bench/scale.md).

    On an autocommit connection (the searcher's) the statement runs alone, and the settings an index
    needs go with it in one pipelined ``BEGIN ... COMMIT``: one round trip to the server in all. A
    connection in a transaction would cost a ``BEGIN`` and a ``ROLLBACK`` round trip more per search
    (docs/scaling.md, "Round trips"); there the block is a savepoint. A connection whose session
    started with :func:`session_settings` for this ``ef_search`` runs an unfiltered index search as
    its statement alone, prepared: the block's four more statements cost about 0.5 ms of 10-15 at a
    million photos (docs/scaling.md, "Fifth session")."""
    raw = driver_connection(conn)
    # Unfiltered by the index: the model ids and the shortlist size are in the text and only the query
    # vectors are parameters, which no estimate reads, so one generic plan (psycopg prepares a statement
    # run 5 times on a connection) is the plan every query would get: planning 1.1-1.6 ms of ~15 saved
    # at a million photos (docs/scaling.md). A filter's value changes the plan (one place holds 10 % of
    # the photos, one uploader a handful), so a filtered statement is planned for its values.
    generic = shape.indexed and not shape.filters
    inlined = tuple((name, params[name]) for name in INLINED if params.get(name) is not None) if generic else ()
    if generic and session_settings_of(conn) == session_settings(ef_search):
        with driver_errors(conn), raw.cursor(binary=True, row_factory=namedtuple_row) as cur:
            # Prepared at once: PostgreSQL plans its first five runs for their values, then keeps the
            # generic plan, which the inlined text makes the same plan (the partial indexes provable).
            return cur.execute(shortlist_sql(shape, inlined), params, prepare=True).fetchall()
    with driver_errors(conn), raw.pipeline(), raw.cursor(binary=True, row_factory=namedtuple_row) as cur:
        if shape.indexed:
            with raw.transaction():
                # Integers from our own settings: SET takes no bind parameters.
                cur.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
                cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                # The indexes are partial (model_id = <model>): a generic plan could not prove that from
                # a parameter and would fall back to a full scan, hence the model ids in the text above.
                cur.execute(f"SET LOCAL plan_cache_mode = {'force_generic_plan' if generic else 'force_custom_plan'}")
                cur.execute(shortlist_sql(shape, inlined), params)
        else:
            cur.execute(shortlist_sql(shape), params)
        return cur.fetchall()
