"""What a serving process searches with, cached: the active ranker (row + loaded artifact), the
text encoder's row, how many photos the ranker covers and whether its HNSW index is built.

Searches read the cached state; it is refreshed by one read-only query at most every
``WITHSENSE_MODEL_REFRESH_SECONDS``, so a model activated by `withsense train` (in another process)
is picked up within that many seconds, without a restart and without a query per search.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from sqlalchemy import Engine, text

from ml.ranker import Ranker
from service.store.hnsw import INDEX_PREFIX

# One round trip for everything a search needs to know about the models; read-only (the text
# encoder's row is registered by ingestion, never on the read path).
ACTIVE_STATE_SQL = text(
    """
    SELECT r.id, r.name, r.version, r.dims, r.artifact_path, r.metrics, r.package_versions,
           (SELECT e.id FROM models e
            WHERE e.kind = 'encoder' AND e.name = :text_encoder_name AND e.version = '1') AS text_model_id,
           (SELECT count(*) FROM photo_embeddings pe WHERE pe.model_id = r.id) AS n_photos,
           EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indexrelid = to_regclass(:index_prefix || r.id) AND i.indisvalid) AS has_index
    FROM (SELECT 1) AS one
    LEFT JOIN models r ON r.kind = 'ranker' AND r.active AND r.encoder_key = :encoder_key
    """
)


@dataclass(frozen=True)
class ActiveState:
    model: Optional[dict]  # the models row of the active ranker (None: nothing trained yet)
    ranker: Optional[Ranker]
    text_model_id: Optional[int]  # None until descriptions have been embedded
    n_photos: int
    has_index: bool


class ActiveModelCache:
    def __init__(self, engine: Engine, *, encoder_key: str, text_encoder_name: str,
                 load: Callable[[dict], Ranker], refresh_seconds: float) -> None:
        self.engine = engine
        self.encoder_key = encoder_key
        self.text_encoder_name = text_encoder_name
        self.load = load  # models row -> Ranker (checks the dimension against the text encoder)
        self.refresh_seconds = refresh_seconds
        self._state: Optional[ActiveState] = None
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
            row = conn.execute(ACTIVE_STATE_SQL, {
                "encoder_key": self.encoder_key, "text_encoder_name": f"text:{self.text_encoder_name}",
                "index_prefix": INDEX_PREFIX,
            }).mappings().one()
        if row["id"] is None:
            return ActiveState(None, None, row["text_model_id"], 0, False)
        model = {k: row[k] for k in ("id", "name", "version", "dims", "artifact_path", "metrics", "package_versions")}
        previous = self._state
        # Loaded again (and so checked again) when the active row changes, its package versions included.
        same = previous is not None and previous.model is not None and all(
            previous.model[k] == model[k] for k in ("id", "package_versions"))
        ranker = previous.ranker if same else self.load(model)
        return ActiveState(model, ranker, row["text_model_id"], int(row["n_photos"]), bool(row["has_index"]))
