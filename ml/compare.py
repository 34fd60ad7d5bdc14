"""Grouped cross-validation of scorers (grouped by photo: no photo is in both train and validation).

For each fold the joint mapper is fitted on the training photos' captions; the scorers are
trained on features built with *out-of-fold* joint vectors (an inner cross-fit, so the scorer
sees joint vectors as noisy as those of photos the mapper never saw, as at serving time), then
evaluated on the validation photos:

* rated pairs: RMSE and MAE against the target (``ml.targets``), Kendall tau-c against the expert
  mean (pairs with expert scores), ROC-AUC for "expert mean >= 3";
* retrieval: each validation photo's captions (not about children) are queries over galleries of
  ``gallery_size`` validation photos (the size of the test gallery): R@1, R@5, R@10, MRR.

Selection rule (:func:`pick_best`): the highest ``R@1 + R@5`` (mean over folds), ties within
0.005 broken by the higher tau-c.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from sklearn.base import clone

from ml import metrics as M
from ml.data import TrainingData
from ml.scorer import pair_features
from ml.targets import expert_mean, match_target, training_mask

COSINE = "joint_cosine"  # the reference "scorer": cosine in the joint space, no reranking


def fit_mapper(mapper, data: TrainingData, photo_mask: np.ndarray | None = None):
    """Fit a clone of ``mapper`` on the captions (not about children) of the photos in ``photo_mask``."""
    cm = ~data.caption_blocked
    if photo_mask is not None:
        cm &= photo_mask[data.caption_photo]
    m = clone(mapper)
    X = data.photo_features[data.caption_photo[cm]]
    Y = data.caption_vectors[cm]
    try:
        m.fit(X, Y, groups=data.caption_photo[cm])
    except TypeError:
        m.fit(X, Y)
    return m


def oof_joint(mapper, data: TrainingData, n_splits: int = 3, random_state: int = 0) -> np.ndarray:
    """Joint vectors of every photo from mappers fitted without that photo (cross-fitting)."""
    rng = np.random.default_rng(random_state)
    folds = np.array_split(rng.permutation(len(data.photo_keys)), n_splits)
    out = np.zeros((len(data.photo_keys), data.caption_vectors.shape[1]), np.float32)
    for f in folds:
        train = np.ones(len(data.photo_keys), bool)
        train[f] = False
        out[f] = fit_mapper(mapper, data, train).transform(data.photo_features[f])
    return out


def scorer_training_set(
    data: TrainingData, joint: np.ndarray, *, n_hard: int = 2, n_random: int = 2, random_state: int = 0,
    caption_target: float = 1.0, product: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for the scorer: rated pairs with their target, each caption with its own photo
    (target ``caption_target``) and with ``n_hard`` nearest + ``n_random`` random other photos
    (target 0). Nothing about children."""
    rng = np.random.default_rng(random_state)
    bridge = data.photo_bridges()
    target = match_target(data.pair_expert, data.pair_crowd)
    keep = training_mask(target, data.pair_blocked)
    Xs = [pair_features(data.pair_vectors[keep], joint[data.pair_photo[keep]], bridge[data.pair_photo[keep]], product=product)]
    ys = [target[keep]]
    cm = ~data.caption_blocked
    q, own = data.caption_vectors[cm], data.caption_photo[cm]
    Xs.append(pair_features(q, joint[own], bridge[own], product=product))
    ys.append(np.full(len(own), caption_target))
    n = len(data.photo_keys)
    if n > 1 and (n_hard or n_random):
        rated = set(zip(data.pair_photo.tolist(), map(str, data.pair_texts)))
        texts = data.caption_texts[cm]
        neg_q, neg_p = [], []
        for start in range(0, len(own), 2048):
            S = q[start : start + 2048] @ joint.T
            S[np.arange(len(S)), own[start : start + 2048]] = -np.inf
            hard = np.argsort(-S, axis=1)[:, :n_hard]
            rand = rng.integers(0, n, size=(len(S), n_random))
            for i, row in enumerate(np.concatenate([hard, rand], axis=1)):
                gi = start + i
                for p in row:
                    if p != own[gi] and (int(p), str(texts[gi])) not in rated:
                        neg_q.append(gi)
                        neg_p.append(p)
        neg_q, neg_p = np.array(neg_q, int), np.array(neg_p, int)
        Xs.append(pair_features(q[neg_q], joint[neg_p], bridge[neg_p], product=product))
        ys.append(np.zeros(len(neg_q)))
    return np.concatenate(Xs).astype(np.float32), np.concatenate(ys)


def _galleries(photo_index: np.ndarray, size: int, rng) -> list[np.ndarray]:
    p = rng.permutation(photo_index)
    if len(p) < size:
        return [p]
    return [p[i : i + size] for i in range(0, len(p) - size + 1, size)]


