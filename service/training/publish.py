"""Training from the database: gather the training data, fit the ranker, publish it.

Training data = the train photos' features, the captions written for them (every source but the
held-out test queries), every rated pair (expert, crowd and live votes from the API), and, when the
flickr8k_extra folder is present, its extra captions and photos (training only, never stored as
photos). Publishing = artifact folder + models row + every photo's rows under the ranker (one
transaction, service.store.ranker_rows.project_photos), then the ranker's HNSW index, then, only when it beats the
active one, the switch (one transaction: the old ranker off, the new one on).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text

from ml.data import TrainingData, assert_no_test_leak, cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.features import cached_image_features
from ml.ranker import Ranker
from ml.versions import package_versions
from service.config import Settings
from service.policy import is_about_children
from service.store.db import as_array
from service.store.hnsw import build_index
from service.store.model_rows import active_ranker, encoder_model_ids
from service.store.ranker_rows import project_photos

TRAIN_PHOTOS_SQL = text(
    """
    SELECT p.id, p.file_name, p.sha256, pe.embedding AS features
    FROM photos p
    JOIN photo_embeddings pe ON pe.photo_id = p.id AND pe.model_id = :image_model_id
    WHERE p.split = 'train'
    ORDER BY p.id
    """
)

# Captions written for training photos, with their text vectors. Test queries never enter.
TRAINING_CAPTIONS_SQL = text(
    """
    SELECT d.photo_id, d.text, de.embedding AS text_vector
    FROM descriptions d
    JOIN photos p ON p.id = d.photo_id AND p.split = 'train'
    JOIN description_embeddings de ON de.description_id = d.id AND de.model_id = :text_model_id
    WHERE d.source <> 'test'
    ORDER BY d.id
    """
)

# Every rated pair of a training photo: the analysts' view already joins experts, crowd and live
# votes; live votes are pooled with the dataset's crowd votes into one share.
RATED_PAIRS_SQL = text(
    """
    SELECT r.photo_id, r.description AS text, de.embedding AS text_vector,
           r.expert_1, r.expert_2, r.expert_3,
           CASE WHEN coalesce(r.crowd_yes + r.crowd_no, 0) + r.live_yes + r.live_no > 0
                THEN (coalesce(r.crowd_yes, 0) + r.live_yes)::float8
                     / (coalesce(r.crowd_yes + r.crowd_no, 0) + r.live_yes + r.live_no)
                ELSE r.crowd_share END AS crowd_share
    FROM analyst_rated_pairs r
    JOIN description_embeddings de ON de.description_id = r.description_id AND de.model_id = :text_model_id
    WHERE r.split = 'train' AND r.description_source <> 'test'
    ORDER BY r.photo_id, r.description_id
    """
)

# Live votes about a free query (no stored description): pooled per (photo, query).
QUERY_VOTES_SQL = text(
    """
    SELECT v.photo_id, v.query AS text,
           avg(CASE WHEN v.match THEN 1.0 ELSE 0.0 END)::float8 AS crowd_share
    FROM crowd_votes v
    JOIN photos p ON p.id = v.photo_id AND p.split = 'train'
    WHERE v.description_id IS NULL
    GROUP BY v.photo_id, v.query
    ORDER BY v.photo_id, v.query
    """
)

TEST_PHOTOS_SQL = text("SELECT file_name, sha256 FROM photos WHERE split = 'test'")


@dataclass
class _Extra:
    """What an extra folder adds: captions by file name, and photos with their captions."""

    captions: dict[str, list[str]]
    photo_paths: list[Path]
    original_sha256: list[str]
    flickr_ids: list[str]  # Flickr photo ids of photos named otherwise (MS-COCO), for the leak check


def _read_extra(extra_dir: str, manifest_name: str = "images_manifest.tsv", exclude: frozenset = frozenset()) -> _Extra | None:
    """flickr8k_extra (manifest ``images_manifest.tsv``) or captioned_extra (``manifest.tsv``, with
    each COCO photo's Flickr URL). Photos named in ``exclude`` are left out (held out for a check)."""
    folder = Path(extra_dir) if extra_dir else None
    if folder is None or not (folder / "captions.tsv").is_file():
        return None
    captions: dict[str, list[str]] = {}
    with (folder / "captions.tsv").open(newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
            if len(row) == 3:
                captions.setdefault(row[0], []).append(row[2])
    paths = sorted(p for p in (folder / "images").glob("*.jpg") if p.name not in exclude) if (folder / "images").is_dir() else []
    shas, flickr_ids = [], []
    manifest = folder / manifest_name
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as f:
            by_name = {r["image"]: r for r in csv.DictReader(f, delimiter="\t")}
        shas = [by_name[p.name]["orig_sha256"] for p in paths if p.name in by_name]
        # e.g. http://farm9.staticflickr.com/8035/8024364858_9c41dc1666_z.jpg -> 8024364858
        flickr_ids = [by_name[p.name]["flickr_url"].rsplit("/", 1)[-1].split("_")[0]
                      for p in paths if by_name.get(p.name, {}).get("flickr_url")]
    return _Extra(captions=captions, photo_paths=paths, original_sha256=shas, flickr_ids=flickr_ids)


def held_out_coco(settings: Settings, n: int = 100) -> list[Path]:
    """The captioned_extra photos kept out of training for the out-of-domain check: ``n`` of them,
    the same every time (seeded), so the check can be repeated."""
    folder = Path(settings.captioned_extra_dir) if settings.captioned_extra_dir else None
    if folder is None or not (folder / "images").is_dir():
        return []
    paths = sorted((folder / "images").glob("*.jpg"))
    pick = np.random.default_rng(12).permutation(len(paths))[:n]
    return [paths[i] for i in sorted(pick)]


def training_data(engine: Engine, settings: Settings, encoders, *, progress: bool = True,
                  exclude: frozenset = frozenset()) -> TrainingData:
    """Everything the ranker learns from, as arrays (ml.data.TrainingData). Extra photos named in
    ``exclude`` stay out (the out-of-domain check holds some COCO photos out)."""
    ids = encoder_model_ids(engine, settings, text_encoder=encoders.text, image_encoder=encoders.image)
    with engine.connect() as conn:
        photos = conn.execute(TRAIN_PHOTOS_SQL, {"image_model_id": ids["image"]}).all()
        caption_rows = conn.execute(TRAINING_CAPTIONS_SQL, {"text_model_id": ids["text"]}).all()
        pair_rows = conn.execute(RATED_PAIRS_SQL, {"text_model_id": ids["text"]}).all()
        vote_rows = conn.execute(QUERY_VOTES_SQL).all()
        test_photos = conn.execute(TEST_PHOTOS_SQL).all()
    if not photos:
        raise RuntimeError("no training photos with image vectors: run `withsense ingest dataset` first")

    names = [p.file_name for p in photos]
    features = [np.stack([as_array(p.features) for p in photos])]
    index = {p.id: i for i, p in enumerate(photos)}
    captions = [(index[r.photo_id], r.text, as_array(r.text_vector)) for r in caption_rows]
    cache_dir = settings.data_dir / "cache"
    extra = _read_extra(settings.extra_dataset_dir)
    coco = _read_extra(settings.captioned_extra_dir, "manifest.tsv", exclude)
    extra_sha: list[str] = []
    extra_flickr_ids: list[str] = []
    if extra is not None and coco is not None:  # one set of extra photos: COCO's join Flickr8k's
        extra = _Extra({**extra.captions, **coco.captions}, extra.photo_paths + coco.photo_paths,
                       extra.original_sha256 + coco.original_sha256, extra.flickr_ids + coco.flickr_ids)
    extra = extra or coco
    if extra is not None and settings.encoder != "clip":
        # Extra captions of stored training photos, then the extra photos with theirs.
        by_name = {name: i for i, name in enumerate(names)}
        known = {(i, t) for i, t, _ in captions}
        more = [(by_name[n], t) for n, texts in extra.captions.items() if n in by_name for t in texts
                if (by_name[n], t) not in known]
        offset = len(names)
        extra_names = [p.name for p in extra.photo_paths]
        more += [(offset + j, t) for j, n in enumerate(extra_names) for t in extra.captions.get(n, [])]
        if extra.photo_paths:
            features.append(cached_image_features(extra.photo_paths, encoders.image, cache_dir))
            names += extra_names
        vectors = cached_text_vectors([t for _, t in more], encoders.text, cache_dir)
        captions += [(i, t, v) for (i, t), v in zip(more, vectors)]
        extra_sha = extra.original_sha256
        extra_flickr_ids = extra.flickr_ids

    # The held-out test photos never enter training: by name, Flickr id and original sha256.
    assert_no_test_leak(names, [t.file_name for t in test_photos],
                        train_sha256=[p.sha256 for p in photos] + extra_sha,
                        test_sha256=[t.sha256 for t in test_photos], train_flickr_ids=extra_flickr_ids)

    pairs = [(index[r.photo_id], r.text, as_array(r.text_vector), [r.expert_1, r.expert_2, r.expert_3], r.crowd_share)
             for r in pair_rows]
    if vote_rows:
        vote_vectors = encoders.text.encode([r.text for r in vote_rows])
        pairs += [(index[r.photo_id], r.text, v, [None] * 3, r.crowd_share) for r, v in zip(vote_rows, vote_vectors)]
    dim = encoders.text.dim
    label_vectors = (cached_text_vectors(imagenet_label_texts(), encoders.text, cache_dir)
                     if settings.encoder != "clip" else np.zeros((0, dim), np.float32))

    def stack(vectors) -> np.ndarray:
        return np.stack(vectors).astype(np.float32) if len(vectors) else np.zeros((0, dim), np.float32)

    return TrainingData(
        photo_keys=np.array(names, dtype=object),
        photo_features=np.concatenate(features).astype(np.float32),
        caption_photo=np.array([c[0] for c in captions], dtype=np.int64),
        caption_texts=np.array([c[1] for c in captions], dtype=object),
        caption_vectors=stack([c[2] for c in captions]),
        caption_blocked=np.array([is_about_children(c[1]) for c in captions], dtype=bool),
        pair_photo=np.array([p[0] for p in pairs], dtype=np.int64),
        pair_texts=np.array([p[1] for p in pairs], dtype=object),
        pair_vectors=stack([p[2] for p in pairs]),
        pair_expert=np.array([[np.nan if s is None else s for s in p[3]] for p in pairs], dtype=np.float32).reshape(-1, 3),
        pair_crowd=np.array([np.nan if p[4] is None else p[4] for p in pairs], dtype=np.float32),
        pair_blocked=np.array([is_about_children(p[1]) for p in pairs], dtype=bool),
        label_vectors=label_vectors,
        # The ~33,000 captions of Flickr8k photos absent here (text only) are not read: encoding them
        # costs minutes on 2 cores and the whitening's PCA is well determined by the ~12,000 texts
        # above (docs/model.md, "Text space").
        bridge_kind="identity" if settings.encoder == "clip" else "imagenet_labels",
    )


def _headline(metrics: dict) -> float | None:
    """The selection rule's number for a trained model: CV R@1 + R@5 of its chosen scorer."""
    chosen = (metrics or {}).get("cv", {}).get((metrics or {}).get("chosen"))
    return chosen["R@1"] + chosen["R@5"] if chosen else None


def train_and_publish(engine: Engine, settings: Settings, encoders, *, run_cv: bool = True,
                      force: bool = False, progress: bool = True) -> dict:
    """Fit on the database's training data; publish; activate if better than the active model."""
    from ml.train import train

    data = training_data(engine, settings, encoders, progress=progress)
    kwargs = {} if run_cv else {"scorers": _quick_scorers()}
    result = train(data, progress=progress, run_cv=run_cv, **kwargs)
    with engine.connect() as conn:
        current = active_ranker(conn, settings.encoder_key)
    new, old = _headline(result.metrics), _headline(current.metrics) if current else None
    activate = force or current is None or (new is not None and (old is None or new > old))
    photo_ids, features = load_photo_features(engine, encoder_model_ids(engine, settings, image_encoder=encoders.image)["image"])
    model = publish(engine, settings, result.ranker, photo_ids, features, params={"scorer": result.scorer_name},
                    alternatives=result.alternatives,
                    metrics=result.metrics, activate=activate, progress=progress)
    model.update(activated=activate, cv_headline=new, previous_headline=old,
                 previous_version=current.version if current else None)
    return model


def _quick_scorers() -> dict:
    """The reranker for `train --no-cv` (and the test fixtures): the joint cosine itself, calibrated.
    On a handful of photos (the 16-photo fixture) no reranker can be learned: fitted there, even a
    ridge on the three cosines ranked an uploaded cup of coffee below unrelated photos."""
    from ml.listwise import CosineScorer

    return {"joint_cosine": CosineScorer()}


PHOTO_FEATURES_SQL = text(
    "SELECT photo_id, embedding AS features FROM photo_embeddings WHERE model_id = :image_model_id ORDER BY photo_id"
)


def load_photo_features(engine: Engine, image_model_id: int) -> tuple[np.ndarray, np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(PHOTO_FEATURES_SQL, {"image_model_id": image_model_id}).all()
    ids = np.array([r.photo_id for r in rows], dtype=np.int64)
    feats = np.stack([as_array(r.features) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    return ids, feats


def publish(engine: Engine, settings: Settings, ranker: Ranker, photo_ids: np.ndarray, features: np.ndarray,
            *, params: dict, metrics: dict, activate: bool = True, progress: bool = True,
            alternatives: dict | None = None) -> dict:
    version = f"{ranker.name}-{datetime.now(timezone.utc):%Y%m%d%H%M%S%f}"
    directory = ranker.save(settings.artifacts_dir / version)
    for name, (scorer, calibrator) in (alternatives or {}).items():  # the other families, for `evaluate`
        Ranker.save_scorer(directory / "alternatives" / name, scorer, calibrator)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    with engine.begin() as conn:
        model_id = conn.execute(text(
            """INSERT INTO models (kind, name, version, encoder_key, dims, params, metrics, artifact_path,
                                  package_versions)
               VALUES ('ranker', :name, :version, :key, :dims, CAST(:params AS jsonb), CAST(:metrics AS jsonb), :path,
                       CAST(:packages AS jsonb))
               RETURNING id"""
        ), {"name": ranker.name, "version": version, "key": settings.encoder_key, "dims": ranker.dims,
            "params": json.dumps(params), "metrics": json.dumps(metrics, default=str), "path": str(directory),
            "packages": json.dumps(package_versions())}).scalar_one()
        project_photos(conn, model_id, ranker, photo_ids, features, progress=progress)
    # The HNSW index exists before the ranker can be searched, so no search ever scans a large
    # library exactly while it is built; built CONCURRENTLY, so uploads are not blocked meanwhile.
    index = build_index(engine, model_id, ranker.dims)
    if activate:
        with engine.begin() as conn:
            activate_model(conn, model_id, settings.encoder_key)
    return {"id": model_id, "version": version, "artifact_path": str(directory), "hnsw_index": index}


def activate_model(conn, model_id: int, encoder_key: str) -> None:
    conn.execute(text("UPDATE models SET active = false WHERE kind = 'ranker' AND encoder_key = :key AND active"),
                 {"key": encoder_key})
    conn.execute(text("UPDATE models SET active = true WHERE id = :id"), {"id": model_id})

