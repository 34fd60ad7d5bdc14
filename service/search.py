"""Search: policy check, text vector, SQL shortlist in the joint space, rerank, top k.

One ``Searcher`` per process holds the loaded encoders and ranker; the API, the CLI and the
evaluation all call ``Searcher.search``, so they measure and serve the same path.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import Engine, text

from ml.ranker import Ranker
from service import policy
from service.config import Settings
from service.db import as_array
from service.models_registry import ModelMismatch, active_ranker

# The shortlist: nearest photos to the query in the joint space of the active ranker. Plain,
# parameterised SQL; cosine distance ``<=>`` is what a vector_cosine_ops HNSW index serves.
SHORTLIST_SQL = text(
    """
    SELECT p.id AS photo_id, p.file_name, e.embedding AS photo_vector,
           1 - (e.embedding <=> :query_vector) AS similarity
    FROM photo_embeddings e
    JOIN photos p ON p.id = e.photo_id
    WHERE e.model_id = :model_id
      AND (CAST(:splits AS text[]) IS NULL OR p.split = ANY(CAST(:splits AS text[])))
    ORDER BY e.embedding <=> :query_vector
    LIMIT :shortlist_size
    """
)

LOG_SQL = text(
    """INSERT INTO search_log (query, blocked, n_results, photo_ids, model_id, took_ms)
       VALUES (:query, :blocked, :n_results, CAST(:photo_ids AS jsonb), :model_id, :took_ms)"""
)


class NoActiveModel(RuntimeError):
    """No trained ranker for the configured encoders: run `withsense train`."""


@dataclass
class Result:
    photo_id: int
    file_name: str
    score: float
    similarity: float


@dataclass
class SearchResponse:
    query: str
    blocked: bool
    notice: Optional[str]
    results: list[Result]
    model_version: Optional[str]
    took_ms: float
    stages_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _Stopwatch:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round((now - self.last) * 1000, 3)
        self.last = now

    @property
    def total_ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000, 3)


class Searcher:
    def __init__(self, engine: Engine, settings: Settings, text_encoder) -> None:
        self.engine = engine
        self.settings = settings
        self.text_encoder = text_encoder
        self._rankers: dict[int, Ranker] = {}

    def ranker_for(self, model: dict) -> Ranker:
        """The loaded ranker for a models row; loaded once per process, reloaded when another is active."""
        ranker = self._rankers.get(model["id"])
        if ranker is None:
            ranker = Ranker.load(model["artifact_path"])
            if ranker.dims != self.text_encoder.dim:
                raise ModelMismatch(
                    f"active ranker {model['name']} {model['version']} works in {ranker.dims} dimensions "
                    f"but the text encoder {self.text_encoder.name} gives {self.text_encoder.dim}"
                )
            self._rankers = {model["id"]: ranker}
        return ranker

    def active_model(self) -> dict:
        with self.engine.connect() as conn:
            model = active_ranker(conn, self.settings.encoder_key)
        if model is None:
            raise NoActiveModel(
                f"no trained model for encoders {self.settings.encoder_key}: run `withsense train`"
            )
        return model

    def search(self, query: str, *, limit: int = 5, splits: Sequence[str] | None = None, log: bool = True) -> SearchResponse:
        clock = _Stopwatch()
        if policy.is_about_children(query):
            clock.lap("policy")
            response = SearchResponse(query, True, policy.NOTICE, [], None, clock.total_ms, clock.stages)
            if log:
                self._log(response, None)
            return response
        clock.lap("policy")

        model = self.active_model()
        ranker = self.ranker_for(model)
        query_vector = self.text_encoder.encode([query])[0]
        clock.lap("text_encoding")

        with self.engine.connect() as conn:
            rows = conn.execute(SHORTLIST_SQL, {
                "query_vector": query_vector,
                "model_id": model["id"],
                "splits": list(splits) if splits else None,
                "shortlist_size": max(self.settings.shortlist_size, limit),
            }).all()
        clock.lap("shortlist")

        results = self._rerank(ranker, query_vector, rows, limit)
        clock.lap("scoring")
        response = SearchResponse(query, False, None, results, model["version"], clock.total_ms, clock.stages)
        if log:
            self._log(response, model["id"])
        return response

    @staticmethod
    def _rerank(ranker: Ranker, query_vector: np.ndarray, rows, limit: int) -> list[Result]:
        if not rows:
            return []
        photo_vectors = np.stack([as_array(r.photo_vector) for r in rows])
        scores = ranker.score(query_vector, photo_vectors)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [
            Result(rows[i].photo_id, rows[i].file_name, round(float(scores[i]), 6), round(float(rows[i].similarity), 6))
            for i in order
        ]

    def _log(self, response: SearchResponse, model_id: Optional[int]) -> None:
        import json

        with self.engine.begin() as conn:
            conn.execute(LOG_SQL, {
                "query": response.query[:2000],
                "blocked": response.blocked,
                "n_results": len(response.results),
                "photo_ids": json.dumps([r.photo_id for r in response.results]),
                "model_id": model_id,
                "took_ms": response.took_ms,
            })
