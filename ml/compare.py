"""Grouped cross-validation of rerankers (grouped by photo: no photo is in both train and validation).

For each fold the joint mapper is fitted on the training photos' captions. The rerankers are
trained on shortlists built with *out-of-fold* evidence (an inner cross-fit, so they see joint
vectors as noisy as those of photos the mapper never saw, as at serving time), then evaluated on
the validation photos:

* retrieval: each validation photo's captions (not about children) are queries over galleries of
  ``gallery_size`` validation photos (the size of the test gallery): R@1, R@5, R@10, MRR;
* rated pairs: each rated (text, validation photo) pair is scored inside the same galleries;
  Kendall tau-c against the expert mean, ROC-AUC for "expert mean >= 3". Their raw scores are
  returned too (``oof``): the calibration is fitted on them (``ml.calibration``).

Selection rule (:func:`pick_best`): the highest ``R@1 + R@5`` (mean over folds); candidates within
0.005 of the best are tied and the higher held-out tau-c of the calibrated score wins.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from ml import metrics as M
from ml.data import TrainingData
from ml.listwise import FEATURES, PhotoEvidence, list_features, photo_evidence, specificity
from ml.no_match import sentences
from ml.scorers import CosineScorer
from ml.targets import expert_mean, match_target, training_mask

COSINE = "joint_cosine"  # the reference: cosine in the joint space, no reranking
SELECTION_RULE = ("highest CV R@1 + R@5; within 0.005 of the best, the highest held-out tau-c of the calibrated "
                  "score (the score a search returns)")
# The query-level signals kept with every out-of-fold score (ml.listwise.query_signals).
ALL_SIGNALS = ("specificity", "best_joint")
# A rated pair the joint mapper learns from as if it were a caption: at least half "fits".
RATED_FITS = 0.5


def fit_mapper(mapper, data: TrainingData, photo_mask: np.ndarray | None = None, ratings: bool = True):
    """Fit a clone of ``mapper`` on the captions (not about children) of the photos in
    ``photo_mask`` and, with ``ratings``, their rated pairs that fit (:func:`mapper_pairs`)."""
    photos, vectors, weights = mapper_pairs(data, photo_mask, ratings)
    return clone(mapper).fit(data.photo_features[photos], vectors, sample_weight=weights)


def oof_evidence(mapper, data: TrainingData, n_splits: int = 3, random_state: int = 0,
                 ratings: bool = True) -> PhotoEvidence:
    """Evidence of every photo from mappers fitted without that photo (cross-fitting)."""
    rng = np.random.default_rng(random_state)
    folds = np.array_split(rng.permutation(len(data.photo_keys)), n_splits)
    parts = {}
    for f in folds:
        train = np.ones(len(data.photo_keys), bool)
        train[f] = False
        m = fit_mapper(mapper, data, train, ratings)
        parts[tuple(f)] = photo_evidence(m, data.photo_features[f], data.label_vectors, data.bridge_kind)
    order = np.concatenate([np.array(k) for k in parts])
    inv = np.argsort(order)
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts.values()])[inv]  # noqa: E731
    return PhotoEvidence(cat("joint"), cat("bridge"), cat("label_ids"), cat("label_probs"), cat("mapper_norm"))


def reference_captions(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """The captions a query's specificity is measured against (not about children), with their photo."""
    cm = ~data.caption_blocked
    return data.caption_vectors[cm], data.caption_photo[cm]


@dataclass
class TrainingLists:
    """Shortlists for the reranker's loss: features ``X`` ``(n, list_size, n_features)``, graded
    targets ``target`` ``(n, list_size)`` in [0, 1], and which lists come from rated pairs
    (``rated``; the others are caption lists with a one-hot target)."""

    X: np.ndarray
    target: np.ndarray
    rated: np.ndarray

    def __len__(self) -> int:
        return len(self.X)


