"""Search: policy check, text vector, hybrid SQL shortlist (photo content + descriptions), rerank, page.

One ``Searcher`` per process holds the text encoder, the cached active ranker
(service/search/active_model.py), the query-vector LRU (service/search/query_vectors.py) and the
background search-log writer (service/search/search_log.py), so a search is one SQL round trip
(service/search/shortlist.py) plus numpy. The API, the CLI and the evaluation all call
``Searcher.search``, so they measure and serve the same path.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine

from ml.listwise import PhotoEvidence, ShortlistCosines
from ml.ranker import Ranker
from service import policy
from service.config import Settings
from service.search.active_model import ActiveModelCache, ActiveState
from service.search.query_vectors import QueryVectorCache
from service.search.routing import QueryRouter
from service.search.search_log import SearchLogEntry, SearchLogWriter
from service.search.shortlist import (
    ShortlistShape,
    Space,
    fetch_shortlist,
    filters_set,
    search_ef,
    shortlist_params,
)
from service.store.db import as_array, retry_if_disconnected
from service.store.model_rows import ModelMismatch, ModelRow, check_package_versions, load_ranker
from service.store.replicas import ReadReplicas, read_with_fallback


class _NotOnReplica(LookupError):
    """The replica answered nothing: the primary is asked, since it may only lag behind."""


class NoActiveModel(RuntimeError):
    """No trained ranker for the configured encoders: run `withsense train`."""


@dataclass(frozen=True)
class Filters:
    """Exact (case-insensitive) photo metadata filters and a half-open taken_at interval."""

    camera: str | None = None
    place: str | None = None
    uploader: str | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None

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
    description_match: float | None = None
    shows_child: bool = False  # the content rule's mark: the API withholds the image


@dataclass
class Ranking:
    """A shortlist's final order, as arrays: only the page a search returns becomes :class:`Result`
    objects (a shortlist holds 100-300 candidates; making them all cost ~1 ms a search)."""

    rows: list
    score: np.ndarray                 # (n,) final score per row
    order: np.ndarray                 # row indices, best first
    scorer_score: np.ndarray | None = None
    description_match: np.ndarray | None = None

    @classmethod
    def in_shortlist_order(cls, rows) -> Ranking:
        """The SQL shortlist's own order (cosine in the joint space), no scorer."""
        cos = np.array([r.cos_joint for r in rows], dtype=np.float64)
        return cls(rows, cos, np.arange(len(rows)))

    @property
    def best(self) -> float | None:
        return round(float(self.score[self.order[0]]), 6) if len(self.order) else None

    def passing(self, min_score: float | None) -> np.ndarray:
        """Row indices, best first, of the candidates scoring at least ``min_score``."""
        if min_score is None:
            return self.order
        # rounded as the results show their scores, so a result never shows less than min_score
        return self.order[np.round(self.score[self.order], 6) >= min_score]

    def result(self, i: int) -> Result:
        row = self.rows[i]
        if self.scorer_score is None:
            cos = round(float(row.cos_joint), 6)
            return Result(row.photo_id, row.file_name, cos, cos, shows_child=row.shows_child)
        match = self.description_match[i]
        return Result(row.photo_id, row.file_name, round(float(self.score[i]), 6), round(float(row.cos_joint), 6),
                      round(float(self.scorer_score[i]), 6), None if np.isnan(match) else round(float(match), 6),
                      row.shows_child)


@dataclass
class SearchOutcome:
    """One search's results and the figures about it: the API's answer and the CLI's output are made from it."""

    query: str
    blocked: bool
    notice: str | None
    results: list[Result]
    model_version: str | None
    took_ms: float
    offset: int = 0
    limit: int = 5
    message: str | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    query_language: str | None = None  # ISO 639-1 as detected (search/routing.py), "und" without letters
    text_encoder: str | None = None  # the encoder whose vector reached the photos: the query's path

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
# The same floor in USE multilingual's space: the USE cosine exceeded by as few captions of *other*
# photos as exceed MiniLM's 0.5 (0.7 % of 4.0 M pairs of 2,000 Flickr8k extra captions; 55 % of the
# pairs of captions of one photo exceed it, 75 % MiniLM's). docs/model.md, "Queries in other languages".
MULTILINGUAL_EVIDENCE_FLOOR = 0.56


