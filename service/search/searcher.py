"""Search: policy check, text vector, hybrid SQL shortlist (photo content + descriptions), rerank, page.

One ``Searcher`` per process holds the loaded encoders and ranker; the API, the CLI and the
evaluation all call ``Searcher.search``, so they measure and serve the same path.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Optional, Sequence

import numpy as np
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine, text

from ml.listwise import PhotoEvidence
from ml.ranker import Ranker
from service import policy
from service.config import Settings
from service.store.db import as_array, driver_connection
from service.store.model_rows import (
    ModelMismatch,
    active_ranker,
    encoder_model_ids,
    load_ranker,
)

# Filters on the photo, shared by both shortlists; each is off when its parameter is NULL.
# taken_after/taken_before form a half-open interval [after, before).
_PHOTO_FILTERS = """
      (CAST(%(splits)s AS text[]) IS NULL OR p.split = ANY(CAST(%(splits)s AS text[])))
      AND (CAST(%(camera)s AS text) IS NULL OR lower(p.camera) = lower(CAST(%(camera)s AS text)))
      AND (CAST(%(place)s AS text) IS NULL OR lower(p.place) = lower(CAST(%(place)s AS text)))
      AND (CAST(%(uploader)s AS text) IS NULL OR lower(p.uploader) = lower(CAST(%(uploader)s AS text)))
      AND (CAST(%(taken_after)s AS timestamptz) IS NULL OR p.taken_at >= CAST(%(taken_after)s AS timestamptz))
      AND (CAST(%(taken_before)s AS timestamptz) IS NULL OR p.taken_at < CAST(%(taken_before)s AS timestamptz))
"""

# Hybrid shortlist, in the shape of pgvector-python's hybrid example: two named candidate
# searches, then their union with both signals per photo. Run through psycopg directly, with
# binary transfer: parsing ~150 vectors from text would cost more than the query itself.
#   semantic_search     - nearest photos to the query in the joint space of the active ranker
#                         (cosine ``<=>``, what a vector_cosine_ops HNSW index serves), compared
#                         with the query in the ranker's own text space (``ranker.transform_query``);
#   description_search  - photos whose descriptions (written for that photo, never the held-out
#                         test queries) are nearest to the query's text vector;
#   description_match   - for every candidate, its best-matching description (NULL when it has none).
# With text_model_id NULL the description side is empty and this is the image-only shortlist.
HYBRID_SHORTLIST_SQL = f"""
    WITH semantic_search AS (
        SELECT e.photo_id
        FROM photo_embeddings e
        JOIN photos p ON p.id = e.photo_id
        WHERE e.model_id = %(model_id)s AND {_PHOTO_FILTERS}
        ORDER BY e.embedding <=> %(ranker_query)s
        LIMIT %(shortlist_size)s
    ), description_search AS (
        SELECT d.photo_id
        FROM description_embeddings de
        JOIN descriptions d ON d.id = de.description_id
        JOIN photos p ON p.id = d.photo_id
        WHERE de.model_id = %(text_model_id)s AND d.source <> 'test' AND {_PHOTO_FILTERS}
        ORDER BY de.embedding <=> %(query_vector)s
        LIMIT %(shortlist_size)s
    ), candidates AS (
        SELECT photo_id FROM semantic_search
        UNION
        SELECT photo_id FROM description_search
    ), description_match AS (
        SELECT d.photo_id, max(1 - (de.embedding <=> %(query_vector)s)) AS best
        FROM candidates c
        JOIN descriptions d ON d.photo_id = c.photo_id AND d.source <> 'test'
        JOIN description_embeddings de ON de.description_id = d.id AND de.model_id = %(text_model_id)s
        GROUP BY d.photo_id
    )
    SELECT p.id AS photo_id, p.file_name, e.embedding AS photo_vector, e.bridge AS photo_bridge,
           e.label_ids, e.label_probs, e.mapper_norm,
           1 - (e.embedding <=> %(ranker_query)s) AS similarity,
           dm.best AS description_match
    FROM candidates c
    JOIN photos p ON p.id = c.photo_id
    JOIN photo_embeddings e ON e.photo_id = p.id AND e.model_id = %(model_id)s
    LEFT JOIN description_match dm ON dm.photo_id = p.id
    ORDER BY similarity DESC, p.id
