"""Query vectors, cached per process: popular queries repeat, and encoding is most of a search's CPU;
and the word gloss's word vectors, whose words repeat more still."""
from __future__ import annotations

from collections.abc import Sequence
from threading import Lock

import numpy as np
from cachetools import LRUCache


class QueryVectorCache:
    """LRU of text -> unit vector: the queries of one encoder, or the word gloss's words
    (``ml.word_gloss``), whose words recur across queries far more than whole queries do.

    ``get`` reads one text; ``encode`` several, the missing ones encoded as one batch, which costs
    about what one text does. That is why this is cachetools' ``LRUCache`` behind a lock, not
    ``functools.lru_cache``: that could only encode missing texts one by one (a query of five new
    words: five encoder runs instead of one). The vectors are kept read-only, so a caller cannot
    change what the next search gets. ``size=0`` encodes every time.
    """

    def __init__(self, text_encoder, size: int) -> None:
        self.text_encoder = text_encoder
        self.size = size
        self._cache: LRUCache | None = LRUCache(maxsize=size) if size else None
        self._lock = Lock()  # cachetools' caches are not thread-safe; a web worker serves several threads
        self._hits = self._misses = 0

    def get(self, text: str) -> np.ndarray:
        return self._vectors([text])[0]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` unit vectors, the missing texts encoded in one batch."""
        return np.stack(self._vectors(texts))

    def _vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        if self._cache is None:
            return list(self._encoded(list(texts)))
        with self._lock:
            found = {t: self._cache.get(t) for t in texts}
        missing = [t for t, v in found.items() if v is None]
        found.update(zip(missing, self._encoded(missing), strict=True))
        with self._lock:
            for text in missing:
                self._cache[text] = found[text]
            self._hits += len(found) - len(missing)
            self._misses += len(missing)
        return [found[t] for t in texts]

    def _encoded(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), np.float32)
        vectors = np.asarray(self.text_encoder.encode(texts), dtype=np.float32)
        vectors.flags.writeable = False
        return vectors

    def info(self) -> dict:
        if self._cache is None:
            return {"size": 0, "hits": 0, "misses": 0, "entries": 0}
        with self._lock:
            return {"size": self.size, "hits": self._hits, "misses": self._misses, "entries": len(self._cache)}
