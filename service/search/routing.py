"""Which text encoder serves a query: English goes to the ranker's own (MiniLM); a query in another
language USE multilingual serves goes to USE, then through the ranker's query bridge into its space
(``ml.multilingual.QueryBridge``). The language rule is ``ml.language``'s; its answers are cached
per process like the query vectors (search/query_vectors.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ml.language import ENGLISH, UNDETERMINED, shared_detector


@dataclass(frozen=True)
class Route:
    language: str | None  # ISO 639-1 (``"ru"``), ``"und"`` (no letters), None when nothing is detected
    encoder: str  # the name of the text encoder whose vector reaches the photos


class QueryRouter:
    def __init__(self, text_encoder, multilingual, cache_size: int) -> None:
        self.text_encoder = text_encoder
        self.multilingual = multilingual  # None: every query goes to the text encoder (the clip backend)
        self.language = shared_detector() if multilingual is not None else None
        if self.language is not None:
            self._detect = lru_cache(maxsize=cache_size)(self.language.detect) if cache_size else self.language.detect

    def load(self) -> QueryRouter:
        """Load the language models now (a server's warm-up), not at the first Latin-script query."""
        if self.language is not None:
            self.language.load()
        return self

    def route(self, query: str, ranker) -> Route:
        if self.language is None:
            return Route(None, self.text_encoder.name)
        language = self._detect(query)
        if language in (ENGLISH, UNDETERMINED) or self.multilingual.name not in ranker.query_bridges:
            # A ranker trained before the bridge existed serves every language with its own encoder.
            return Route(language, self.text_encoder.name)
        return Route(language, self.multilingual.name)
