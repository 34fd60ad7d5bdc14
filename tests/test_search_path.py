"""The search path: cached active ranker picked up without a restart, query-vector LRU, the search
log written in the background, the HNSW index built by training and used by the shortlist."""
from __future__ import annotations

import re
import time
import uuid

import numpy as np
import pytest
from sqlalchemy import text

from service.search.searcher import Filters, Searcher
from service.search.shortlist import (
    INLINED,
    ShortlistShape,
    Space,
    fetch_shortlist,
    shortlist_params,
    shortlist_sql,
)
from service.store.db import driver_connection, session_settings_of
from service.store.hnsw import description_index_name, index_name
from tests.helpers import load_library, migrate_to

QUERIES = ["a dog runs through the snow", "two people on a beach", "a man riding a bike", "children at a party"]


def _index_is_valid(engine, model_id: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT coalesce(bool_or(indisvalid), false) FROM pg_index WHERE indexrelid = to_regclass(:name)"
        ), {"name": index_name(model_id)}).scalar())


@pytest.fixture(scope="module")
def own_library(make_database, settings_for, encoders):
    """A library of its own: this module activates new rankers and migrates up and down."""
    library = load_library(make_database(), settings_for, encoders)
    yield library
    library["engine"].dispose()


def test_query_vectors_are_cached(loaded, encoders):
    searcher = Searcher(loaded["engine"], loaded["settings"], encoders.text)
    first = searcher.search(QUERIES[0], log=False)
    second = searcher.search(QUERIES[0], log=False)
    assert searcher.query_vectors.info() == {"size": 4096, "hits": 1, "misses": 1, "entries": 1}
    assert [(r.photo_id, r.score) for r in first.results] == [(r.photo_id, r.score) for r in second.results]
    cached = searcher.query_vectors.get(QUERIES[0])
    np.testing.assert_allclose(cached, encoders.text.encode([QUERIES[0]])[0], atol=1e-6)
    assert not cached.flags.writeable  # shared between searches: nobody may change it


def test_query_cache_can_be_turned_off(loaded, encoders):
    searcher = Searcher(loaded["engine"], loaded["settings"].with_overrides({"query_cache_size": 0}), encoders.text)
    searcher.search(QUERIES[0], log=False)
    searcher.search(QUERIES[0], log=False)
    assert searcher.query_vectors.info()["hits"] == 0


def test_search_log_is_written_in_batches_off_the_request_path(writable, encoders):
    searcher = Searcher(writable["engine"], writable["settings"], encoders.text)
    marker = uuid.uuid4().hex[:8]
    queries = [f"a dog runs {marker} {i}" for i in range(25)] + [f"a baby sleeps {marker}"]
    for q in queries:
        searcher.search(q)
    searcher.close()  # what gunicorn's worker_exit and atexit do: write everything queued, stop
    with writable["engine"].connect() as conn:
        rows = conn.execute(text(
            "SELECT query, blocked, n_results, photo_ids, model_id FROM search_log WHERE query LIKE :m ORDER BY id"
        ), {"m": f"%{marker}%"}).all()
    assert [r.query for r in rows] == queries  # all of them, in the order they were searched
    assert {(r.blocked, r.n_results, r.model_id) for r in rows[:-1]} == {(False, 5, writable["model"]["id"])}
    assert all(len(r.photo_ids) == 5 for r in rows[:-1])
    assert (rows[-1].blocked, rows[-1].n_results, rows[-1].photo_ids, rows[-1].model_id) == (True, 0, [], None)
    assert searcher.log_writer.written == 26 and searcher.log_writer.dropped == 0
    searcher.close()  # a second close is harmless


def test_a_new_activation_is_picked_up_without_a_restart(own_library, encoders):
    from service.training.publish import train_and_publish

    engine = own_library["engine"]
    settings = own_library["settings"].with_overrides({"model_refresh_seconds": 0.5})
    searcher = Searcher(engine, settings, encoders.text)
    assert searcher.search(QUERIES[0], log=False).model_version == own_library["model"]["version"]

    new = train_and_publish(engine, own_library["settings"], encoders, run_cv=False, force=True, progress=False)
    assert new["activated"] and new["version"] != own_library["model"]["version"]
    assert new["hnsw_index"] == index_name(new["id"]) and _index_is_valid(engine, new["id"])  # built before activation

    deadline = time.monotonic() + 30
    while (version := searcher.search(QUERIES[0], log=False).model_version) != new["version"]:
        assert version == own_library["model"]["version"]
        assert time.monotonic() < deadline, "the new ranker was not picked up"
        time.sleep(0.1)


