"""A bilingual dictionary for the word gloss (``ml.word_gloss``): which English words a Russian word
form may translate to.

USE alone picks a Russian word's English word by the nearest vector, and is often wrong: "полю"
(the field, dative) -> "do", "стоит" -> "ahead", "гребёт" -> "grabs". A dictionary narrows the
choice to real translations, among which USE's cosine still chooses (``WordGloss``). No translation
model ships in any package reachable here, but Debian's ``mueller7-dict`` does ship V. K. Mueller's
English-Russian dictionary (7th edition, 46,000 headwords, GPL 2+) in dictd format:
``/usr/share/dictd/mueller7.index`` (headword, offset and length in base64) and ``mueller7.dict.dz``
(dictzip, which gzip reads). It is read once, when a ranker is trained; what the gloss needs is
saved with the ranker's query bridge, so serving reads neither the dictionary nor pymorphy3.

The dictionary runs English -> Russian; the gloss needs the other way, and a query's inflected
forms. So every single-word Russian translation of an English headword in the gloss's vocabulary
is indexed under every form of its lexeme (pymorphy3: "поле" -> "полю", "полем", "полях", ...).
Prepositions, conjunctions, particles, pronouns and interjections are left out: they translate to
dozens of headwords ("в": in, at, into, ...), and USE's nearest word ("в" -> "in") serves them well.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the Debian package mueller7-dict's files (dictd format)
DEFAULT_PATH = Path("/usr/share/dictd/mueller7.dict.dz")
# pymorphy3's parts of speech whose words stay with USE's nearest word (see the module docstring)
FUNCTION_WORDS = frozenset({"PREP", "CONJ", "PRCL", "NPRO", "INTJ"})

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HEADWORD = re.compile(r"[a-z]+")
_RUSSIAN_WORD = re.compile(r"[а-яё]+")
# an entry's translations are separated by ";", "," or new lines, and numbered "1)"; grammar marks
# ("_n."), transcriptions ("[fi:ld]"), notes ("(или ...)", "{ср. ...}") are not translations
_ITEM_SPLIT = re.compile(r"[;,\n]|\d\)")
_NOT_TRANSLATION = re.compile(r"\(.*?\)|_\S+|\[.*?\]|\{.*?\}")


def _b64(text: str) -> int:
    """dictd's base-64 numbers (offsets and lengths in the .index file)."""
    n = 0
    for c in text:
        n = n * 64 + _B64.index(c)
    return n


def normalise(word: str) -> str:
    """The spelling words are looked up by: lower case, ё as е (Russians write either)."""
    return word.lower().replace("ё", "е")


def read_dictd(dict_path: str | Path, headwords: Iterable[str]) -> dict[str, set[str]]:
    """``{Russian word: English headwords}`` from a dictd English -> Russian dictionary, for the
    ``headwords`` wanted only: each entry's single-word translations.

    Read here, not through a library: dictd's format is an index of (headword, offset, length) and
    a gzip-readable text, a dozen lines; the readers on the package index (pyglossary and the like)
    convert between dozens of formats and would bring far more than they read here."""
    dict_path = Path(dict_path)
    index_path = dict_path.with_name(dict_path.name.split(".")[0] + ".index")
    wanted = set(headwords)
    with gzip.open(dict_path) as f:
        data = f.read()
    table: dict[str, set[str]] = {}
    for line in index_path.read_text(encoding="utf-8").splitlines():
        headword, offset, length = line.split("\t")[:3]
        if headword not in wanted or not _HEADWORD.fullmatch(headword):
            continue
        entry = data[_b64(offset) : _b64(offset) + _b64(length)].decode("utf-8", "replace")
        for item in _ITEM_SPLIT.split(entry):
            item = _NOT_TRANSLATION.sub(" ", item).strip()
            if _RUSSIAN_WORD.fullmatch(item):
                table.setdefault(normalise(item), set()).add(headword)
    return table


def form_key(form: str) -> int:
    """A word form's key in the saved arrays: 8 bytes of BLAKE2b of its normalised spelling, stable
    across processes (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(normalise(form).encode("utf-8"), digest_size=8).digest(), "little", signed=True)


@dataclass
class GlossDictionary:
    """Word forms -> candidate English words, as arrays (the bridge's file holds them): the form whose
    key (:func:`form_key`) is ``keys[i]`` (sorted) may translate to ``words[offsets[i]:offsets[i + 1]]``
    (indices into the gloss's vocabulary). Keys, not strings: on the full data 208,000 forms take
    4.5 MB so (a web worker's RSS grows by 5 MB), about 20 MB as a numpy string array and several
    times that as a dict; two of them sharing 64 bits of a hash is a chance of about 1e-9."""

    keys: np.ndarray  # (n,) int64, sorted
    offsets: np.ndarray  # (n + 1,) int64
    words: np.ndarray  # int32

    @classmethod
    def of(cls, translations: dict[str, Iterable[int]]) -> GlossDictionary:
        """From ``{form: vocabulary indices}``."""
        keyed = sorted((form_key(form), sorted(set(words))) for form, words in translations.items())
        sizes = [len(words) for _, words in keyed]
        return cls(np.array([k for k, _ in keyed], np.int64), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                   np.array([w for _, words in keyed for w in words], np.int32))

    def candidates(self, form: str) -> np.ndarray:
        """The vocabulary indices ``form`` may translate to (empty: the dictionary does not know it)."""
        key = form_key(form)
        i = int(np.searchsorted(self.keys, key))
        if i == len(self.keys) or self.keys[i] != key:
            return self.words[:0]
        return self.words[self.offsets[i] : self.offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.keys)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}keys": self.keys, f"{prefix}offsets": self.offsets, f"{prefix}words": self.words}

    @classmethod
    def from_arrays(cls, a, prefix: str = "") -> GlossDictionary:
        return cls(*(np.asarray(a[f"{prefix}{k}"]) for k in ("keys", "offsets", "words")))


def build(vocabulary: Sequence[str], dict_path: str | Path = DEFAULT_PATH) -> GlossDictionary:
    """The dictionary for a gloss vocabulary: every form of every Russian translation of its words."""
    import pymorphy3

    morph = pymorphy3.MorphAnalyzer(lang="ru")
    index = {w: i for i, w in enumerate(vocabulary)}
    per_form: dict[str, set[int]] = {}
    function_word: dict[str, bool] = {}  # each form parsed once: a form recurs in many lexemes
    for lemma, translations in read_dictd(dict_path, index).items():
        parses = [p for p in morph.parse(lemma) if normalise(p.normal_form) == lemma] or morph.parse(lemma)[:1]
        forms = {lemma} | {normalise(f.word) for p in parses for f in p.lexeme}
        for form in forms:
            if form not in function_word:
                function_word[form] = morph.parse(form)[0].tag.POS in FUNCTION_WORDS
            if function_word[form]:
                continue
            per_form.setdefault(form, set()).update(index[english] for english in translations)
    return GlossDictionary.of(per_form)
