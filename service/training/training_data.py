"""The database's training data as arrays (``ml.data.TrainingData``), and every photo's features.

Training data = the train photos' features, the captions written for them (every source but the
held-out test queries), every rated pair (expert, crowd and live votes from the API), and, when the
extra folders are present (``service.training.extra_folders``), their extra captions and photos
(training only, never stored as photos). The held-out test photos never enter.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import Engine, text

from ml import no_match
from ml.data import TrainingData, assert_no_test_leak, cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.features import cached_image_features
from service.config import Settings
from service.policy import is_about_children
from service.store.db import as_array
from service.store.model_rows import encoder_model_ids
from service.training.extra_folders import training_extras

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
    SELECT r.photo_id, d.text, de.embedding AS text_vector,
           r.expert_1, r.expert_2, r.expert_3,
           CASE WHEN coalesce(r.crowd_yes + r.crowd_no, 0) + r.live_yes + r.live_no > 0
                THEN (coalesce(r.crowd_yes, 0) + r.live_yes)::float8
                     / (coalesce(r.crowd_yes + r.crowd_no, 0) + r.live_yes + r.live_no)
                ELSE r.crowd_share END AS crowd_share,
           r.live_yes + r.live_no AS live_votes,
           r.crowd_share IS NOT NULL AS dataset_crowd
    FROM analyst_rated_pairs r
    JOIN descriptions d ON d.id = r.description_id  -- the text itself: the view shows the notice for flagged ones
    JOIN description_embeddings de ON de.description_id = r.description_id AND de.model_id = :text_model_id
    WHERE r.split = 'train' AND r.description_source <> 'test'
    ORDER BY r.photo_id, r.description_id
    """
)

# Live votes about a free query (no stored description): pooled per (photo, query).
QUERY_VOTES_SQL = text(
    """
    SELECT v.photo_id, v.query AS text,
           avg(CASE WHEN v.match THEN 1.0 ELSE 0.0 END)::float8 AS crowd_share,
           count(*) AS live_votes
    FROM crowd_votes v
    JOIN photos p ON p.id = v.photo_id AND p.split = 'train'
    WHERE v.description_id IS NULL
    GROUP BY v.photo_id, v.query
    ORDER BY v.photo_id, v.query
    """
)

TEST_PHOTOS_SQL = text("SELECT file_name, sha256 FROM photos WHERE split = 'test'")



def training_data(engine: Engine, settings: Settings, encoders, *, exclude: frozenset = frozenset()) -> TrainingData:
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
    extra = training_extras(settings, exclude)
    extra_sha: list[str] = []
    extra_flickr_ids: list[str] = []
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
        captions += [(i, t, v) for (i, t), v in zip(more, vectors, strict=True)]
        extra_sha = extra.original_sha256
        extra_flickr_ids = extra.flickr_ids

    # The held-out test photos never enter training: by name, Flickr id and original sha256.
    assert_no_test_leak(names, [t.file_name for t in test_photos],
                        train_sha256=[p.sha256 for p in photos] + extra_sha,
                        test_sha256=[t.sha256 for t in test_photos], train_flickr_ids=extra_flickr_ids)

    pairs = [(index[r.photo_id], r.text, as_array(r.text_vector), [r.expert_1, r.expert_2, r.expert_3], r.crowd_share,
              r.live_votes, r.dataset_crowd) for r in pair_rows]
    if vote_rows:
        vote_vectors = encoders.text.encode([r.text for r in vote_rows])
        pairs += [(index[r.photo_id], r.text, v, [None] * 3, r.crowd_share, r.live_votes, False)
                  for r, v in zip(vote_rows, vote_vectors, strict=True)]
    dim = encoders.text.dim
    label_vectors = (cached_text_vectors(imagenet_label_texts(), encoders.text, cache_dir)
                     if settings.encoder != "clip" else np.zeros((0, dim), np.float32))

    def stack(vectors) -> np.ndarray:
        return np.stack(vectors).astype(np.float32) if len(vectors) else np.zeros((0, dim), np.float32)

    # Queries nothing fits, for the score's calibration only (ml.no_match); never test queries.
    nomatch = no_match.training_texts()
    nomatch_vectors = cached_text_vectors(nomatch, encoders.text, cache_dir)

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
        pair_live=np.array([p[5] for p in pairs], dtype=np.int64),
        pair_dataset_crowd=np.array([bool(p[6]) for p in pairs], dtype=bool),
        label_vectors=label_vectors,
        nomatch_texts=np.array(nomatch, dtype=object),
        nomatch_vectors=np.asarray(nomatch_vectors, np.float32),
        # The ~33,000 captions of Flickr8k photos absent here (text only) are not read: encoding them
        # costs minutes on 2 cores and the whitening's PCA is well determined by the ~12,000 texts
        # above (docs/model.md, "Text space").
        bridge_kind="identity" if settings.encoder == "clip" else "imagenet_labels",
    )


PHOTO_FEATURES_SQL = text(
    "SELECT photo_id, embedding AS features FROM photo_embeddings WHERE model_id = :image_model_id ORDER BY photo_id"
)


def load_photo_features(engine: Engine, image_model_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Every stored photo's id and image features (the rows a published ranker projects)."""
    with engine.connect() as conn:
        rows = conn.execute(PHOTO_FEATURES_SQL, {"image_model_id": image_model_id}).all()
    ids = np.array([r.photo_id for r in rows], dtype=np.int64)
    feats = np.stack([as_array(r.features) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    return ids, feats