def training_lists(data: TrainingData, evidence: PhotoEvidence, *, list_size: int = 100, random_state: int = 0,
                   max_queries: int | None = None, ratings: bool = True) -> TrainingLists:
    """Shortlists for the listwise loss: each caption (not about children) with its own photo
    (target 1) and ``list_size - 1`` other training photos (target 0), at a random position; with
    ``ratings``, also one list per rated text (:func:`rated_lists`)."""
    rng = np.random.default_rng(random_state)
    qs = np.flatnonzero(~data.caption_blocked)
    if max_queries is not None and len(qs) > max_queries:
        qs = np.sort(rng.choice(qs, max_queries, replace=False))
    n = len(data.photo_keys)
    size = min(list_size, n)
    own = data.caption_photo[qs]
    cand = np.empty((len(qs), size), np.int64)
    for i, p in enumerate(own):
        others = rng.choice(n - 1, size - 1, replace=False)
        others[others >= p] += 1
        cand[i] = np.concatenate([[p], others])
    pos = rng.integers(0, size, len(qs))
    cand[np.arange(len(qs)), 0], cand[np.arange(len(qs)), pos] = cand[np.arange(len(qs)), pos], own
    ref, ref_photo = reference_captions(data)
    spec = specificity(data.caption_vectors[qs], ref, exclude=own, caption_group=ref_photo)
    X = list_features(data.caption_vectors[qs], cand, evidence, data.label_vectors, spec)
    target = np.zeros(cand.shape, np.float32)
    target[np.arange(len(qs)), pos] = 1.0
    lists = TrainingLists(X, target, np.zeros(len(qs), bool))
    if not ratings:
        return lists
    rated = rated_lists(data, evidence, list_size=size, rng=rng)
    return TrainingLists(np.concatenate([lists.X, rated.X]), np.concatenate([lists.target, rated.target]),
                         np.concatenate([lists.rated, rated.rated]))


def pair_targets(data: TrainingData) -> np.ndarray:
    """Each rated pair's graded target (``ml.targets.match_target``: expert mean and crowd share,
    live votes pooled into the share); NaN for pairs not to train on (no rating, about children)."""
    t = match_target(data.pair_expert, data.pair_crowd)
    return np.where(training_mask(t, data.pair_blocked), t, np.nan)


def rated_lists(data: TrainingData, evidence: PhotoEvidence, *, list_size: int, rng) -> TrainingLists:
    """One list per rated text: the photos rated for it with their graded targets, the photo it is
    the caption of (target 1 unless rated), and other training photos (target 0) up to
    ``list_size``. Texts whose every target is 0 are left out: a list with nothing that fits says
    nothing a softmax can learn."""
    t = pair_targets(data)
    source = pair_sources(data)
    ok = ~np.isnan(t)
    texts, inverse = np.unique(data.pair_texts[ok], return_inverse=True)
    rows_of = np.flatnonzero(ok)
    n = len(data.photo_keys)
    size = min(list_size, n)
    queries, cands, targets, owns = [], [], [], []
    for k in range(len(texts)):
        rows = rows_of[inverse == k]
        graded = {}
        for r in rows[np.argsort(-t[rows], kind="stable")][:size]:  # a text rated on more photos: the best
            graded.setdefault(int(data.pair_photo[r]), float(t[r]))
        own = int(source[rows[0]])
        if own >= 0 and own not in graded:
            graded[own] = 1.0
        if max(graded.values()) <= 0 or len(graded) > size:
            continue
        rest = np.setdiff1d(np.arange(n), np.fromiter(graded, np.int64))
        fill = rng.choice(rest, size - len(graded), replace=False)
        cand = np.concatenate([np.fromiter(graded, np.int64), fill])
        tg = np.concatenate([np.fromiter(graded.values(), np.float32), np.zeros(len(fill), np.float32)])
        order = rng.permutation(size)
        queries.append(rows[0])
        cands.append(cand[order])
        targets.append(tg[order])
        owns.append(own)
    if not queries:
        return TrainingLists(np.zeros((0, size, len(FEATURES)), np.float32), np.zeros((0, size), np.float32),
                         np.zeros(0, bool))
    q = data.pair_vectors[np.array(queries)]
    ref, ref_photo = reference_captions(data)
    spec = specificity(q, ref, exclude=np.array(owns), caption_group=ref_photo)
    X = list_features(q, np.stack(cands), evidence, data.label_vectors, spec)
    return TrainingLists(X, np.stack(targets), np.ones(len(queries), bool))


