"""Training from the database: read features and captions, fit the ranker, publish it.

Publishing = artifact folder on disk + a models row + the joint-space vector of every photo,
then activation in one transaction, so searches switch from the old ranker to the new one at once.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Engine, text
from tqdm import tqdm

from ml.joint import RidgeMapper
from ml.ranker import Ranker
from service.config import Settings
from service.db import as_array
from service.ingest import _write_vectors
from service.models_registry import encoder_model_ids

# Captions written for training photos, with their text vectors: the (photo, caption) pairs that
# teach the joint space. Test photos and test queries never enter.
TRAINING_CAPTIONS_SQL = text(
    """
    SELECT d.photo_id, de.embedding AS text_vector
    FROM descriptions d
    JOIN photos p ON p.id = d.photo_id
    JOIN description_embeddings de ON de.description_id = d.id AND de.model_id = :text_model_id
    WHERE p.split = 'train' AND d.source <> 'test'
    ORDER BY d.id
    """
)

PHOTO_FEATURES_SQL = text(
    """
    SELECT pe.photo_id, pe.embedding AS features
    FROM photo_embeddings pe
    WHERE pe.model_id = :image_model_id
    ORDER BY pe.photo_id
    """
)


def load_photo_features(engine: Engine, image_model_id: int) -> tuple[np.ndarray, np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(PHOTO_FEATURES_SQL, {"image_model_id": image_model_id}).all()
    ids = np.array([r.photo_id for r in rows], dtype=np.int64)
    feats = np.stack([as_array(r.features) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    return ids, feats


def training_pairs(engine: Engine, text_model_id: int, photo_ids: np.ndarray, features: np.ndarray):
    with engine.connect() as conn:
        rows = conn.execute(TRAINING_CAPTIONS_SQL, {"text_model_id": text_model_id}).all()
    index = {int(pid): i for i, pid in enumerate(photo_ids)}
    rows = [r for r in rows if int(r.photo_id) in index]
    if not rows:
        raise RuntimeError("no training captions with image vectors: run `withsense ingest dataset` first")
    X = features[[index[int(r.photo_id)] for r in rows]]
    Y = np.stack([as_array(r.text_vector) for r in rows])
    return X, Y


def train_ridge(engine: Engine, settings: Settings, encoders, *, progress: bool = True) -> dict:
    ids = encoder_model_ids(engine, settings, text_encoder=encoders.text, image_encoder=encoders.image)
    photo_ids, features = load_photo_features(engine, ids["image"])
    X, Y = training_pairs(engine, ids["text"], photo_ids, features)
    ranker = Ranker(mapper=RidgeMapper(alpha=10.0).fit(X, Y), dims=Y.shape[1], name="ridge")
    return publish(engine, settings, ranker, photo_ids, features, params={"alpha": 10.0, "pairs": len(X)},
                   metrics={}, progress=progress)


def publish(engine: Engine, settings: Settings, ranker: Ranker, photo_ids: np.ndarray, features: np.ndarray,
            *, params: dict, metrics: dict, activate: bool = True, progress: bool = True) -> dict:
    version = f"{ranker.name}-{datetime.now(timezone.utc):%Y%m%d%H%M%S%f}"
    directory = ranker.save(settings.artifacts_dir / version)
    with engine.begin() as conn:
        model_id = conn.execute(text(
            """INSERT INTO models (kind, name, version, encoder_key, dims, params, metrics, artifact_path)
               VALUES ('ranker', :name, :version, :key, :dims, CAST(:params AS jsonb), CAST(:metrics AS jsonb), :path)
               RETURNING id"""
        ), {"name": ranker.name, "version": version, "key": settings.encoder_key, "dims": ranker.dims,
            "params": json.dumps(params), "metrics": json.dumps(metrics), "path": str(directory)}).scalar_one()
        vectors = ranker.photo_vectors(features)
        for start in tqdm(range(0, len(photo_ids), 1000), desc="joint vectors", disable=not progress):
            _write_vectors(conn, "photo_embeddings", "photo_id", model_id,
                           photo_ids[start:start + 1000], vectors[start:start + 1000])
        if activate:
            activate_model(conn, model_id, settings.encoder_key)
    return {"id": model_id, "version": version, "artifact_path": str(directory)}


def activate_model(conn, model_id: int, encoder_key: str) -> None:
    conn.execute(text("UPDATE models SET active = false WHERE kind = 'ranker' AND encoder_key = :key AND active"),
                 {"key": encoder_key})
    conn.execute(text("UPDATE models SET active = true WHERE id = :id"), {"id": model_id})


def project_missing_photos(engine: Engine, settings: Settings, image_model_id: int) -> int:
    """Give photos added after training (uploads, new ingests) their vector under the active ranker."""
    from service.models_registry import active_ranker

    with engine.connect() as conn:
        model = active_ranker(conn, settings.encoder_key)
        if model is None:
            return 0
        rows = conn.execute(text(
            """SELECT f.photo_id, f.embedding FROM photo_embeddings f
               WHERE f.model_id = :image_model_id
                 AND NOT EXISTS (SELECT 1 FROM photo_embeddings j
                                 WHERE j.photo_id = f.photo_id AND j.model_id = :ranker_id)"""
        ), {"image_model_id": image_model_id, "ranker_id": model["id"]}).all()
    if not rows:
        return 0
    ranker = Ranker.load(model["artifact_path"])
    vectors = ranker.photo_vectors(np.stack([as_array(r.embedding) for r in rows]))
    with engine.begin() as conn:
        _write_vectors(conn, "photo_embeddings", "photo_id", model["id"], [r.photo_id for r in rows], vectors)
    return len(rows)
