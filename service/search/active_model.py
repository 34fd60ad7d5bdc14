"""What a serving process searches with, cached: the active ranker (row + loaded artifact), the
text encoder's row, how many photos the ranker covers (up to the size at which its HNSW index
serves) and whether that index is built.

Searches read the cached state; it is refreshed (two read-only queries on one connection) at most every
``WITHSENSE_MODEL_REFRESH_SECONDS``, so a model activated by `withsense train` (in another process)
is picked up within that many seconds, without a restart and without a query per search.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from ml.ranker import Ranker
from service.store.hnsw import DESCRIPTION_INDEX_PREFIX, INDEX_PREFIX
from service.store.model_rows import ModelRow, active_ranker
from service.store.tables import OTHER_LANGUAGE

# What a search needs to know beyond the active ranker's row (``active_ranker``, the query every
# reader of that row shares); read-only (the text encoder's row is registered by ingestion, never
# on the read path). Both queries run on one connection, once per refresh.
SERVING_STATE_SQL = text(
    f"""
    WITH text_encoders AS (
        SELECT e.id, e.dims, e.name,
               EXISTS (SELECT 1 FROM pg_index i
                       WHERE i.indexrelid = to_regclass(:description_index_prefix || e.id) AND i.indisvalid) AS has_index
        FROM models e
        WHERE e.kind = 'encoder' AND e.name IN (:text_encoder_name, :multilingual_name) AND e.version = '1'
    )
    SELECT (SELECT id FROM text_encoders WHERE name = :text_encoder_name) AS text_model_id,
           (SELECT dims FROM text_encoders WHERE name = :text_encoder_name) AS text_dims,
           (SELECT has_index FROM text_encoders WHERE name = :text_encoder_name) AS text_has_index,
           (SELECT id FROM text_encoders WHERE name = :multilingual_name) AS multilingual_model_id,
           (SELECT dims FROM text_encoders WHERE name = :multilingual_name) AS multilingual_dims,
           (SELECT has_index FROM text_encoders WHERE name = :multilingual_name) AS multilingual_has_index,
           -- both counted up to the size at which an index serves them: all that decides the statement
           -- (a full count of a million photos' vectors took tens of ms, in a search's path)
           (SELECT count(*) FROM (SELECT 1 FROM photo_embeddings pe WHERE pe.model_id = CAST(:model_id AS integer)
                                  LIMIT :count_cap) c) AS n_photos,
           (SELECT count(*) FROM (SELECT 1 FROM descriptions WHERE {OTHER_LANGUAGE} AND source <> 'test'
                                  LIMIT :count_cap) o) AS other_language_descriptions,
           EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indexrelid = to_regclass(:index_prefix || CAST(:model_id AS integer))
                     AND i.indisvalid) AS has_index
    """
)


@dataclass(frozen=True)
class ActiveState:
    model: ModelRow | None  # the models row of the active ranker (None: nothing trained yet)
    ranker: Ranker | None
    text_model_id: int | None  # None until descriptions have been embedded
    n_photos: int  # the ranker's photos, counted up to the cache's count_cap (the index threshold)
    has_index: bool
    multilingual_model_id: int | None = None  # USE's vectors of the descriptions (None: not computed)
    text_dims: int | None = None
    multilingual_dims: int | None = None
    text_has_index: bool = False  # the text encoder's description index (service/store/hnsw.py) is built
    multilingual_has_index: bool = False
    # Descriptions in languages other than English (or not known), counted up to the index threshold:
    # what an English query matches in USE's space (service/search/shortlist.py).
    other_language_descriptions: int = 0


class ActiveModelCache:
    def __init__(self, engine: Engine, *, encoder_key: str, text_encoder_name: str,
                 load: Callable[[ModelRow], Ranker], refresh_seconds: float,
                 multilingual_name: str | None = None, count_cap: int = 2_000) -> None:
        self.engine = engine
        self.count_cap = count_cap  # photos and other-language descriptions are counted up to this
        self.multilingual_name = multilingual_name
        self.encoder_key = encoder_key
        self.text_encoder_name = text_encoder_name
        self.load = load  # models row -> Ranker (checks the dimension against the text encoder)
        self.refresh_seconds = refresh_seconds
        self._state: ActiveState | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> ActiveState:
        if self._state is not None and time.monotonic() - self._checked_at < self.refresh_seconds:
            return self._state
        with self._lock:  # one thread refreshes; the others wait for its answer instead of querying too
            if self._state is None or time.monotonic() - self._checked_at >= self.refresh_seconds:
                self._state = self._read()
                self._checked_at = time.monotonic()
            return self._state

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    def _read(self) -> ActiveState:
        with self.engine.connect() as conn:
            model = active_ranker(conn, self.encoder_key)
            row = conn.execute(SERVING_STATE_SQL, {
                "model_id": model.id if model else None, "text_encoder_name": f"text:{self.text_encoder_name}",
                "multilingual_name": f"text:{self.multilingual_name}" if self.multilingual_name else None,
                "index_prefix": INDEX_PREFIX, "description_index_prefix": DESCRIPTION_INDEX_PREFIX,
                "count_cap": self.count_cap,
            }).one()
        encoders = {"text_model_id": row.text_model_id, "multilingual_model_id": row.multilingual_model_id,
                    "text_dims": row.text_dims, "multilingual_dims": row.multilingual_dims,
                    "text_has_index": bool(row.text_has_index), "multilingual_has_index": bool(row.multilingual_has_index),
                    "other_language_descriptions": int(row.other_language_descriptions)}
        if model is None:
            return ActiveState(None, None, n_photos=0, has_index=False, **encoders)
        previous = self._state
        # Loaded again (and so checked again) when the active row changes, its package versions included.
        same = (previous is not None and previous.model is not None and previous.model.id == model.id
                and previous.model.package_versions == model.package_versions)
        ranker = previous.ranker if same else self.load(model)
        return ActiveState(model, ranker, n_photos=int(row.n_photos), has_index=bool(row.has_index), **encoders)
