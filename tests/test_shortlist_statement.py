"""The shortlist statement (service/search/shortlist.py): the cosines it computes in PostgreSQL
score the candidates as the photos' vectors did, and each set filter is a plain predicate."""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from sqlalchemy import text

from ml.listwise import FEATURES, PhotoEvidence, list_features, query_signals, specificity
from service.search.searcher import Filters, Searcher, cosines_of
from service.search.shortlist import (
    FACET_FILTERS,
    FILTERS,
    PHOTO_FILTERS,
    ShortlistShape,
    Space,
    fetch_shortlist,
    shortlist_params,
    shortlist_sql,
)
from service.store.db import as_array

QUERIES = ["a dog runs through the snow", "two people on a beach", "a man riding a bike", "a girl in a pink dress",
           "a black dog and a white dog", "people standing in front of a building"]


def _old_score(ranker, q: np.ndarray, evidence: PhotoEvidence) -> tuple[np.ndarray, np.ndarray]:
    """``Ranker.raw_scores`` and ``Ranker.score`` as they were when each candidate's joint and
    bridge vectors came to the client."""
    q = np.asarray(q, np.float32).reshape(1, -1)
    X = list_features(q, np.arange(len(evidence.joint))[None, :], evidence, ranker.label_vectors,
                      specificity(q, ranker.reference_captions))
    raw = np.asarray(ranker.scorer.predict(X), np.float64)[0]
    signals = query_signals(X, FEATURES, getattr(ranker.calibrator, "signals", ()))[0]
    return raw, np.clip(ranker.calibrator.predict(raw, signals), 0.0, 1.0)


def _vectors(conn, model_id: int, photo_ids: list[int]) -> PhotoEvidence:
    rows = {r.photo_id: r for r in conn.execute(text(
        "SELECT photo_id, embedding, bridge, label_ids, label_probs, mapper_norm FROM photo_embeddings "
        "WHERE model_id = :m AND photo_id = ANY(:ids)"), {"m": model_id, "ids": photo_ids})}
    ordered = [rows[i] for i in photo_ids]
    return PhotoEvidence(np.stack([as_array(r.embedding) for r in ordered]), np.stack([as_array(r.bridge) for r in ordered]),
                         np.array([r.label_ids for r in ordered], np.int64),
                         np.array([r.label_probs for r in ordered], np.float32),
                         np.array([r.mapper_norm for r in ordered], np.float32))


@pytest.mark.parametrize("use_index", [False, True])
def test_cosines_computed_in_sql_score_as_the_vectors_did(loaded, encoders, use_index):
    settings = loaded["settings"].with_overrides({"hnsw_min_photos": 0 if use_index else 10**9})
    searcher = Searcher(loaded["engine"], settings, encoders.text)
    state = searcher.active_state()
    ranker = state.ranker
    for query in QUERIES:
        text_vector = encoders.text.encode([query])[0]
        q = ranker.transform_query(text_vector)
        params = shortlist_params(q, model_id=state.model.id, text_vector=text_vector,
                                  text_model_id=state.text_model_id, shortlist_size=100, description_shortlist_size=100)
        shape = searcher.shape(state, params)
        assert shape.photos.indexed is use_index and shape.text.indexed is use_index
        with loaded["engine"].connect() as conn:
            rows = fetch_shortlist(conn, params, shape, ef_search=100)
            conn.rollback()
            evidence = _vectors(conn, state.model.id, [r.photo_id for r in rows])
        assert len(rows) == 16 and not hasattr(rows[0], "photo_vector")  # no vector travels
        cosines = cosines_of(rows)
        np.testing.assert_allclose(cosines.cos_joint, evidence.joint @ q, atol=1e-5)
        np.testing.assert_allclose(cosines.cos_bridge, evidence.bridge @ q, atol=1e-5)
        old_raw, old = _old_score(ranker, q, evidence)
        assert old_raw.std() > 0.03  # the scores differ between photos: the comparison means something
        np.testing.assert_allclose(ranker.raw_scores(q, cosines), old_raw, atol=1e-5)
        np.testing.assert_allclose(ranker.score(q, cosines), old, rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(ranker.score(q, evidence), old, rtol=1e-3, atol=1e-7)  # the vector path (training)
        # And the search's page is the one the old scores give.
        page = searcher.search(query, limit=16, hybrid=False, log=False)
        by_id = dict(zip([r.photo_id for r in rows], old, strict=True))
        assert [r.scorer_score for r in page.results] == pytest.approx([by_id[r.photo_id] for r in page.results], abs=2e-6)


def test_each_set_filter_is_a_plain_predicate_and_an_unset_one_is_absent():
    shape_of = lambda filters: ShortlistShape(Space(384, True), Space(384, True), Space(512, False), filters)  # noqa: E731
    for n in range(len(FILTERS) + 1):
        for chosen in itertools.combinations(FILTERS, n):
            sql = shortlist_sql(shape_of(chosen))
            assert "IS NULL OR" not in sql
            # Once in each of the three candidate searches when set, nowhere when not.
            for name, predicate in PHOTO_FILTERS.items():
                assert sql.count(predicate) == (3 if name in chosen else 0), (chosen, name)
            for name in FACET_FILTERS:  # in the vector row the scan reads, one test each
                for alias, searches in ((" e", 1), ("de", 2)):
                    predicate = f"{alias}.facets @> photo_facets({name} => %({name})s)"
                    assert sql.count(predicate) == (searches if name in chosen else 0), (chosen, name)
            # photos joined only for its own filters
            assert sql.count("JOIN photos p") == 1 + (3 if set(chosen) & set(PHOTO_FILTERS) else 0)
            assert shortlist_sql(shape_of(chosen)) is sql  # made once per shape
    image_only = shortlist_sql(ShortlistShape(Space(384, False)))
    assert "description_embeddings" not in image_only and "NULL::float8 AS description_match" in image_only


def test_shortlist_params_name_every_placeholder_and_refuse_an_unknown_filter():
    params = shortlist_params([0.0], model_id=7, shortlist_size=100, description_shortlist_size=30, place="Moscow")
    assert params["place"] == "Moscow" and params["model_id"] == 7
    assert all(params[name] is None for name in FILTERS if name != "place")
    assert params["text_model_id"] is None and params["multilingual_vector"] is None  # description sides off
    # every placeholder of the widest statement is a key, so a missing one cannot reach the driver
    widest = shortlist_sql(ShortlistShape(Space(384, True), Space(384, True), Space(512, True), FILTERS))
    assert set(re.findall(r"%\((\w+)\)s", widest)) <= set(params)
    with pytest.raises(TypeError, match="colour"):
        shortlist_params([0.0], model_id=7, shortlist_size=100, description_shortlist_size=30, colour="red")


def test_filters_on_the_index_path_keep_only_matching_photos(loaded, encoders):
    """Each filter reaches the planner as a predicate: the page holds only photos that match it."""
    searcher = Searcher(loaded["engine"], loaded["settings"].with_overrides({"hnsw_min_photos": 0}), encoders.text)
    with loaded["engine"].connect() as conn:
        split = conn.execute(text("SELECT split FROM photos ORDER BY id LIMIT 1")).scalar_one()
        expected = set(conn.execute(text("SELECT id FROM photos WHERE split = :s"), {"s": split}).scalars())
    assert 0 < len(expected) < 16
    page = searcher.search(QUERIES[0], limit=16, splits=[split], log=False)
    assert {r.photo_id for r in page.results} == expected
    assert searcher.search(QUERIES[0], splits=[split], filters=Filters(camera="no such camera"), log=False).results == []
