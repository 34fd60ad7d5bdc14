"""Training from the database and publishing the ranker.

``train_and_publish`` gathers the training data (``service.training.training_data``), fits the
ranker (``ml.train``), and publishes it; the activation rule (``service.training.selection``)
decides whether it replaces the active one. Publishing = artifact folder + models row + the text
transform's rows + every photo's rows under the ranker + the expert-rated pairs' scores (one
transaction; ``service.store.ranker_rows.write_text_transform`` and ``project_photos``,
``service.training.pair_scores``), then
the ranker's HNSW index (service/store/hnsw.py), then, when activated, the switch (one transaction:
the active ranker off, the published one on).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine

from ml.ranker import Ranker
from service.config import Settings
from service.store import facet_indexes
from service.store.facets import settle_ranker_rows
from service.store.hnsw import build_index
from service.store.model_rows import activate_ranker, active_ranker, encoder_model_ids, insert_ranker
from service.store.ranker_rows import project_photos, write_text_transform
from service.training.pair_scores import score_expert_pairs
from service.training.selection import decide
from service.training.training_data import load_photo_features, training_data


def train_and_publish(engine: Engine, settings: Settings, encoders, *, run_cv: bool = True,
                      force: bool = False, progress: bool = True) -> dict:
    """Fit on the database's training data; publish; activate if better than the active model."""
    from ml.train import train

    data = training_data(engine, settings, encoders)
    kwargs = {} if run_cv else {"scorers": _quick_scorers()}
    result = train(data, progress=progress, run_cv=run_cv, **kwargs)
    if getattr(encoders, "multilingual", None) is not None:  # queries in other languages reach it through USE
        from service.training.query_bridge import fit_query_bridge

        bridge = fit_query_bridge(data, result.ranker, encoders.multilingual, settings)
        result.ranker.query_bridges[encoders.multilingual.name] = bridge
        result.metrics["query_bridge"] = bridge.summary()
    with engine.connect() as conn:
        current = active_ranker(conn, settings.encoder_key)
    decision = decide(result.metrics, current, force=force)
    ids = encoder_model_ids(engine, settings, text_encoder=encoders.text, image_encoder=encoders.image)
    photo_ids, features = load_photo_features(engine, ids["image"])
    model = publish(engine, settings, result.ranker, photo_ids, features, params={"scorer": result.scorer_name},
                    alternatives=result.alternatives, text_model_id=ids["text"],
                    metrics=result.metrics, activate=decision.activate, progress=progress)
    model.update(activated=decision.activate, cv_headline=decision.candidate_headline,
                 previous_headline=decision.previous_headline, previous_version=decision.previous_version)
    return model


def _quick_scorers() -> dict:
    """The reranker for `train --no-cv` (and the test fixtures): the joint cosine itself, calibrated.
    On a handful of photos (the 16-photo fixture) no reranker can be learned: fitted there, even a
    ridge on the three cosines ranked an uploaded cup of coffee below unrelated photos."""
    from ml.scorers import CosineScorer

    return {"joint_cosine": CosineScorer()}


def publish(engine: Engine, settings: Settings, ranker: Ranker, photo_ids: np.ndarray, features: np.ndarray,
            *, params: dict, metrics: dict, activate: bool = True, progress: bool = True,
            alternatives: dict | None = None, text_model_id: int | None = None) -> dict:
    version = f"{ranker.name}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    directory = ranker.save(settings.artifacts_dir / version)
    for name, (scorer, calibrator) in (alternatives or {}).items():  # the other families, for `evaluate`
        Ranker.save_scorer(directory / "alternatives" / name, scorer, calibrator)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    with engine.begin() as conn:
        model_id = insert_ranker(conn, name=ranker.name, version=version, encoder_key=settings.encoder_key,
                                 dims=ranker.dims, params=params, metrics=metrics, artifact_path=str(directory))
        write_text_transform(conn, model_id, ranker)
        project_photos(conn, model_id, ranker, photo_ids, features, progress=progress)
        if text_model_id is not None:  # the expert-rated pairs' scores, for analysts (needs the text vectors)
            score_expert_pairs(conn, model_id, ranker, text_model_id, settings.shortlist)
        settle_ranker_rows(conn, model_id)  # last: photos takes no writes from here to the commit
    # The HNSW index exists before the ranker can be searched, so no search ever scans a large
    # library exactly while it is built; built CONCURRENTLY, so uploads are not blocked meanwhile.
    index = build_index(engine, model_id, ranker.dims)
    if activate:  # a ranker that serves: a common filter value's indexes before its first search
        facet_indexes.refresh(engine, model_id, ranker.dims, min_share=settings.facet_index_min_share,
                              min_photos=settings.hnsw_min_photos)
        with engine.begin() as conn:
            activate_ranker(conn, model_id, settings.encoder_key)
    else:  # the serving ranker's, as its library now is (uploads may have made a place common)
        facet_indexes.refresh_active(engine, settings)
    return {"id": model_id, "version": version, "artifact_path": str(directory), "hnsw_index": index}