def test_the_shortlist_chooses_the_index_by_library_size(loaded, encoders):
    engine, settings = loaded["engine"], loaded["settings"]
    exact = Searcher(engine, settings, encoders.text)
    indexed = Searcher(engine, settings.with_overrides({"hnsw_min_photos": 0}), encoders.text)
    state = indexed.active_state()
    # photos are counted up to the threshold: all 16 under the default, none needed at 0
    assert state.has_index and exact.active_state().n_photos == 16 and state.n_photos == 0
    assert indexed.uses_index(state) and not exact.uses_index(exact.active_state())
    # On 16 photos the graph finds every neighbour: both paths give the same page, filtered or not.
    for q in QUERIES:
        for kwargs in ({}, {"splits": ["train"]}, {"filters": Filters(camera="no such camera")}):
            a, b = exact.search(q, limit=10, log=False, **kwargs), indexed.search(q, limit=10, log=False, **kwargs)
            assert [r.photo_id for r in a.results] == [r.photo_id for r in b.results], (q, kwargs)
            assert [r.score for r in a.results] == pytest.approx([r.score for r in b.results], abs=1e-6)


def _shortlist_params(loaded, query_vector) -> dict:
    """A photo and MiniLM description search's parameters, no filter (the query vector stands in for both)."""
    return shortlist_params(query_vector, model_id=loaded["model"]["id"], text_vector=query_vector,
                            text_model_id=loaded["text"], shortlist_size=100, description_shortlist_size=100)


def test_each_description_search_adds_at_most_its_own_shortlist(loaded, encoders):
    """``description_shortlist_size`` bounds what a description search adds, apart from the photo
    search's ``shortlist_size``: the photos found by descriptions alone are the difference."""
    query_vector = encoders.text.encode(["a dog runs through the water"])[0]
    shape = ShortlistShape(Space(384, False), Space(384, False))
    with loaded["engine"].connect() as conn:
        described = set(conn.execute(text("SELECT DISTINCT photo_id FROM descriptions "
                                           "WHERE source <> 'test' AND photo_id IS NOT NULL")).scalars())
    found = {}
    for descriptions in (0, 1, 2, 100):
        params = _shortlist_params(loaded, query_vector) | {"shortlist_size": 2, "description_shortlist_size": descriptions}
        with loaded["engine"].connect() as conn:
            found[descriptions] = {r.photo_id for r in fetch_shortlist(conn, params, shape, ef_search=100)}
            conn.rollback()
    photos = found[0]
    assert len(photos) == 2 and len(described - photos) >= 2  # the photo search's own, and more to add
    assert len(found[1] - photos) <= 1 and len(found[2] - photos) <= 2 and found[1] <= found[2]
    assert found[100] == photos | described


def test_the_indexed_statement_is_served_by_the_hnsw_indexes(loaded, encoders):
    """The ORDER BY matches the index expression and the partial predicate is provable: with the
    sequential scan and sorting priced out (16 rows would never need the index), the planner picks
    the ranker's photo index and the text encoder's description index (migration 0014)."""
    model = loaded["model"]
    query_vector = encoders.text.encode([QUERIES[0]])[0]
    params = _shortlist_params(loaded, query_vector)
    with loaded["engine"].connect() as conn:
        with driver_connection(conn).cursor() as cur:
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("SET LOCAL enable_indexscan = on")
            cur.execute("SET LOCAL enable_sort = off")  # else a btree scan on model_id + sort beats any index
            cur.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            indexed, exact = (shortlist_sql(ShortlistShape(Space(384, use), Space(384, use))) for use in (True, False))
            indexed_plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + indexed, params))
            exact_plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + exact, params))
        conn.rollback()
    for name in (index_name(model["id"]), description_index_name(loaded["text"])):
        assert name in indexed_plan, indexed_plan
        assert name not in exact_plan


