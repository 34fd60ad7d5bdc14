"""The word gloss (ml/word_gloss.py): real USE vectors, a real vocabulary, and the served blend."""
from __future__ import annotations

import numpy as np
import pytest

from ml.multilingual import QueryBridge, UseTextEncoder
from ml.word_gloss import WordGloss, vocabulary

ENGLISH = [
    "A dog jumps into the water .", "Two dogs run on the grass .", "A man rides a bicycle down the street .",
    "A woman in a red dress walks on the beach .", "A boat on the river .", "Snow on the mountain .",
    "A black cat sleeps on a chair .", "People sit at a table in a cafe .",
]


@pytest.fixture(scope="module")
def use(onnx_dir):
    return UseTextEncoder(onnx_dir).load()


@pytest.fixture(scope="module")
def glosser(use):
    words = vocabulary(ENGLISH, min_count=1)
    return WordGloss().fit(words, use.encode(words))


def test_the_vocabulary_is_the_english_words_seen_often_enough():
    assert vocabulary(["A dog, a DOG and a cat 3 .", "the dog"], min_count=2) == ["a", "dog"]
    assert "cat" in vocabulary(["A dog, a DOG and a cat 3 ."], min_count=1)
    assert vocabulary(["собака и кошка"], min_count=1) == []  # only English words enter it


@pytest.mark.parametrize("russian, expected", [
    ("собака прыгает в воду", {"dog", "water"}),
    ("чёрная кошка спит на стуле", {"black", "cat", "chair"}),
    ("лодка на реке", {"boat", "river"}),
    ("женщина в красном платье на пляже", {"woman", "red", "dress", "beach"}),
])
def test_russian_words_become_their_english_neighbours(glosser, use, russian, expected):
    gloss = glosser.gloss(russian, use.encode)
    assert expected <= set(gloss.split()), gloss
    assert len(gloss.split()) == len(russian.split())  # word for word


def test_known_words_digits_and_marks_pass_through(glosser, use):
    # "dog" and "beach" are in the vocabulary: kept as they are, never re-encoded
    assert glosser.gloss("Dog, 3 beach!", use.encode) == "dog, 3 beach!"
    assert glosser.gloss("", use.encode) == ""
    calls = []
    glosser.gloss("собака, собака и Собака", lambda words: calls.append(list(words)) or use.encode(words))
    assert calls == [["и", "собака"]]  # one call, each unknown word once


def test_the_blend_is_the_weighted_mean_of_unit_vectors():
    rng = np.random.default_rng(0)
    bridged, glossed = rng.normal(size=8), rng.normal(size=8)
    gloss = WordGloss(weight=0.0).fit(["a"], np.ones((1, 4)))
    assert np.allclose(gloss.blend(bridged, glossed), bridged / np.linalg.norm(bridged), atol=1e-6)
    gloss.weight = 1.0
    assert np.allclose(gloss.blend(bridged, glossed), glossed / np.linalg.norm(glossed), atol=1e-6)
    gloss.weight = 0.5
    both = bridged / np.linalg.norm(bridged) + glossed / np.linalg.norm(glossed)
    assert np.allclose(gloss.blend(bridged, glossed), both / np.linalg.norm(both), atol=1e-6)


def test_a_gloss_needs_a_vector_per_word():
    with pytest.raises(ValueError, match="one vector per word"):
        WordGloss().fit(["a", "b"], np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least one word"):
        WordGloss().fit([], np.ones((0, 4)))


def test_the_gloss_travels_in_the_bridges_file(glosser, use, tmp_path):
    from ml.multilingual import load_query_bridges, save_query_bridges

    rng = np.random.default_rng(1)
    bridge = QueryBridge(use.name).fit(rng.normal(size=(40, 512)), rng.normal(size=(40, 16)))
    save_query_bridges(tmp_path, {use.name: bridge})
    old = load_query_bridges(tmp_path)[use.name]
    assert old.gloss is None and old.cos_share is None  # a bridge saved before the gloss and the share
    arrays = bridge.to_arrays()
    del arrays["n_parallel"]  # nor the count of texts in other languages it was fitted on
    assert old.n_parallel_ == QueryBridge.from_arrays(arrays).n_parallel_ == 0
    bridge.cos_share, bridge.n_parallel_ = 0.0, 7
    bridge.gloss = glosser
    glosser.weight = 0.4
    save_query_bridges(tmp_path, {use.name: bridge})
    assert load_query_bridges(tmp_path)[use.name].cos_share == 0.0
    assert load_query_bridges(tmp_path)[use.name].summary()["parallel_texts"] == 7
    loaded = load_query_bridges(tmp_path)[use.name].gloss
    assert loaded.weight == 0.4 and loaded.words_.tolist() == glosser.words_.tolist()
    assert loaded.gloss("собака прыгает в воду", use.encode) == glosser.gloss("собака прыгает в воду", use.encode)
    assert loaded.dictionary is None
    # the bilingual dictionary's forms travel with it (ml/gloss_dictionary.py)
    from ml.gloss_dictionary import GlossDictionary

    words = glosser.words_.tolist()
    glosser.dictionary = GlossDictionary.of({"полю": [words.index("grass")], "собакой": [words.index("dog")]})
    save_query_bridges(tmp_path, {use.name: bridge})
    loaded = load_query_bridges(tmp_path)[use.name].gloss
    assert loaded.gloss("собакой по полю", use.encode).split()[::2] == ["dog", "grass"]
    glosser.weight, glosser.dictionary = 0.5, None
