"""A word-by-word English gloss of a query in another language, for the ranker's own text encoder.

USE multilingual puts a Russian sentence and its English translation near each other (cosine 0.68 on
100 hand-written pairs), but not near enough: through the query bridge a Russian query ranks
photos far worse than its English original does (docs/model.md, "Queries in other languages").
USE also puts single words near their translations, and a word is easier to place than a sentence.
So each word of the query that is not in the English vocabulary of the training texts is replaced
by the vocabulary's word nearest to it in USE's space ("собака прыгает в воду" -> "dog jumps in
water"); MiniLM reads the gloss, and the served query vector is the blend of the gloss's vector
and the bridged one (``blend``): the gloss is sharp where the word lookup is right, and the bridge
keeps the sentence's sense where a word is mistranslated ("гребёт": "grabs", not "rows").

This needs no dictionary, holds no language-specific table, and so serves every language USE reads.
Where a bilingual dictionary is at hand when the ranker is trained (``ml.gloss_dictionary``: Debian's
English-Russian one), a word it knows is glossed by the nearest of its translations in the
vocabulary instead: "полю" -> "field", not "do". The vocabulary, its USE vectors and the
dictionary's forms are fitted with the ranker's query bridge, on the texts the bridge is fitted on,
and saved in it.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ml.gloss_dictionary import GlossDictionary
from ml.preprocess import l2_normalize

# Share of the gloss in the served query vector, and the fewest times a word must occur in the training
# texts to enter the vocabulary (a word seen once is as often a typo as a word). Chosen on the 100
# hand-written Russian captions of training photos (python -m research.ru_gloss; docs/model.md).
GLOSS_WEIGHT = 0.5
MIN_COUNT = 3
_DICT_PREFIX = "dict_"

_WORD = re.compile(r"[^\W\d_]+")  # letters only, any script: digits and marks pass through as they are
_ENGLISH_WORD = re.compile(r"[a-z]+")


def vocabulary(texts: Iterable[str], min_count: int = MIN_COUNT) -> list[str]:
    """The English words of ``texts`` (lower case) that occur at least ``min_count`` times, sorted."""
    counts = Counter(w for t in texts for w in _ENGLISH_WORD.findall(t.lower()))
    return sorted(w for w, c in counts.items() if c >= min_count)


class WordGloss:
    """The vocabulary (English words) and their unit vectors in the multilingual encoder's space."""

    def __init__(self, weight: float = GLOSS_WEIGHT):
        self.weight = weight
        self.dictionary: GlossDictionary | None = None  # indexes into ``words_`` (``ml.gloss_dictionary``)

    def fit(self, words: Sequence[str], word_vectors: np.ndarray) -> WordGloss:
        if len(words) != len(word_vectors) or not len(words):
            raise ValueError(f"a gloss needs one vector per word and at least one word: {len(words)} words, "
                             f"{len(word_vectors)} vectors")
        self.words_ = np.asarray(words, dtype=str)
        self.vectors_ = l2_normalize(np.asarray(word_vectors, np.float32))
        self._known = frozenset(self.words_.tolist())
        return self

    def gloss(self, text: str, encode: Callable[[Sequence[str]], np.ndarray]) -> str:
        """``text`` with every word outside the vocabulary replaced by the nearest vocabulary word;
        ``encode`` gives the multilingual encoder's vectors of the words, each unknown word asked once."""
        text = text.lower()
        pieces, words = _WORD.split(text), _WORD.findall(text)
        unknown = sorted({w for w in words if w not in self._known})
        nearest = {}
        if unknown:
            cosines = l2_normalize(np.asarray(encode(unknown), np.float32)) @ self.vectors_.T
            best = self.nearest(cosines)
            if self.dictionary is not None:
                for row, word in enumerate(unknown):
                    candidates = self.dictionary.candidates(word)
                    if len(candidates):
                        best[row] = candidates[int(np.argmax(cosines[row, candidates]))]
            nearest = dict(zip(unknown, self.words_[best].tolist(), strict=True))
        out = [pieces[0]]
        for word, after in zip(words, pieces[1:], strict=True):
            out += [nearest.get(word, word), after]
        return "".join(out)

    def nearest(self, cosines: np.ndarray) -> np.ndarray:
        """Each unknown word's vocabulary word, from their ``(unknown, vocabulary)`` cosines: the
        nearest one (research.ru_gloss tried others: docs/model.md)."""
        return np.argmax(cosines, axis=1)

    def blend(self, bridged: np.ndarray, glossed: np.ndarray) -> np.ndarray:
        """The served query vector: the gloss's vector and the bridged one, both in the ranker's space."""
        return l2_normalize(self.weight * l2_normalize(glossed) + (1 - self.weight) * l2_normalize(bridged))

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        dictionary = {} if self.dictionary is None else self.dictionary.to_arrays(prefix + _DICT_PREFIX)
        return {f"{prefix}weight": np.array(self.weight), f"{prefix}words": self.words_,
                f"{prefix}vectors": self.vectors_.astype(np.float16),  # half the file; ranks do not move
                **dictionary}

    @classmethod
    def from_arrays(cls, a, prefix: str = "") -> WordGloss:
        gloss = cls(float(a[f"{prefix}weight"])).fit(a[f"{prefix}words"].tolist(),
                                                      np.asarray(a[f"{prefix}vectors"], np.float32))
        if f"{prefix}{_DICT_PREFIX}keys" in a:
            gloss.dictionary = GlossDictionary.from_arrays(a, prefix + _DICT_PREFIX)
        return gloss