def test_an_unfiltered_indexed_statement_has_one_generic_plan_through_the_hnsw_indexes(loaded, encoders):
    """``fetch_shortlist`` writes the model ids and the shortlist size of an unfiltered index search
    into the text and runs it under a generic plan: that plan still proves the partial indexes'
    predicates (the planner prices a full scan out here as above), and its rows are those of the
    statement planned for each query's values."""
    model = loaded["model"]
    query_vector = encoders.text.encode([QUERIES[1]])[0]
    params = _shortlist_params(loaded, query_vector)
    shape = ShortlistShape(Space(384, True), Space(384, True))
    inlined = tuple((name, params[name]) for name in INLINED if params[name] is not None)
    sql = shortlist_sql(shape, inlined)
    assert "%(model_id)s" not in sql and "%(shortlist_size)s" not in sql and f"= {model['id']}" in sql
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    assert names == ["query_vector", "text_vector"]  # only the vectors, which no estimate reads
    prepared = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}::vector", sql)
    literal = "'[" + ",".join(f"{x:.6f}" for x in query_vector) + "]'"
    with loaded["engine"].connect() as conn:
        with driver_connection(conn).cursor() as cur:
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("SET LOCAL enable_sort = off")
            cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cur.execute(f"PREPARE generic_shortlist AS {prepared}")
            plan = "\n".join(r[0] for r in cur.execute(f"EXPLAIN EXECUTE generic_shortlist({literal}, {literal})"))
            cur.execute("DEALLOCATE generic_shortlist")
        conn.rollback()
        assert "$1" in plan  # generic: planned without the vectors' values
        for name in (index_name(model["id"]), description_index_name(loaded["text"])):
            assert name in plan, plan
        generic = fetch_shortlist(conn, params, shape, ef_search=100)
        conn.rollback()
        with driver_connection(conn).cursor() as cur:
            cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            custom = cur.execute(shortlist_sql(shape), params).fetchall()
        conn.rollback()
    assert [r.photo_id for r in generic] == [r[0] for r in custom]
    assert [r.cos_joint for r in generic] == pytest.approx([r[3] for r in custom], abs=1e-9)


def test_a_search_connection_starts_with_the_index_settings_and_sends_the_statement_alone(loaded, encoders):
    """The app's search engine opens each session with ``hnsw.ef_search`` and the iterative scan
    (``session_settings``), so an unfiltered index search is its statement alone, prepared at once;
    one that needs another ``ef_search`` (a deep page) still sets it for its transaction. Both give
    the rows of a connection without the settings."""
    from service import create_app

    query_vector = encoders.text.encode([QUERIES[2]])[0]
    params = _shortlist_params(loaded, query_vector)
    shape = ShortlistShape(Space(384, True), Space(384, True))
    settings = loaded["settings"].with_overrides({"hnsw_ef_search": 40, "shortlist": 100})
    searching = create_app(settings=settings).extensions["withsense.autocommit_engine"]
    prepared = "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, 'semantic_search') > 0"
    with loaded["engine"].connect() as conn:
        plain = fetch_shortlist(conn, params, shape, ef_search=100)
        conn.rollback()
    with searching.connect() as conn:
        assert session_settings_of(conn) == {"hnsw.ef_search": "100", "hnsw.iterative_scan": "relaxed_order"}
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar() == "100"
        assert conn.exec_driver_sql("SHOW hnsw.iterative_scan").scalar() == "relaxed_order"
        deeper = fetch_shortlist(conn, params, shape, ef_search=120)  # another ef_search: SET LOCAL
        assert conn.exec_driver_sql(prepared).scalar() == 0
        alone = fetch_shortlist(conn, params, shape, ef_search=100)
        assert conn.exec_driver_sql(prepared).scalar() == 1  # the statement alone, prepared
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar() == "100"  # the SET LOCAL did not stay
    searching.dispose()
    assert len(plain) == 16
    for rows in (alone, deeper):
        assert [r.photo_id for r in rows] == [r.photo_id for r in plain]
        assert [r.cos_joint for r in rows] == pytest.approx([r.cos_joint for r in plain], abs=1e-9)