def description_evidence(match: np.ndarray, multilingual_match: np.ndarray) -> np.ndarray:
    """The best description match of each photo on MiniLM's scale: USE's cosine is mapped linearly so
    that its floor lands on MiniLM's and 1 on 1, then the better of the two counts (NaN: none)."""
    floor, ml_floor = DESCRIPTION_EVIDENCE_FLOOR, MULTILINGUAL_EVIDENCE_FLOOR
    rescaled = floor + (1.0 - floor) * (np.asarray(multilingual_match, np.float64) - ml_floor) / (1.0 - ml_floor)
    return np.fmax(np.asarray(match, np.float64), rescaled)


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


def shortfall_message(*, n_candidates: int, n_passing: int, best: float | None, offset: int, limit: int,
                      min_score: float | None, filters: Filters) -> str | None:
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
    """The reranker's per-photo inputs with their vectors, as stored with the active ranker's rows
    (migration 0008): for scoring in memory (service/training/pair_scores.py); a search reads
    :func:`cosines_of` its shortlist instead."""
    return PhotoEvidence(
        joint=np.stack([as_array(r.photo_vector) for r in rows]),
        bridge=np.stack([as_array(r.photo_bridge) for r in rows]),
        label_ids=np.array([r.label_ids for r in rows], dtype=np.int64),
        label_probs=np.array([r.label_probs for r in rows], dtype=np.float32),
        mapper_norm=np.array([r.mapper_norm for r in rows], dtype=np.float32),
    )


def cosines_of(rows) -> ShortlistCosines:
    """The reranker's inputs as the shortlist statement returns them (service/search/shortlist.py)."""
    return ShortlistCosines(
        cos_joint=np.array([r.cos_joint for r in rows], dtype=np.float32),
        cos_bridge=np.array([r.cos_bridge for r in rows], dtype=np.float32),
        label_ids=np.array([r.label_ids for r in rows], dtype=np.int64),
        label_probs=np.array([r.label_probs for r in rows], dtype=np.float32),
        mapper_norm=np.array([r.mapper_norm for r in rows], dtype=np.float32),
    )