def evaluate_scorer(
    predict: Callable[[np.ndarray], np.ndarray] | None,
    data: TrainingData,
    joint: np.ndarray,
    photo_index: np.ndarray,
    *,
    gallery_size: int = 100,
    random_state: int = 0,
    product: bool = False,
) -> dict[str, float]:
    """Pair and retrieval metrics of a fitted scorer (``predict``; None = joint cosine) on the
    photos ``photo_index`` (their joint vectors in ``joint``, indexed like ``data``)."""
    bridge = data.photo_bridges()
    score = (lambda X: X[:, 0]) if predict is None else predict
    out: dict[str, float] = {}
    pm = np.isin(data.pair_photo, photo_index) & ~data.pair_blocked
    target = match_target(data.pair_expert, data.pair_crowd)
    pm &= ~np.isnan(target)
    if pm.any():
        pred = score(pair_features(data.pair_vectors[pm], joint[data.pair_photo[pm]], bridge[data.pair_photo[pm]], product=product))
        out["RMSE"] = M.rmse(np.clip(pred, 0, 1), target[pm])
        out["MAE"] = M.mae(np.clip(pred, 0, 1), target[pm])
        em = expert_mean(data.pair_expert[pm])
        has = ~np.isnan(em)
        out["tau_c"] = M.kendall_tau_c(pred[has], em[has]) if has.sum() > 1 else float("nan")
        out["ROC_AUC"] = M.roc_auc_relevant(pred[has], em[has]) if has.any() else float("nan")
    rng = np.random.default_rng(random_state)
    ranks = []
    for gal in _galleries(np.asarray(photo_index), gallery_size, rng):
        pos = np.full(len(data.photo_keys), -1)
        pos[gal] = np.arange(len(gal))
        qm = (pos[data.caption_photo] >= 0) & ~data.caption_blocked
        qs = np.flatnonzero(qm)
        if not len(qs):
            continue
        Q = np.repeat(data.caption_vectors[qs], len(gal), axis=0)
        P = np.tile(gal, len(qs))
        s = np.asarray(score(pair_features(Q, joint[P], bridge[P], product=product))).reshape(len(qs), len(gal))
        ranks.extend(M.ranks_of_correct(s, pos[data.caption_photo[qs]]).tolist())
    ranks = np.array(ranks)
    for k in (1, 5, 10):
        out[f"R@{k}"] = M.recall_at_k(ranks, k)
    out["MRR"] = M.mrr(ranks)
    return out


def grouped_cv(
    data: TrainingData,
    mapper,
    scorers: dict,
    *,
    n_splits: int = 5,
    inner_splits: int = 3,
    gallery_size: int = 100,
    random_state: int = 0,
    progress: bool = True,
    scorer_set_kw: dict | None = None,
) -> dict[str, dict[str, float]]:
    """Mean (over folds) validation metrics per scorer, plus :data:`COSINE` for the joint space alone.

    Folds: GroupKFold by photo over the photos that have rated pairs (the other photos, caption-only,
    always train)."""
    from sklearn.model_selection import GroupKFold

    rated = np.unique(data.pair_photo)
    if len(rated) < n_splits:
        rated = np.arange(len(data.photo_keys))
    rng = np.random.default_rng(random_state)
    shuffled = rng.permutation(rated)
    results: dict[str, list[dict]] = {COSINE: [], **{name: [] for name in scorers}}
    for fold, (_, val_pos) in enumerate(GroupKFold(n_splits=n_splits).split(shuffled, groups=shuffled)):
        t0 = time.time()
        val = shuffled[val_pos]
        train_mask = np.ones(len(data.photo_keys), bool)
        train_mask[val] = False
        train_idx = np.flatnonzero(train_mask)
        tdata = data.subset_photos(train_idx)
        joint = np.zeros((len(data.photo_keys), data.caption_vectors.shape[1]), np.float32)
        joint[val] = fit_mapper(mapper, tdata).transform(data.photo_features[val])
        tjoint = oof_joint(mapper, tdata, inner_splits, random_state + fold)
        X, y = scorer_training_set(tdata, tjoint, random_state=random_state + fold, **(scorer_set_kw or {}))
        product = bool((scorer_set_kw or {}).get("product", False))
        results[COSINE].append(evaluate_scorer(None, data, joint, val, gallery_size=gallery_size, random_state=fold))
        for name, est in scorers.items():
            fitted = clone(est).fit(X, y)
            results[name].append(evaluate_scorer(fitted.predict, data, joint, val, gallery_size=gallery_size,
                                                 random_state=fold, product=product))
        if progress:
            print(f"fold {fold + 1}/{n_splits} ({time.time() - t0:.0f}s): "
                  + "; ".join(f"{n} R@1 {r[-1]['R@1']:.3f} R@5 {r[-1]['R@5']:.3f} tau {r[-1].get('tau_c', float('nan')):.3f}"
                              for n, r in results.items()), flush=True)
    return {name: {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0]} for name, rs in results.items()}


def pick_best(cv: dict[str, dict[str, float]], exclude=(COSINE,)) -> str:
    """Highest R@1 + R@5; within 0.005 of it, the highest tau-c."""
    names = [n for n in cv if n not in exclude]
    key = {n: cv[n]["R@1"] + cv[n]["R@5"] for n in names}
    top = max(key.values())
    near = [n for n in names if key[n] >= top - 0.005]
    return max(near, key=lambda n: (cv[n].get("tau_c", -1.0), key[n]))