# Before the migration test below, which leaves this library's ranker rows without label evidence.
def test_a_common_place_gets_indexes_of_its_own_that_its_filter_uses(own_library, encoders):
    """A place half the library carries gets partial HNSW indexes (service/store/facet_indexes.py):
    one over the ranker's photo vectors, one per text encoder over description vectors; the
    filtered statement's predicate is theirs, so the planner takes them (the full scan priced out as
    above: 16 rows never need an index); the search keeps only that place; a value no longer common
    loses them. The place is a photographer's free text, quotes, colon and percent sign included."""
    from service.store import facet_indexes
    from service.store.hnsw import DESCRIPTION_INDEX_PREFIX, INDEX_PREFIX, TEXT_ENCODERS_SQL

    engine, settings = own_library["engine"], own_library["settings"]
    place = "L'Anse :Nord %"
    with engine.begin() as conn:
        model_id, dims = conn.execute(text("SELECT id, dims FROM models WHERE kind = 'ranker' AND active")).one()
        placed = conn.execute(text(
            "UPDATE photos SET place = :place WHERE id IN (SELECT photo_id FROM photo_embeddings WHERE model_id = :m "
            "ORDER BY photo_id LIMIT 8) RETURNING id"), {"place": place, "m": model_id}).scalars().all()
        conn.execute(text("UPDATE photos SET place = 'Rare' WHERE id = (SELECT max(photo_id) FROM photo_embeddings "
                          "WHERE model_id = :m)"), {"m": model_id})
        text_models = [m for m, _ in conn.execute(TEXT_ENCODERS_SQL).all()]
    facet = "place:" + place.lower()
    expected = {facet_indexes.facet_index_name(INDEX_PREFIX, model_id, facet),
                *(facet_indexes.facet_index_name(DESCRIPTION_INDEX_PREFIX, m, facet) for m in text_models)}
    # As `withsense train` and `ingest` call it: for the active ranker, by the settings.
    common = settings.with_overrides({"facet_index_min_share": 0.25, "hnsw_min_photos": 0})
    refresh = lambda: facet_indexes.refresh_active(engine, common)  # noqa: E731
    assert set(refresh()["built"]) == expected and len(expected) == 1 + len(text_models)
    assert refresh() == {"built": [], "dropped": []}  # built once

    query_vector = encoders.text.encode([QUERIES[1]])[0]
    params = {**_shortlist_params({"model": {"id": model_id}, "text": own_library["text"]}, query_vector),
              "place": place.upper()}
    with engine.connect() as conn:
        with driver_connection(conn).cursor() as cur:
            for setting in ("enable_seqscan = off", "enable_sort = off", "enable_bitmapscan = off",
                            "plan_cache_mode = force_custom_plan"):
                cur.execute(f"SET LOCAL {setting}")
            plan = "\n".join(r[0] for r in cur.execute(
                "EXPLAIN " + shortlist_sql(ShortlistShape(Space(384, True), Space(384, True), filters=("place",))),
                params))
        conn.rollback()
    assert facet_indexes.facet_index_name(INDEX_PREFIX, model_id, facet) in plan, plan
    assert facet_indexes.facet_index_name(DESCRIPTION_INDEX_PREFIX, own_library["text"], facet) in plan, plan

    indexed = Searcher(engine, settings.with_overrides({"hnsw_min_photos": 0}), encoders.text)
    exact = Searcher(engine, settings.with_overrides({"hnsw_min_photos": 10**9}), encoders.text)
    pages = [s.search(QUERIES[1], limit=16, filters=Filters(place=place.upper()), log=False) for s in (indexed, exact)]
    assert {r.photo_id for r in pages[0].results} == set(placed)
    assert [r.photo_id for r in pages[0].results] == [r.photo_id for r in pages[1].results]

    with engine.begin() as conn:
        conn.execute(text("UPDATE photos SET place = NULL WHERE place IN (:place, 'Rare')"), {"place": place})
    assert refresh() == {"built": [], "dropped": sorted(expected)}


