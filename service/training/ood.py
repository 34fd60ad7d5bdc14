"""`withsense evaluate --ood`: photos unlike the dataset, found by plain descriptions of what they show.

About 100 MS-COCO photos of captioned_extra (``extra_folders.held_out_coco``, the same every run) are held
out of training. Two rankers are trained without them on the database's training data:

* ``today`` - the model before issue 12: Lite0 + Lite2 flip features only (the other image views
  and Lite1 sliced off), raw MiniLM space, kernel ridge + bridge mix, ranked by the joint cosine;
* ``new``   - the served recipe: all image views, whitened text space, listwise reranker of the
  active model's family, calibrated.

The held-out photos join the whole library (every photo in the database, 1,100 for the dataset)
without descriptions; each of their captions (not about children) is a query, answered as the
search path answers it: a shortlist of ``shortlist_size`` by cosine in the ranker's space, then
the ranker's score. Reported: R@1 / R@5 / R@10 among the whole library.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import Engine

from ml import metrics as M
from ml.features import cached_image_features
from ml.listwise import CosineScorer, PhotoEvidence
from service.config import Settings
from service.policy import is_about_children
from service.store.model_rows import encoder_model_ids


ROUND2_NETWORKS = ("efficientnet-lite0", "efficientnet-lite2")  # today's image features, flip-averaged


def _old_columns(image_encoder) -> np.ndarray | None:
    """Column indices of the features today's model reads: Lite0 and Lite2, flip-averaged (the views
    and networks added since are sliced off). None when the encoder has nothing else."""
    parts = getattr(image_encoder, "parts", None)
    if not parts:
        return None
    keep = [getattr(p, "flip", True) and p.name in ROUND2_NETWORKS for p in parts]
    if all(keep):
        return None
    cols, start = [], 0
    for p, kept in zip(parts, keep):
        if kept:
            cols.append(np.arange(start, start + p.dim))
        start += p.dim
    return np.concatenate(cols)


def _ranks(ranker, queries: np.ndarray, answers: np.ndarray, library: PhotoEvidence, shortlist: int) -> np.ndarray:
    ranks = []
    for q, answer in zip(queries, answers):
        tq = ranker.transform_query(q)
        order = np.argsort(-(library.joint @ tq), kind="stable")[:shortlist]
        if answer not in order:
            ranks.append(len(library.joint) + 1)  # not even shortlisted: counted as a miss at every k
            continue
        scores = ranker.raw_scores(tq, library.take(order))
        ranks.append(int(np.flatnonzero(order[np.argsort(-scores, kind="stable")] == answer)[0]) + 1)
    return np.asarray(ranks)


def ood_check(engine: Engine, settings: Settings, encoders, *, family: str = "listwise_mlp", n: int = 100,
              progress: bool = True) -> dict:
    from ml.listwise import candidate_scorers
    from ml.train import train
    from service.training.extra_folders import held_out_coco, read_extra_folder
    from service.training.training_data import load_photo_features, training_data

    held = held_out_coco(settings, n)
    if not held:
        return {"skipped": "no captioned_extra folder"}
    names = frozenset(p.name for p in held)
    data = training_data(engine, settings, encoders, exclude=names)
    assert not names & set(data.photo_keys.tolist()), "held-out photos reached training"
    cache_dir = settings.data_dir / "cache"
    held_features = cached_image_features(held, encoders.image, cache_dir)
    _, library_features = load_photo_features(engine, encoder_model_ids(engine, settings, image_encoder=encoders.image)["image"])
    features = np.concatenate([library_features, held_features])
    captions = read_extra_folder(settings.captioned_extra_dir, "manifest.tsv").captions
    texts = [(i, t) for i, p in enumerate(held) for t in captions.get(p.name, []) if not is_about_children(t)]
    queries = encoders.text.encode([t for _, t in texts])
    answers = np.array([len(library_features) + i for i, _ in texts])

    out = {"held_out_photos": len(held), "library_photos": int(len(features)), "queries": len(texts),
           "shortlist": settings.shortlist_size}
    old_cols = _old_columns(encoders.image)
    old_data = data if old_cols is None else data.with_features(data.photo_features[:, old_cols])
    old_features = features if old_cols is None else features[:, old_cols]
    recipes = {
        "today": (old_data, old_features, dict(whitening_power=None, scorers={"joint_cosine": CosineScorer()})),
        "new": (data, features, dict(scorers={family: candidate_scorers()[family]})),
    }
    for name, (d, f, kw) in recipes.items():
        ranker = train(d, run_cv=False, progress=False, **kw).ranker
        ranks = _ranks(ranker, queries, answers, ranker.photo_evidence(f), settings.shortlist_size)
        out[name] = {"R@1": round(M.recall_at_k(ranks, 1), 4), "R@5": round(M.recall_at_k(ranks, 5), 4),
                     "R@10": round(M.recall_at_k(ranks, 10), 4), "median_rank": float(np.median(ranks)),
                     "model": ranker.name}
        if progress:
            print(f"out-of-domain check, {name}: {out[name]}", flush=True)
    return out