def mapper_pairs(data: TrainingData, photo_mask: np.ndarray | None = None,
                 ratings: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the joint mapper learns from: (photo index, text vector, weight) rows. Every caption
    (not about children) with weight 1; with ``ratings``, every rated pair that fits (target >= 0.5)
    and is not already a caption of its photo, weighted by its target: a photo people said fits a
    text moves towards that text in the joint space, for that text and its paraphrases."""
    cm = ~data.caption_blocked
    if photo_mask is not None:
        cm &= photo_mask[data.caption_photo]
    photos, vectors, weights = [data.caption_photo[cm]], [data.caption_vectors[cm]], [np.ones(int(cm.sum()))]
    if ratings and len(data.pair_photo):
        t = pair_targets(data)
        pm = np.nan_to_num(t, nan=0.0) >= RATED_FITS
        pm &= pair_sources(data) != data.pair_photo
        if photo_mask is not None:
            pm &= photo_mask[data.pair_photo]
        photos.append(data.pair_photo[pm])
        vectors.append(data.pair_vectors[pm])
        weights.append(t[pm])
    return np.concatenate(photos), np.concatenate(vectors), np.concatenate(weights)


def _galleries(photo_index: np.ndarray, size: int, rng) -> list[np.ndarray]:
    p = rng.permutation(photo_index)
    if len(p) < size:
        return [p]
    return [p[i : i + size] for i in range(0, len(p) - size + 1, size)]


def _padded(lists: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    """Rows of several galleries' ``(n_queries, gallery)`` arrays in one array, a short gallery's
    missing candidates at ``fill`` (-inf for scores: never ranked; 0 for the cosines added to them)."""
    rows = [np.pad(np.asarray(x, np.float64), ((0, 0), (0, width - x.shape[1])), constant_values=fill)
            for x in lists]
    return np.concatenate(rows) if rows else np.zeros((0, width))


def _pooled(parts: list[np.ndarray], key: str) -> np.ndarray:
    """One array of the folds' out-of-fold ``key``: their galleries' lists padded to the widest."""
    if key in _LIST_FILL:
        return _padded(parts, max(p.shape[1] for p in parts), _LIST_FILL[key])
    return np.concatenate(parts)


_LIST_FILL = {"list_score": -np.inf, "list_cos": 0.0}


def pair_sources(data: TrainingData) -> np.ndarray:
    """For each rated pair, the photo whose caption its text is (-1 if none): its specificity must
    not find the text itself among the training captions, as a query's would not."""
    source = {}
    for t, p in zip(data.caption_texts, data.caption_photo, strict=True):
        source.setdefault(t, int(p))
    return np.array([source.get(t, -1) for t in data.pair_texts], dtype=np.int64)


def no_match_queries(data: TrainingData, train_photos: np.ndarray, *, n_captions: int = 0,
                     caption_pool: np.ndarray | None = None, random_state: int = 0) -> dict[str, np.ndarray]:
    """The no-match queries of one fold: the training negatives (``data.nomatch_vectors``:
    sentences that describe no scene, random strings) and ``n_captions`` captions of photos outside
    the validation gallery (one per photo; ``own`` is their photo, skipped by their specificity).
    Captions are off by default: in Flickr8k galleries the best photo for another photo's caption
    often fits, the experts rated almost none of those pairs (0.2 %), and as negatives they sank
    the rated pairs' calibration (ECE 0.011 -> 0.105; docs/model.md). ``caption_pool`` (a mask over
    captions, ``ml.no_match.scene_caption_pool``) restricts them to scenes the gallery lacks."""
    rng = np.random.default_rng(random_state)
    eligible = np.isin(data.caption_photo, train_photos) & ~data.caption_blocked
    cap = np.flatnonzero(eligible if caption_pool is None else eligible & caption_pool)
    cap = cap[rng.permutation(len(cap))]
    _, first = np.unique(data.caption_photo[cap], return_index=True)
    cap = cap[rng.permutation(first)[:n_captions]]
    n_neg = len(data.nomatch_vectors)
    written = set(sentences())
    kinds = np.array(["sentence" if t in written else "random" for t in data.nomatch_texts] + ["caption"] * len(cap),
                     dtype=object)
    vectors = np.concatenate([data.nomatch_vectors.reshape(n_neg, -1), data.caption_vectors[cap]]) \
        if n_neg else data.caption_vectors[cap]
    return {"vectors": vectors, "own": np.concatenate([np.full(n_neg, -1), data.caption_photo[cap]]),
            "texts": np.concatenate([np.asarray(data.nomatch_texts, object), data.caption_texts[cap]]),
            "kind": kinds}


def _rated_fits(data: TrainingData) -> dict:
    """(text, photo) -> expert mean >= 3, for the rated pairs with expert scores."""
    from ml.calibration import FITS

    em = expert_mean(data.pair_expert)
    return {(t, int(p)): bool(e >= FITS) for t, p, e in zip(data.pair_texts, data.pair_photo, em, strict=True)
            if not np.isnan(e)}


def evaluate_reranker(scorer, data: TrainingData, evidence: PhotoEvidence, photo_index: np.ndarray,
                      reference: tuple[np.ndarray, np.ndarray], *, gallery_size: int = 100,
                      random_state: int = 0, negatives: dict | None = None,
                      top_k: int = 1) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Retrieval and rated-pair metrics of a fitted scorer on the photos ``photo_index`` (their
    evidence indexed like ``data``, ``reference`` the training captions and their photo in
    ``data``'s indexing); also the rated pairs' raw scores and query-level signals (``oof``) for
    calibration, the same for the top-1 candidate of each caption query ranked right (``hit_*``)
    and for every caption query's own photo wherever it ranks (``own_*``),
    and with ``negatives`` (:func:`no_match_queries`) the ``top_k`` candidates of each no-match
    query, labelled by the experts where the pair is rated, else 0 (``neg_*``; the best candidate
    only by default: with the top 3 the rated pairs' ECE was worse, docs/model.md)."""
    from ml.listwise import query_signals

    rng = np.random.default_rng(random_state)
    ranks, pair_rows, pair_scores, pair_sig, hit_scores, hit_sig = [], [], [], [], [], []
    own_scores, own_sig, own_photo, hit_caption, own_caption = [], [], [], [], []
    pair_cos, own_cos, list_score, list_cos, list_right = [], [], [], [], []
    neg = {k: [] for k in ("score", "cos", "signals", "label", "query", "kind", "top1")}
    cos_col = FEATURES.index("cos_joint")
    pair_ok = ~data.pair_blocked
    sources = pair_sources(data)
    fits = _rated_fits(data) if negatives is not None else {}
    for gal in _galleries(np.asarray(photo_index), gallery_size, rng):
        pos = np.full(len(data.photo_keys), -1)
        pos[gal] = np.arange(len(gal))
        qs = np.flatnonzero((pos[data.caption_photo] >= 0) & ~data.caption_blocked)
        if len(qs):
            spec = specificity(data.caption_vectors[qs], reference[0])
            X = list_features(data.caption_vectors[qs], np.tile(gal, (len(qs), 1)), evidence, data.label_vectors, spec)
            S = scorer.predict(X)
            r = M.ranks_of_correct(S, pos[data.caption_photo[qs]])
            ranks.extend(r.tolist())
            sig = query_signals(X, FEATURES, ALL_SIGNALS)
            C = X[..., cos_col]
            right = pos[data.caption_photo[qs]]
            hit_scores.append(S.max(axis=1)[r == 1])
            hit_sig.append(sig[r == 1])
            hit_caption.append(qs[r == 1])
            list_score.append(S)
            list_cos.append(C)
            list_right.append(right)
            own_scores.append(S[np.arange(len(qs)), right])
            own_cos.append(C[np.arange(len(qs)), right])
            own_sig.append(sig)
            own_photo.append(data.caption_photo[qs])
            own_caption.append(qs)
        ps = np.flatnonzero((pos[data.pair_photo] >= 0) & pair_ok)
        if len(ps):
            spec = specificity(data.pair_vectors[ps], reference[0], exclude=sources[ps], caption_group=reference[1])
            X = list_features(data.pair_vectors[ps], np.tile(gal, (len(ps), 1)), evidence, data.label_vectors, spec)
            pair_scores.append(scorer.predict(X)[np.arange(len(ps)), pos[data.pair_photo[ps]]])
            pair_cos.append(X[np.arange(len(ps)), pos[data.pair_photo[ps]], cos_col])
            pair_sig.append(query_signals(X, FEATURES, ALL_SIGNALS))
            pair_rows.append(ps)
        if negatives is not None and len(negatives["vectors"]):
            nv = negatives["vectors"]
            spec = specificity(nv, reference[0], exclude=negatives["own"], caption_group=reference[1])
            X = list_features(nv, np.tile(gal, (len(nv), 1)), evidence, data.label_vectors, spec)
            S = scorer.predict(X)
            k = min(top_k, len(gal))
            top = np.argsort(-S, axis=1, kind="stable")[:, :k]
            sig = query_signals(X, FEATURES, ALL_SIGNALS)
            neg["score"].append(np.take_along_axis(S, top, axis=1).ravel())
            neg["cos"].append(np.take_along_axis(X[..., cos_col], top, axis=1).ravel())
            neg["signals"].append(np.repeat(sig, k, axis=0))
            neg["label"].append(np.array([fits.get((negatives["texts"][i], int(gal[top[i, j]])), False)
                                          for i in range(len(nv)) for j in range(k)]))
            neg["query"].append(np.repeat(np.arange(len(nv)), k))
            neg["kind"].append(np.repeat(negatives["kind"], k))
            neg["top1"].append(np.tile(np.arange(k) == 0, len(nv)))
    out: dict[str, float] = {}
    ranks = np.array(ranks)
    for k in (1, 5, 10):
        out[f"R@{k}"] = M.recall_at_k(ranks, k)
    out["MRR"] = M.mrr(ranks)
    rows = np.concatenate(pair_rows) if pair_rows else np.zeros(0, int)
    scores = np.concatenate(pair_scores) if pair_scores else np.zeros(0)
    em = expert_mean(data.pair_expert[rows]) if len(rows) else np.zeros(0)
    has = ~np.isnan(em)
    out["tau_c"] = M.kendall_tau_c(scores[has], em[has]) if has.sum() > 1 else float("nan")
    out["ROC_AUC"] = M.roc_auc_relevant(scores[has], em[has]) if has.any() else float("nan")
    n_sig = len(ALL_SIGNALS)
    cat = lambda parts, shape=(0,): np.concatenate(parts) if parts else np.zeros(shape)  # noqa: E731
    n_gal = max((x.shape[1] for x in list_score), default=0)
    oof = {"pair_index": rows, "score": scores, "cos": cat(pair_cos), "signals": cat(pair_sig, (0, n_sig)),
           "hit_score": cat(hit_scores), "hit_signals": cat(hit_sig, (0, n_sig)),
           "own_score": cat(own_scores), "own_cos": cat(own_cos), "own_signals": cat(own_sig, (0, n_sig)),
           "own_photo": cat(own_photo),
           "list_score": _padded(list_score, n_gal, _LIST_FILL["list_score"]),
           "list_cos": _padded(list_cos, n_gal, _LIST_FILL["list_cos"]),
           "list_right": cat(list_right).astype(np.int64),
           "hit_caption": cat(hit_caption).astype(np.int64), "own_caption": cat(own_caption).astype(np.int64)}
    if negatives is not None:
        oof.update({f"neg_{k}": cat(v, (0, n_sig) if k == "signals" else (0,)) for k, v in neg.items()})
    return out, oof


def grouped_cv(
    data: TrainingData,
    mapper,
    scorers: dict,
    *,
    n_splits: int = 5,
    inner_splits: int = 3,
    gallery_size: int = 100,
    list_size: int = 100,
    random_state: int = 0,
    progress: bool = True,
    with_negatives: bool = True,
    caption_negatives: int = 0,
    caption_pool: np.ndarray | None = None,
    mapper_ratings: bool = True,
    models: dict | None = None,
    query_variants: dict[str, TrainingData] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """Mean (over folds) validation metrics per scorer, plus :data:`COSINE` for the joint space
    alone; and per scorer the out-of-fold raw scores of the rated pairs, of right top-1 caption
    queries and (``with_negatives``) of no-match queries' top candidates (:func:`evaluate_reranker`).

    Folds: GroupKFold by photo over the photos that have rated pairs (the other photos, caption-only,
    always train). The scorers train on caption lists and the training photos' rated lists
    (:func:`training_lists`; each scorer's ``rated_weight`` says how much those count);
    ``mapper_ratings``: the joint mapper also learns from rated pairs that fit (:func:`mapper_pairs`).
    ``models``: if given, filled with each scorer's fold models as served (``serving()``, in fold
    order): the networks whose out-of-fold scores the calibration is fitted on.

    ``query_variants``: other encodings of the held-out queries (``data`` with other caption, pair
    and no-match vectors: another query encoder), each scorer fitted on ``data`` evaluated on each
    too, as ``<scorer>@<variant>``: what serving a query encoder other than the training one gives."""
    from sklearn.model_selection import GroupKFold

    rated = np.unique(data.pair_photo)
    if len(rated) < n_splits:
        rated = np.arange(len(data.photo_keys))
    shuffled = np.random.default_rng(random_state).permutation(rated)
    scorers = {COSINE: CosineScorer(), **scorers}
    views = {"": data, **(query_variants or {})}  # the queries each fitted scorer is evaluated on
    keys = [f"{name}@{view}" if view else name for name in scorers for view in views]
    results: dict[str, list[dict]] = {key: [] for key in keys}
    oof: dict[str, list[dict]] = {key: [] for key in keys}
    inner: dict[str, list[dict]] = {}  # hyper-parameters an inner CV chose, per fold
    for fold, (_, val_pos) in enumerate(GroupKFold(n_splits=n_splits).split(shuffled, groups=shuffled)):
        t0 = time.time()
        val = shuffled[val_pos]
        train_mask = np.ones(len(data.photo_keys), bool)
        train_mask[val] = False
        train_idx = np.flatnonzero(train_mask)
        tdata = data.subset_photos(train_idx)
        m = fit_mapper(mapper, tdata, ratings=mapper_ratings)
        evidence = photo_evidence(m, data.photo_features, data.label_vectors, data.bridge_kind)
        trained = any(not isinstance(est, CosineScorer) for est in scorers.values())
        lists = training_lists(tdata, oof_evidence(mapper, tdata, inner_splits, random_state + fold, mapper_ratings),
                               list_size=list_size, random_state=random_state + fold) if trained else None
        chosen_params: dict[str, list] = {}
        ref_vectors, ref_photo = reference_captions(tdata)
        reference = (ref_vectors, train_idx[ref_photo])  # the captions' photos in data's indexing
        negatives = {view: no_match_queries(d, train_idx, n_captions=caption_negatives, caption_pool=caption_pool,
                                            random_state=random_state + fold) if with_negatives else None
                     for view, d in views.items()}
        for name, est in scorers.items():
            fitted = clone(est).fit(lists.X, lists.target, rated=lists.rated) if lists is not None else est
            if hasattr(fitted, "best_params_"):
                chosen_params[name] = fitted.best_params_
            for view, d in views.items():
                key, neg = f"{name}@{view}" if view else name, negatives[view]
                r, o = evaluate_reranker(fitted, d, evidence, val, reference, gallery_size=gallery_size,
                                         random_state=fold, negatives=neg)
                if neg is not None:
                    o["neg_query"] = o["neg_query"] + fold * len(neg["vectors"])  # one group per (fold, query)
                results[key].append(r)
                oof[key].append(o)
            if models is not None and hasattr(fitted, "serving"):
                models.setdefault(name, []).append(fitted.serving())
        for name, params in chosen_params.items():
            inner.setdefault(name, []).append(params)
        if progress:
            print(f"fold {fold + 1}/{n_splits} ({time.time() - t0:.0f}s): "
                  + "; ".join(f"{n} R@1 {r[-1]['R@1']:.3f} R@5 {r[-1]['R@5']:.3f} tau {r[-1]['tau_c']:.3f}"
                              for n, r in results.items()), flush=True)
    means = {name: {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0]} for name, rs in results.items()}
    for name, rs in results.items():
        means[name]["R@1_per_fold"] = [round(r["R@1"], 4) for r in rs]
        if name in inner:
            means[name]["inner_cv_per_fold"] = inner[name]
    pooled = {name: {k: _pooled([o[k] for o in os], k) for k in os[0]} for name, os in oof.items()}
    return means, pooled


def pick_best(cv: dict[str, dict[str, float]], exclude=(COSINE,)) -> str:
    """Highest R@1 + R@5; within 0.005 of it, the highest ``tau_c_served``: the held-out tau-c of the
    calibrated score a search returns (``ml.train.served_view``). A family whose raw score ranks
    well within each shortlist can still give a calibrated score that orders pairs across queries
    badly (docs/model.md, "The selection rule reads the served score")."""
    names = [n for n in cv if n not in exclude]
    key = {n: cv[n]["R@1"] + cv[n]["R@5"] for n in names}
    top = max(key.values())
    near = [n for n in names if key[n] >= top - 0.005]
    return max(near, key=lambda n: (cv[n]["tau_c_served"], key[n]))