"""

LOG_SQL = text(
    """INSERT INTO search_log (query, blocked, n_results, photo_ids, model_id, took_ms)
       VALUES (:query, :blocked, :n_results, CAST(:photo_ids AS jsonb), :model_id, :took_ms)"""
)


class NoActiveModel(RuntimeError):
    """No trained ranker for the configured encoders: run `withsense train`."""


@dataclass(frozen=True)
class Filters:
    """Exact (case-insensitive) photo metadata filters and a half-open taken_at interval."""

    camera: Optional[str] = None
    place: Optional[str] = None
    uploader: Optional[str] = None
    taken_after: Optional[datetime] = None
    taken_before: Optional[datetime] = None

    def active(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        return ", ".join(f"{k}={v.isoformat() if isinstance(v, datetime) else repr(v)}" for k, v in self.active().items())


@dataclass
class Result:
    photo_id: int
    file_name: str
    score: float
    similarity: float
    scorer_score: float = 0.0
    description_match: Optional[float] = None


@dataclass
class SearchResponse:
    query: str
    blocked: bool
    notice: Optional[str]
    results: list[Result]
    model_version: Optional[str]
    took_ms: float
    offset: int = 0
    limit: int = 5
    message: Optional[str] = None
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


# MiniLM cosine below which a description is no evidence: unrelated sentences about the same kind
# of scene ("a woman at a coffee shop" for "a cup of coffee") reach 0.3-0.45, paraphrases 0.6+.
DESCRIPTION_EVIDENCE_FLOOR = 0.5


def blend(scorer_scores: np.ndarray, description_match: np.ndarray, weight: float) -> np.ndarray:
    """Final score: the ranker's score, lifted toward 1 by a description that matches the query.

    A description someone wrote for the photo is direct evidence of what it shows, so a close
    match lifts the photo (an exact match lands at (1 + scorer) / 2 with weight 0.5). Only matches
    above DESCRIPTION_EVIDENCE_FLOOR count, in proportion to how far above they are: otherwise any
    photo with a loosely related caption would outrank an undescribed photo that shows the scene.
    It only ever lifts: people describe one aspect of a photo, so a weak match is no evidence
    against it, and photos without descriptions (NaN here) must not lose to described ones.
    """
    match = np.nan_to_num(description_match, nan=0.0)
    strength = np.clip((match - DESCRIPTION_EVIDENCE_FLOOR) / (1.0 - DESCRIPTION_EVIDENCE_FLOOR), 0.0, 1.0)
    return scorer_scores + weight * strength * (1.0 - scorer_scores)


def shortfall_message(*, n_candidates: int, n_passing: int, best: Optional[float], offset: int, limit: int,
                      min_score: Optional[float], filters: Filters) -> Optional[str]:
    """Why fewer than ``limit`` results came back; None when the page is full."""
    shown = max(0, min(limit, n_passing - offset))
    if shown == limit:
        return None
    if n_candidates == 0:
        return f"no photos match the filters ({filters.describe()})" if filters.active() else "there are no photos to search yet"
    if min_score is not None and n_passing < n_candidates:
        if n_passing == 0:
            return f"no photo matches well enough (min_score {min_score}); the best score was {best:.3f}"
        reason = f"only {n_passing} photo{'s' if n_passing != 1 else ''} match well enough (min_score {min_score})"
    elif filters.active():
        reason = f"only {n_candidates} photo{'s' if n_candidates != 1 else ''} match the filters ({filters.describe()})"
    else:
        reason = f"only {n_candidates} photo{'s' if n_candidates != 1 else ''} can be searched"
    if offset and offset >= n_passing:
        return f"{reason}; offset {offset} is past the last of them"
    return reason


def evidence_of(rows) -> PhotoEvidence:
    """The reranker's per-photo inputs, as stored with the active ranker's rows (migration 0008)."""
    return PhotoEvidence(
        joint=np.stack([as_array(r.photo_vector) for r in rows]),
        bridge=np.stack([as_array(r.photo_bridge) for r in rows]),
        label_ids=np.array([r.label_ids for r in rows], dtype=np.int64),
        label_probs=np.array([r.label_probs for r in rows], dtype=np.float32),
        mapper_norm=np.array([r.mapper_norm for r in rows], dtype=np.float32),
    )


class Searcher:
    def __init__(self, engine: Engine, settings: Settings, text_encoder) -> None:
        self.engine = engine
        self.settings = settings
        self.text_encoder = text_encoder
        self._text_model_id: Optional[int] = None

    def ranker_for(self, model: dict, scorer: str | None = None) -> Ranker:
        """The loaded ranker for a models row, refused if it works in another space than the text encoder."""
        ranker = load_ranker(model["artifact_path"], scorer)
        if ranker.dims != self.text_encoder.dim:
            raise ModelMismatch(
                f"active ranker {model['name']} {model['version']} works in {ranker.dims} dimensions "
                f"but the text encoder {self.text_encoder.name} gives {self.text_encoder.dim}"
            )
        return ranker

    def text_model_id(self) -> int:
        """The models row of the text encoder: description vectors are stored under it."""
        if self._text_model_id is None:
            self._text_model_id = encoder_model_ids(self.engine, self.settings, text_encoder=self.text_encoder)["text"]
        return self._text_model_id

    def active_model(self) -> dict:
        with self.engine.connect() as conn:
            model = active_ranker(conn, self.settings.encoder_key)
        if model is None:
            raise NoActiveModel(
                f"no trained model for encoders {self.settings.encoder_key}: run `withsense train`"
            )
        return model

    def search(self, query: str, *, limit: int = 5, offset: int = 0, min_score: Optional[float] = None,
               filters: Filters | None = None, splits: Sequence[str] | None = None, hybrid: bool = True,
               rerank: bool = True, log: bool = True, scorer: str | None = None) -> SearchResponse:
        """Top ``limit`` photos after ``offset``. ``hybrid=False`` ranks by the photo content alone,
        ``rerank=False`` by the shortlist's cosine alone and ``scorer`` names another reranker
        family saved with the active ranker (all three for evaluations)."""
        filters = filters or Filters()
        clock = _Stopwatch()
        if policy.is_about_children(query):
            clock.lap("policy")
            response = SearchResponse(query, True, policy.NOTICE, [], None, clock.total_ms, offset, limit,
                                      None, clock.stages)
            if log:
                self._log(response, None)
            return response
        clock.lap("policy")

        model = self.active_model()
        ranker = self.ranker_for(model, scorer)
        query_vector = self.text_encoder.encode([query])[0]
        # Photos are compared in the ranker's text space; descriptions stay in the raw one.
        ranker_query = ranker.transform_query(query_vector)
        clock.lap("text_encoding")

        with self.engine.connect() as conn, driver_connection(conn).cursor(binary=True, row_factory=namedtuple_row) as cur:
            rows = cur.execute(HYBRID_SHORTLIST_SQL, {
                "query_vector": query_vector,
                "ranker_query": ranker_query,
                "model_id": model["id"],
                "text_model_id": self.text_model_id() if hybrid else None,
                "splits": list(splits) if splits else None,
                "shortlist_size": max(self.settings.shortlist_size, offset + limit),
                **asdict(filters),
            }).fetchall()
        clock.lap("shortlist")

        ranked = self._rerank(ranker, ranker_query, rows) if rerank else self._shortlist_order(rows)
        passing = [r for r in ranked if min_score is None or r.score >= min_score]
        results = passing[offset : offset + limit]
        clock.lap("scoring")
        message = shortfall_message(
            n_candidates=len(ranked), n_passing=len(passing), best=ranked[0].score if ranked else None,
            offset=offset, limit=limit, min_score=min_score, filters=filters,
        )
        response = SearchResponse(query, False, None, results, model["version"], clock.total_ms, offset, limit,
                                  message, clock.stages)
        if log:
            self._log(response, model["id"])
        return response

    def _rerank(self, ranker: Ranker, query_vector: np.ndarray, rows) -> list[Result]:
        """Every candidate scored and sorted, best first (paging and min_score cut the list after)."""
        if not rows:
            return []
        scorer_scores = np.asarray(ranker.score(query_vector, evidence_of(rows)), dtype=np.float64)
        matches = np.array([np.nan if r.description_match is None else r.description_match for r in rows], dtype=np.float64)
        final = blend(scorer_scores, matches, self.settings.description_weight)
        order = np.argsort(-final, kind="stable")
        return [
            Result(rows[i].photo_id, rows[i].file_name, round(float(final[i]), 6), round(float(rows[i].similarity), 6),
                   round(float(scorer_scores[i]), 6),
                   None if np.isnan(matches[i]) else round(float(matches[i]), 6))
            for i in order
        ]

    @staticmethod
    def _shortlist_order(rows) -> list[Result]:
        """Candidates in the SQL shortlist's own order (cosine in the joint space), no scorer."""
        return [Result(r.photo_id, r.file_name, round(float(r.similarity), 6), round(float(r.similarity), 6))
                for r in rows]

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
