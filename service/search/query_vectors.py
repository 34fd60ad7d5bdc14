"""Query vectors, cached per process: popular queries repeat, and encoding is most of a search's CPU;
and the word gloss's word vectors, whose words repeat more still."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from threading import Lock

import numpy as np
from cachetools import LRUCache


class QueryVectorCache:
    """LRU of query text -> unit vector (functools.lru_cache: thread-safe, C-implemented).

    The vectors are handed out read-only, so a caller cannot change what the next search gets.
    ``size=0`` encodes every time.
    """

    def __init__(self, text_encoder, size: int) -> None:
        self.text_encoder = text_encoder
        self.size = size
        self._encode = lru_cache(maxsize=size)(self._encode_one) if size else self._encode_one

    def _encode_one(self, query: str) -> np.ndarray:
        vector = np.asarray(self.text_encoder.encode([query])[0], dtype=np.float32)
        vector.flags.writeable = False
        return vector

    def get(self, query: str) -> np.ndarray:
        return self._encode(query)

    def info(self) -> dict:
        if not self.size:
            return {"size": 0, "hits": 0, "misses": 0, "entries": 0}
        stats = self._encode.cache_info()
        return {"size": self.size, "hits": stats.hits, "misses": stats.misses, "entries": stats.currsize}


class WordVectorCache:
    """LRU of single words -> unit vectors, for the word gloss (``ml.word_gloss``): the words of a
    language recur across queries far more than whole queries do. The words a query lacks are
    encoded as one batch, which costs about what one word does; ``functools.lru_cache`` could only
    encode them one by one (a query of five new words: five encoder runs instead of one)."""

    def __init__(self, encoder, size: int) -> None:
        self.encoder = encoder
        self.size = size
        self._cache: LRUCache | None = LRUCache(maxsize=size) if size else None
        self._lock = Lock()  # cachetools' caches are not thread-safe; a web worker serves several threads
        self.hits = self.misses = 0

    def encode(self, words: Sequence[str]) -> np.ndarray:
        """``(len(words), dim)`` unit vectors, the missing words encoded in one batch."""
        if self._cache is None:
            return np.asarray(self.encoder.encode(list(words)), np.float32)
        with self._lock:
            found = {w: self._cache.get(w) for w in words}
        missing = [w for w, v in found.items() if v is None]
        if missing:
            for word, vector in zip(missing, np.asarray(self.encoder.encode(missing), np.float32), strict=True):
                found[word] = vector
        with self._lock:
            for word in missing:
                self._cache[word] = found[word]
            self.hits += len(found) - len(missing)
            self.misses += len(missing)
        return np.stack([found[w] for w in words])

    def info(self) -> dict:
        with self._lock:
            entries = len(self._cache) if self._cache is not None else 0
            return {"size": self.size, "hits": self.hits, "misses": self.misses, "entries": entries}