class Searcher:
    def __init__(self, engine: Engine, settings: Settings, text_encoder, replicas: ReadReplicas | None = None,
                 multilingual=None, shortlist_engine: Engine | None = None) -> None:
        self.engine = engine  # the primary: the active model row is read and the search log written there
        # The shortlist's on the primary: the app's autocommit engine (service.store.db), else ``engine``.
        self.shortlist_engine = shortlist_engine or engine
        self.settings = settings
        self.text_encoder = text_encoder
        self.multilingual = multilingual  # USE (ml/multilingual.py): other languages, descriptions across them
        self.replicas = replicas  # the shortlist reads from a healthy one when there is one
        self.models = ActiveModelCache(engine, encoder_key=settings.encoder_key, text_encoder_name=text_encoder.name,
                                       load=self.ranker_for, refresh_seconds=settings.model_refresh_seconds,
                                       multilingual_name=multilingual.name if multilingual is not None else None,
                                       count_cap=settings.hnsw_min_photos)
        self.query_vectors = QueryVectorCache(text_encoder, settings.query_cache_size)
        self.multilingual_vectors = (QueryVectorCache(multilingual, settings.query_cache_size)
                                     if multilingual is not None else None)
        # The word gloss's words (``_bridged``), apart from whole queries: a language's words recur
        # across queries far more than queries do, so a query of words met before costs no USE run for
        # its gloss (1.3-2.1 ms of a Russian search's encoding as one batch, 0.35 ms once its words are
        # here: reports/bench/search.md).
        self.word_vectors = (QueryVectorCache(multilingual, settings.query_cache_size)
                             if multilingual is not None else None)
        self.router = QueryRouter(text_encoder, multilingual, settings.query_cache_size)
        self.log_writer = SearchLogWriter(engine)

    def ranker_for(self, model: ModelRow, scorer: str | None = None) -> Ranker:
        """The loaded ranker for a models row (``scorer``: one of the other families saved with it, for
        evaluations), refused if it works in another space than the text encoder or was made by other
        package versions than the installed ones."""
        check_package_versions(model.describe(), model.package_versions)
        ranker = load_ranker(model.artifact_path, scorer)
        if ranker.dims != self.text_encoder.dim:
            raise ModelMismatch(
                f"{model.describe()} works in {ranker.dims} dimensions "
                f"but the text encoder {self.text_encoder.name} gives {self.text_encoder.dim}"
            )
        return ranker

    def active_state(self) -> ActiveState:
        state = self.models.get()
        if state.model is None:
            raise NoActiveModel(
                f"no trained model for encoders {self.settings.encoder_key}: run `withsense train`"
            )
        return state

    def active_model(self) -> ModelRow:
        return self.active_state().model

    def uses_index(self, state: ActiveState) -> bool:
        """HNSW once the library is large enough to need it (WITHSENSE_HNSW_MIN_PHOTOS); an exact
        scan below that is as fast on this machine and exact (reports/bench/scale.md)."""
        return state.has_index and state.n_photos >= self.settings.hnsw_min_photos

    def index_model_id(self) -> int | None:
        """The active ranker's id when its HNSW index serves nearest-neighbour searches, else None
        (similar photos follow the shortlist's rule, ``service.search.similar``)."""
        state = self.active_state()
        return state.model.id if self.uses_index(state) else None

    def shape(self, state: ActiveState, params: dict) -> ShortlistShape:
        """Which candidate searches run, each by its index (above the size threshold, once built)
        or exactly, and which filters are set: the statement's shape (service/search/shortlist.py)."""
        large = state.n_photos >= self.settings.hnsw_min_photos
        # A query MiniLM reads matches only the descriptions in other languages in USE's space: by
        # the index once there are as many of them as photos that need one, else exactly.
        other_languages = params["text_vector"] is not None
        multilingual_indexed = state.multilingual_has_index and (
            state.other_language_descriptions >= self.settings.hnsw_min_photos if other_languages else large)
        return ShortlistShape(
            photos=Space(state.model.dims, self.uses_index(state)),
            text=(Space(state.text_dims, large and state.text_has_index)
                  if params["text_model_id"] is not None else None),
            multilingual=(Space(state.multilingual_dims, multilingual_indexed)
                          if params["multilingual_model_id"] is not None else None),
            filters=filters_set(params), multilingual_other_languages=other_languages)

    def search(self, query: str, *, limit: int = 5, offset: int = 0, min_score: float | None = None,
               filters: Filters | None = None, splits: Sequence[str] | None = None, hybrid: bool = True,
               rerank: bool = True, log: bool = True, scorer: str | None = None) -> SearchOutcome:
        """Top ``limit`` photos after ``offset``. ``hybrid=False`` ranks by the photo content alone,
        ``rerank=False`` by the shortlist's cosine alone and ``scorer`` names another reranker
        family saved with the active ranker (all three for evaluations)."""
        filters = filters or Filters()
        clock = _Stopwatch()
        if self.settings.content_rule and policy.is_about_children(query):
            clock.lap("policy")
            response = SearchOutcome(query, True, policy.NOTICE, [], None, clock.total_ms, offset, limit,
                                      None, clock.stages)
            if log:
                self._log(response, None, min_score=min_score)
            return response
        clock.lap("policy")

        state = self.active_state()
        model = state.model
        ranker = state.ranker if scorer is None else self.ranker_for(model, scorer)
        route = self.router.route(query, ranker)
        # Descriptions are matched in USE's space too (when their USE vectors are stored), so a
        # description in one language is found by a query in another; for a query MiniLM reads, only
        # where some description is in another language (``shape``).
        multilingual_vector = (self.multilingual_vectors.get(query)
                               if hybrid and self.multilingual_vectors is not None and state.multilingual_model_id
                               and state.other_language_descriptions else None)
        if route.encoder == self.text_encoder.name:
            text_vector = self.query_vectors.get(query)
            # Photos are compared in the ranker's (whitened) text space; descriptions in the raw one.
            query_vector = ranker.transform_query(text_vector)
            cos_share = None  # the served order
        else:  # another language: USE, bridged into the ranker's space; MiniLM cannot read it
            text_vector = None
            multilingual_vector = self.multilingual_vectors.get(query)
            query_vector = self._bridged(ranker, route.encoder, query, multilingual_vector)
            cos_share = ranker.query_bridges[route.encoder].cos_share  # its own order (QueryBridge)
        clock.lap("text_encoding")

        params = shortlist_params(
            query_vector, model_id=model.id,
            text_vector=text_vector,
            text_model_id=state.text_model_id if hybrid and text_vector is not None else None,
            multilingual_vector=multilingual_vector,
            multilingual_model_id=state.multilingual_model_id if hybrid and multilingual_vector is not None else None,
            shortlist_size=max(self.settings.shortlist, offset + limit),
            description_shortlist_size=max(self.settings.description_shortlist, offset + limit),
            splits=list(splits) if splits else None, **asdict(filters))
        shape = self.shape(state, params)

        def shortlist(engine: Engine):
            # Autocommit: a read alone needs no BEGIN and ROLLBACK round trips (``fetch_shortlist``).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                rows = fetch_shortlist(conn, params, shape,
                                       ef_search=search_ef(self.settings.hnsw_ef_search, params["shortlist_size"]))
            if not rows and engine is not self.shortlist_engine:
                raise _NotOnReplica  # a model activated a moment ago may not have reached the replica
            return rows

        rows = retry_if_disconnected(lambda: read_with_fallback(
            self.shortlist_engine, self.replicas, shortlist, retry_on_primary=(_NotOnReplica,)))
        clock.lap("shortlist")

        ranking = (self._rerank(ranker, query_vector, rows, cos_share) if rerank
                   else Ranking.in_shortlist_order(rows))
        passing = ranking.passing(min_score)
        results = [ranking.result(i) for i in passing[offset : offset + limit]]
        clock.lap("scoring")
        message = shortfall_message(
            n_candidates=len(rows), n_passing=len(passing), best=ranking.best,
            offset=offset, limit=limit, min_score=min_score, filters=filters,
        )
        response = SearchOutcome(query, False, None, results, model.version, clock.total_ms, offset, limit,
                                  message, clock.stages, route.language, route.encoder)
        if log:
            # A query served through USE has no MiniLM vector: its log row keeps neither (analysts
            # re-run MiniLM-routed searches in SQL, docs/analysts.md).
            self._log(response, model.id, min_score=min_score,
                      text_model_id=state.text_model_id if text_vector is not None else None, text_vector=text_vector)
        return response

    def _bridged(self, ranker: Ranker, encoder: str, query: str, multilingual_vector: np.ndarray) -> np.ndarray:
        """A query in another language in the ranker's space: USE's vector through the bridge, blended
        with the ranker's own encoder reading the query's word-by-word English gloss (``ml.word_gloss``;
        a bridge saved without one serves the bridged vector alone)."""
        bridge = ranker.query_bridges[encoder]
        bridged = bridge.transform(multilingual_vector)
        if bridge.gloss is None:
            return bridged
        gloss = bridge.gloss.gloss(query, self.word_vectors.encode)
        return bridge.gloss.blend(bridged, ranker.transform_query(self.query_vectors.get(gloss)))

    def _rerank(self, ranker: Ranker, query_vector: np.ndarray, rows, cos_share: float | None = None) -> Ranking:
        """Every candidate scored and ordered, best first (paging and min_score cut it after)."""
        if not rows:
            return Ranking.in_shortlist_order(rows)
        scorer_scores = np.asarray(ranker.score(query_vector, cosines_of(rows), cos_share=cos_share),
                                   dtype=np.float64)
        matches = description_evidence(
            np.array([np.nan if r.description_match is None else r.description_match for r in rows], dtype=np.float64),
            np.array([np.nan if r.multilingual_description_match is None else r.multilingual_description_match
                      for r in rows], dtype=np.float64))
        final = blend(scorer_scores, matches, self.settings.description_weight)
        return Ranking(rows, final, np.argsort(-final, kind="stable"), scorer_scores, matches)

    def _log(self, response: SearchOutcome, model_id: int | None, *, min_score: float | None = None,
             text_model_id: int | None = None, text_vector: np.ndarray | None = None) -> None:
        """Queued, not written: the background writer inserts it within FLUSH_INTERVAL_S. The text
        vector is kept so analysts can re-run the search in SQL (docs/analysts.md)."""
        self.log_writer.add(SearchLogEntry(
            query=response.query[:2000], blocked=response.blocked, n_results=len(response.results),
            photo_ids=[r.photo_id for r in response.results], model_id=model_id, took_ms=response.took_ms,
            created_at=datetime.now(UTC).isoformat(), min_score=min_score,
            text_model_id=text_model_id, text_vector=text_vector,
        ))

    def close(self) -> None:
        """Write the queued search-log lines (gunicorn's worker_exit, the CLI's end)."""
        self.log_writer.close()