def test_migrations_0007_and_0014_index_rankers_and_text_encoders_and_downgrade_drops_them(own_library):
    url, engine = own_library["settings"].database_url, own_library["engine"]
    with engine.connect() as conn:
        active = conn.execute(text("SELECT id FROM models WHERE kind = 'ranker' AND active")).scalar_one()
    migrate_to(url, "0004", down=True)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'photo_embeddings_hnsw_m%'")).scalar()
        left += conn.execute(text(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'description_embeddings_hnsw_m%'")).scalar()
    assert left == 0
    migrate_to(url, "head")  # a database trained before 0007 gets its active ranker's index, 0014 its text encoders'
    assert _index_is_valid(engine, active)
    with engine.connect() as conn:
        text_models = conn.execute(text("SELECT id FROM models WHERE kind = 'encoder' AND name LIKE 'text:%'")).scalars().all()
        assert text_models and all(conn.execute(text(
            "SELECT coalesce(bool_or(indisvalid), false) FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": description_index_name(m)}).scalar() for m in text_models)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT attstorage FROM pg_attribute WHERE attrelid = 'photo_embeddings'::regclass "
                                 "AND attname = 'embedding'")).scalar() == "m"
    from alembic import command

    from service.cli import alembic_config

    command.check(alembic_config(url))  # the per-ranker indexes are not schema drift (migrations/env.py)


def test_the_vectors_the_shortlist_reads_are_stored_in_their_rows(loaded):
    """Migration 0015: no ranker photo vector and no description vector (USE's 512-d ones too) is in
    a TOAST table, where each candidate would cost the shortlist a second lookup."""
    with loaded["engine"].connect() as conn:
        external, use_vectors = conn.execute(text("""
            SELECT (SELECT count(*) FROM photo_embeddings e JOIN models m ON m.id = e.model_id
                    WHERE m.kind = 'ranker' AND (pg_column_toast_chunk_id(e.embedding) IS NOT NULL
                                                 OR pg_column_toast_chunk_id(e.bridge) IS NOT NULL))
                 + (SELECT count(*) FROM description_embeddings WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL),
                   (SELECT count(*) FROM description_embeddings WHERE vector_dims(embedding) = 512)""")).one()
        ranker_rows = conn.execute(text(
            "SELECT count(*) FROM photo_embeddings e JOIN models m ON m.id = e.model_id WHERE m.kind = 'ranker'")).scalar()
    assert external == 0 and use_vectors > 0 and ranker_rows > 0


def test_similar_photos_use_the_rankers_index_by_the_shortlists_rule(loaded, encoders):
    """Above the size threshold similar photos are found through the ranker's HNSW index (an
    iterative scan, re-sorted); on 16 photos the graph finds every neighbour, so the page is the
    exact scan's."""
    from sqlalchemy.orm import Session

    from service.search.similar import similar_photos_sql, similar_to_photo
    from service.store.hnsw import index_name

    engine, settings = loaded["engine"], loaded["settings"]
    indexed = Searcher(engine, settings.with_overrides({"hnsw_min_photos": 0}), encoders.text)
    exact = Searcher(engine, settings, encoders.text)
    model_id = indexed.index_model_id()
    assert model_id == loaded["model"]["id"] and exact.index_model_id() is None
    with Session(engine) as session:
        photos = session.execute(text("SELECT id, sha256 FROM photos ORDER BY id LIMIT 3")).all()
        for photo in photos:
            pages = [similar_to_photo(session=session, settings=settings, photo=photo, limit=8, indexed_model_id=m)
                     for m in (None, model_id)]
            session.rollback()  # the SET LOCALs end with the transaction
            assert [n.photo_id for n in pages[0].results] == [n.photo_id for n in pages[1].results]
            assert [n.score for n in pages[0].results] == pytest.approx([n.score for n in pages[1].results], abs=1e-6)
            assert photo.id not in [n.photo_id for n in pages[1].results]
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_sort = off"))  # 16 rows would never need the index otherwise
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        vector = encoders.text.encode([QUERIES[0]])[0]
        plans = {use: "\n".join(r[0] for r in session.execute(
            text("EXPLAIN " + similar_photos_sql(Space(384, use)).text),
            {"vector": vector, "model_id": model_id, "photo_id": None, "sha256": "", "limit": 8}))
            for use in (True, False)}
    assert index_name(model_id) in plans[True] and index_name(model_id) not in plans[False], plans

