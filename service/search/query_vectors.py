"""Query vectors, cached per process: popular queries repeat, and encoding is most of a search's CPU."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


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
