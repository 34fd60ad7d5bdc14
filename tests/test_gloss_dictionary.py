"""The word gloss's bilingual dictionary (ml/gloss_dictionary.py): a dictd file the test writes, the
real pymorphy3 and USE, and Debian's mueller7 where it is installed (CI installs it)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ml.gloss_dictionary import DEFAULT_PATH, GlossDictionary, build, form_key, read_dictd
from ml.multilingual import UseTextEncoder
from ml.word_gloss import WordGloss

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# entries as mueller7 writes them: transcription, grammar marks, numbered senses, examples
ENTRIES = {
    "do": "do\n   [du:] _v.\n   1) делать; выполнять\n   2) поступать",
    "field": "field\n   [fi:ld] _n.\n   1) поле; луг; большое пространство\n   2) область, сфера деятельности",
    "meadow": "meadow\n   [ˈmedəʊ] _n. луг",
    "row": "row\n   _I [rəʊ] _n.\n      1) ряд; in a row в ряд\n   _II 2. _v.\n      1) грести",
    "in": "in\n   [ɪn] _prep.\n   1) в; на\n   2) через",
    "dog": "dog\n   [dɒg] _n. собака, пёс",
}


def _b64(n: int) -> str:
    out = ""
    while True:
        out = B64[n % 64] + out
        n //= 64
        if not n:
            return out


@pytest.fixture(scope="module")
def dictd(tmp_path_factory) -> Path:
    """A dictd dictionary: NAME.index (headword, offset, length in base 64) and NAME.dict.dz (gzip)."""
    folder = tmp_path_factory.mktemp("dictd")
    data, index = b"", []
    for headword, entry in sorted(ENTRIES.items()):
        raw = entry.encode("utf-8")
        index.append(f"{headword}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw + b"\n"
    (folder / "tiny.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    with gzip.open(folder / "tiny.dict.dz", "wb") as f:
        f.write(data)
    return folder / "tiny.dict.dz"


@pytest.fixture(scope="module")
def use(onnx_dir):
    return UseTextEncoder(onnx_dir).load()


def test_the_dictionary_is_read_backwards_for_the_wanted_headwords(dictd):
    table = read_dictd(dictd, ["field", "meadow", "row", "dog"])
    assert table["поле"] == {"field"} and table["луг"] == {"field", "meadow"}
    assert table["грести"] == {"row"} and table["собака"] == {"dog"} and table["пес"] == {"dog"}  # ё as е
    assert "делать" not in table  # "do" was not wanted
    assert "область" in table and "сфера деятельности" not in table  # single words only
    assert not any(" " in w or w.isascii() for w in table)  # no examples, no transcriptions


def test_every_form_of_a_translation_leads_to_its_english_words_but_function_words_do_not(dictd):
    words = ["do", "dog", "field", "in", "meadow", "row"]
    dictionary = build(words, dictd)
    looked_up = lambda form: sorted(words[i] for i in dictionary.candidates(form))  # noqa: E731
    assert looked_up("полю") == looked_up("полях") == looked_up("Поле") == ["field"]
    assert looked_up("лугу") == ["field", "meadow"]
    assert looked_up("гребёт") == looked_up("гребет") == looked_up("грёб") == ["row"]
    assert looked_up("собаками") == ["dog"]
    assert looked_up("в") == looked_up("на") == []  # prepositions keep USE's nearest word
    assert looked_up("кошка") == []
    again = GlossDictionary.from_arrays(dictionary.to_arrays("x_"), "x_")
    assert np.array_equal(again.keys, dictionary.keys) and [words[i] for i in again.candidates("полю")] == ["field"]
    assert form_key("Полю") == form_key("полю") != form_key("поле")  # stable: the arrays outlive the process


def test_the_gloss_takes_the_nearest_translation_where_the_dictionary_knows_the_word(dictd, use):
    words = ["do", "dog", "field", "in", "meadow", "row", "runs"]
    gloss = WordGloss().fit(words, use.encode(words))
    gloss.dictionary = build(words, dictd)
    glossed = gloss.gloss("собака бежит по полю", use.encode).split()
    assert glossed[0] == "dog" and glossed[3] == "field", glossed
    assert gloss.gloss("гребёт в лодке", use.encode).split()[:2] == ["row", "in"]
    # a word the dictionary does not know still takes USE's nearest vocabulary word
    nearest = WordGloss().fit(words, use.encode(words)).gloss("бежит", use.encode)
    assert gloss.gloss("бежит", use.encode) == nearest


@pytest.mark.skipif(not DEFAULT_PATH.exists(), reason="Debian's mueller7-dict is not installed (CI installs it)")
def test_debians_mueller7_translates_the_words_use_alone_got_wrong():
    words = ["do", "ahead", "field", "stand", "row", "grabs", "puddle", "lawn", "sign", "enclosed", "in"]
    dictionary = build(words)
    looked_up = lambda form: {words[i] for i in dictionary.candidates(form)}  # noqa: E731
    assert "field" in looked_up("полю") and "do" not in looked_up("полю")
    assert "stand" in looked_up("стоит") and "row" in looked_up("гребёт")
    assert "puddle" in looked_up("луже") and "sign" in looked_up("вывеску")
    assert looked_up("в") == set()
