"""Similar photos: nearest neighbours of a stored photo, or of an uploaded image, in the joint space.

An uploaded image is decoded, encoded and mapped like an upload but never stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from service.config import Settings
from service.photos.images import decode_image
from service.photos.uploads import check_size
from service.search.searcher import NoActiveModel
from service.search.shortlist import Space, nearest_order
from service.store import photo_files
from service.store.db import as_array
from service.store.model_rows import ModelRow, active_ranker, check_package_versions, load_ranker


@lru_cache(maxsize=4)
def similar_photos_sql(space: Space) -> TextClause:
    """Nearest photos by cosine ``<=>`` in the active ranker's joint space; the photo itself and
    exact copies (same sha256) are left out. By an exact scan, or by the ranker's HNSW index once
    the library is large enough (the shortlist's rule, ``Searcher.uses_index``): then an iterative
    scan, as the two exclusions are a filter, whose relaxed order the outer query sorts again."""
    nearest = f"""
        SELECT p.id AS photo_id, p.file_name, p.shows_child, 1 - (e.embedding <=> :vector) AS similarity
        FROM photo_embeddings e
        JOIN photos p ON p.id = e.photo_id
        WHERE e.model_id = :model_id
          AND p.id <> coalesce(CAST(:photo_id AS bigint), -1)
          AND p.sha256 <> :sha256
        ORDER BY {nearest_order("e.embedding", ":vector", space)}{"" if space.indexed else ", p.id"}
        LIMIT :limit"""
    if not space.indexed:
        return text(nearest)
    return text(f"WITH nearest AS MATERIALIZED ({nearest}\n) "
                "SELECT * FROM nearest ORDER BY similarity DESC, photo_id")


PHOTO_VECTOR_SQL = text("SELECT embedding FROM photo_embeddings WHERE photo_id = :photo_id AND model_id = :model_id")


class NoVector(LookupError):
    """The photo has no vector under the active model yet."""


@dataclass(frozen=True)
class Neighbour:
    photo_id: int
    file_name: str
    score: float  # cosine similarity in the joint space
    shows_child: bool  # the content rule's mark: the API withholds the image


@dataclass(frozen=True)
class Neighbours:
    photo_id: int | None  # the stored photo asked about; None for an uploaded image
    model_version: str
    results: list[Neighbour]


def _model(session: Session, settings: Settings) -> ModelRow:
    model = active_ranker(session.connection(), settings.encoder_key)
    if model is None:
        raise NoActiveModel(f"no trained model for encoders {settings.encoder_key}: run `withsense train`")
    check_package_versions(model.describe(), model.package_versions)
    return model


def _nearest(session: Session, model: ModelRow, vector: np.ndarray, *, photo_id: int | None, sha256: str,
             limit: int, settings: Settings, indexed_model_id: int | None) -> Neighbours:
    space = Space(model.dims, model.id == indexed_model_id)
    if space.indexed:  # our own integers: SET takes no bind parameters
        session.execute(text(f"SET LOCAL hnsw.ef_search = {max(int(settings.hnsw_ef_search), int(limit))}"))
        session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        # the index is partial (model_id = <model>): only a custom plan can prove it applies
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    rows = session.execute(similar_photos_sql(space), {
        "vector": np.asarray(vector, dtype=np.float32), "model_id": model.id, "photo_id": photo_id,
        "sha256": sha256, "limit": limit,
    }).all()
    return Neighbours(photo_id, model.version,
                      [Neighbour(r.photo_id, r.file_name, round(float(r.similarity), 6), r.shows_child) for r in rows])


def similar_to_photo(*, session: Session, settings: Settings, photo, limit: int,
                     indexed_model_id: int | None = None) -> Neighbours:
    """``indexed_model_id``: the ranker whose HNSW index serves (the searcher's ``index_model_id``)."""
    model = _model(session, settings)
    stored = session.execute(PHOTO_VECTOR_SQL, {"photo_id": photo.id, "model_id": model.id}).scalar()
    if stored is None:
        raise NoVector(f"photo {photo.id} has no vector under the active model {model.version} yet")
    return _nearest(session, model, as_array(stored), photo_id=photo.id, sha256=photo.sha256, limit=limit,
                    settings=settings, indexed_model_id=indexed_model_id)


def similar_to_image(*, session: Session, settings: Settings, image_encoder, data: bytes, limit: int,
                     indexed_model_id: int | None = None) -> Neighbours:
    """Raises ImageRejected for bytes that are not an acceptable image."""
    check_size(data, settings)
    decoded = decode_image(data, max_pixels=settings.max_pixels)
    model = _model(session, settings)
    features = image_encoder.encode([decoded.image])
    vector = load_ranker(model.artifact_path).photo_vectors(features)[0]
    return _nearest(session, model, vector, photo_id=None, sha256=photo_files.sha256_hex(data), limit=limit,
                    settings=settings, indexed_model_id=indexed_model_id)
