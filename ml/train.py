"""Training: text transform, joint mapper, listwise reranker families compared by grouped CV,
calibration of the winner's score.

>>> result = train(data)                  # data: ml.data.TrainingData (raw text vectors)
>>> result.ranker.save("var/models/v1")   # ml.ranker.Ranker; Ranker.load reads it back, numpy only

(``withsense train`` publishes through ``service.training``, which also saves the other families'
scorers beside the ranker with ``Ranker.save_scorer``.)

Selection rule (stated here and applied by :func:`ml.compare.pick_best`): among LinearRegression,
LinearSVR and the listwise network, the highest grouped-CV R@1 + R@5; candidates within 0.005 of
the best count as tied and the higher Kendall tau-c against the experts of the score a search would
return wins (each family's calibrated score, in its served order, held out: :func:`served_view`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from ml import metrics as M
from ml import no_match
from ml.blend import COS_WEIGHTS, blended, list_recall
from ml.calibration import FITS, PlattCalibrator, fit_query_calibration, held_out_calibration, held_out_mixed
from ml.compare import (
    ALL_SIGNALS,
    RATED_FITS,
    SELECTION_RULE,
    evaluate_reranker,
    fit_mapper,
    grouped_cv,
    no_match_queries,
    oof_evidence,
    pair_sources,
    pair_targets,
    pick_best,
    reference_captions,
    training_lists,
)
from ml.data import TrainingData
from ml.joint import BridgeMixMapper, KernelRidgeMapper
from ml.listwise import FEATURES, QUERY_SIGNALS, NumpyListMLP, photo_evidence, signals_from
from ml.ranker import Ranker
from ml.scorers import candidate_scorers
from ml.targets import expert_mean
from ml.whitening import PartialWhitening

# Chosen by grouped CV on the training photos (docs/model.md, "Text space").
WHITENING_POWER = 0.2
# The calibration also learns from photos scored against their own captions (docs/model.md, "A score
# for queries that nothing fits").
OWN_CAPTIONS = True
# The joint mapper also learns from rated pairs that fit (docs/model.md, "Ratings and votes in the loss").
MAPPER_RATINGS = True
# The listwise network served is the mean of the grouped CV's fold networks, not one refitted on all
# photos: its scores are then on the scale the calibration was fitted on (docs/model.md, "A score for
# queries that nothing fits").
FOLD_MEAN = True
COS_WEIGHT_RULE = ("the served network's share of the joint cosine (ml.blend): highest CV R@1 + R@5 of the "
                   "blended order; within 0.005 of it, the highest held-out tau-c of the calibrated score")


def default_mapper(data: TrainingData):
    """The mapper chosen in docs/model.md by grouped CV: RBF kernel ridge on the image features,
    leaning on the label bridge where a photo is unlike every training photo (``BridgeMixMapper``)."""
    return BridgeMixMapper(KernelRidgeMapper(alpha=1.0, gamma=1.0), beta=0.2,
                           label_vectors=data.label_vectors, bridge_kind=data.bridge_kind)


@dataclass
class TrainResult:
    ranker: Ranker
    scorer_name: str
    alternatives: dict = field(default_factory=dict)  # other families: name -> (serving scorer, calibrator)
    metrics: dict = field(default_factory=dict)


def training_pairs(data: TrainingData, *, lists: bool, mapper: bool) -> dict[str, int]:
    """How many expert-rated pairs, dataset crowd pairs and live votes entered a loss: every pair
    with a target (not about children) when the scorer reads the rated lists (``lists``), else
    those the mapper learns from (``mapper``: the pairs that fit, ``ml.compare.mapper_pairs``)."""
    t = pair_targets(data)
    if lists:
        ok = ~np.isnan(t)
    elif mapper:
        ok = (np.nan_to_num(t, nan=0.0) >= RATED_FITS) & (pair_sources(data) != data.pair_photo)
    else:
        ok = np.zeros(len(t), bool)
    return {"expert": int((ok & ~np.isnan(data.pair_expert).all(axis=1)).sum()),
            "crowd": int((ok & data.pair_dataset_crowd).sum()),
            "live_votes": int(data.pair_live[ok].sum())}


def _fits(data: TrainingData, pair_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of pairs with expert scores, expert mean >= 3) for the given rated pairs."""
    em = expert_mean(data.pair_expert[pair_index]) if len(pair_index) else np.zeros(0)
    has = ~np.isnan(em)
    return has, em[has] >= FITS


def _calibrator(scores: np.ndarray, fits: np.ndarray) -> PlattCalibrator:
    if len(fits) < 2 or fits.all() or not fits.any():  # nothing to learn from: the logistic of the raw score
        c = PlattCalibrator()
        c.a_, c.b_ = 1.0, 0.0
        return c
    return PlattCalibrator().fit(scores, fits)


def served_tau_c(data: TrainingData, pair_index: np.ndarray, prob: np.ndarray) -> float:
    """Kendall tau-c against the expert mean of the score a search returns: the calibrated
    probability, held out (``prob``: ``held_out_*``'s, one per rated pair with expert scores, in
    ``pair_index``'s order). The CV's tau-c reads the reranker's raw score, which is relative to its
    shortlist; the served score adds the query-level signals, so pairs of different queries compare."""
    em = expert_mean(data.pair_expert[pair_index]) if len(pair_index) else np.zeros(0)
    em = em[~np.isnan(em)]
    return float(M.kendall_tau_c(prob, em)) if len(em) > 1 else float("nan")


def _calibration_sets(data: TrainingData, oof: dict, signals=QUERY_SIGNALS, own_captions: bool = OWN_CAPTIONS,
                      random_state: int = 0) -> tuple[dict, dict]:
    """The rated pairs with expert scores, and the other labelled candidates of one scorer's
    out-of-fold output (``ml.compare.evaluate_reranker``), as ``held_out_mixed`` reads them: the
    no-match queries' best candidates (label 0) and, with ``own_captions``, one caption per photo
    scored against its own photo (label 1: the experts said each of the 120 rated pairs of a photo
    and its own caption fits)."""
    has, fits = _fits(data, oof["pair_index"])
    rated = {"score": oof["score"][has], "query": signals_from(oof["signals"][has], ALL_SIGNALS, signals), "fits": fits,
             "group": data.pair_photo[oof["pair_index"][has]]}
    neg_signals = oof.get("neg_signals", np.zeros((0, len(ALL_SIGNALS))))
    negatives = {"score": oof.get("neg_score", np.zeros(0)), "query": signals_from(neg_signals, ALL_SIGNALS, signals),
                 "label": oof.get("neg_label", np.zeros(0, bool)).astype(bool), "group": oof.get("neg_query", np.zeros(0)),
                 "kind": oof.get("neg_kind", np.zeros(0, object)), "top1": oof.get("neg_top1", np.zeros(0, bool))}
    if own_captions and len(oof.get("own_score", ())) and len(negatives["score"]):
        rng = np.random.default_rng(random_state)
        order = rng.permutation(len(oof["own_score"]))
        _, first = np.unique(oof["own_photo"][order], return_index=True)
        pick = order[first]  # one random caption per photo
        offset = int(negatives["group"].max()) + 1 if len(negatives["group"]) else 0
        extra = {"score": oof["own_score"][pick], "query": signals_from(oof["own_signals"][pick], ALL_SIGNALS, signals),
                 "label": np.ones(len(pick), bool), "group": offset + oof["own_photo"][pick],
                 "kind": np.full(len(pick), "own_caption", object), "top1": np.ones(len(pick), bool)}
        negatives = {k: np.concatenate([negatives[k], extra[k]]) for k in negatives}
    return rated, negatives


def fit_calibrator(rated: dict, negatives: dict, signals=QUERY_SIGNALS) -> PlattCalibrator:
    """The score's calibration: :class:`QueryCalibrator` on rated pairs plus no-match queries' top
    candidates; plain Platt scaling when there are no negatives, no both classes, or the fit would
    reverse the ranking (``fit_query_calibration``)."""
    if not len(negatives["score"]) or rated["fits"].all() or not rated["fits"].any():
        return _calibrator(rated["score"], rated["fits"])
    return fit_query_calibration(np.concatenate([rated["score"], negatives["score"]]),
                                 np.concatenate([rated["query"], negatives["query"]]),
                                 np.concatenate([rated["fits"], negatives["label"]]), signals)


def choose_cos_weight(data: TrainingData, oof: dict, weights=COS_WEIGHTS) -> tuple[float, list[dict]]:
    """The share of the candidate's joint cosine in the served order (``ml.blend``), by the family
    rule on one scorer's out-of-fold output: the highest R@1 + R@5 of the caption queries' galleries
    in the blended order; within 0.005 of it, the highest tau-c of the calibrated score (held out,
    ``held_out_mixed``) against the experts."""
    rows = []
    for w in weights:
        o = blended(oof, w)
        rows.append({"weight": w, **list_recall(o), "tau_c_served": held_out_report(data, o)["tau_c_served"]})
    top = max(r["R@1"] + r["R@5"] for r in rows)
    near = [r for r in rows if r["R@1"] + r["R@5"] >= top - 0.005]
    return max(near, key=lambda r: r["tau_c_served"])["weight"], rows


def held_out_report(data: TrainingData, oof: dict) -> dict:
    """One scorer's calibrated score, held out, from its out-of-fold output: ``held_out_mixed``'s
    report (``held_out_calibration``'s where there are no no-match queries), with the tau-c of the
    held-out probabilities against the experts (``tau_c_served``) in place of the probabilities."""
    rated, negatives = _calibration_sets(data, oof)
    report = (held_out_mixed(rated, negatives) if len(negatives["score"])
              else held_out_calibration(rated["score"], rated["fits"], rated["group"]))
    report["tau_c_served"] = served_tau_c(data, oof["pair_index"], report.pop("prob"))
    return report


def served_view(data: TrainingData, oof: dict, blend: bool) -> dict:
    """One family's out-of-fold output as it would serve: in its blended order where it takes a
    share of the joint cosine (``blend``, :func:`choose_cos_weight`), with its calibrated score held
    out (``report``, :func:`held_out_report`), whose ``tau_c_served`` the selection rule reads
    (``ml.compare.pick_best``): the score a search returns, not the raw score, is what the product
    promises."""
    view = {"oof": oof, "cos_weight": None}
    if blend and "list_score" in oof:
        weight, sweep = choose_cos_weight(data, oof)
        view["cos_weight"] = {"chosen": weight, "sweep": sweep, "rule": COS_WEIGHT_RULE}
        view["oof"] = blended(oof, weight)
    view["report"] = held_out_report(data, view["oof"])
    return view


def _serves_fold_mean(name: str, fold_models: dict) -> bool:
    """Whether family ``name`` serves as the mean of its fold networks (:data:`FOLD_MEAN`)."""
    return FOLD_MEAN and bool(fold_models.get(name)) and all(isinstance(m, NumpyListMLP) for m in fold_models[name])


def train(
    data: TrainingData,
    *,
    random_state: int = 0,
    progress: bool = True,
    mapper=None,
    scorers: dict | None = None,
    n_splits: int = 5,
    run_cv: bool = True,
    whitening_power: float | None = WHITENING_POWER,
    list_size: int = 100,
    mapper_ratings: bool = MAPPER_RATINGS,
) -> TrainResult:
    """Fit the text transform and mapper, compare the reranker families by grouped CV, refit each
    on all data (the listwise network: the mean of its fold networks, :data:`FOLD_MEAN`), calibrate
    them on their out-of-fold scores of rated pairs.

    With ``run_cv=False`` the first scorer is fitted without comparison and calibrated in-sample
    (quick runs, CI).
    """
    t0 = time.time()
    texts = data.all_text_vectors()
    # PCA needs more texts than dimensions: with fewer (a small fixture) most eigenvalues are noise
    # or missing, and the raw space is kept.
    if whitening_power is not None and len(texts) >= 2 * texts.shape[1]:
        text = PartialWhitening(whitening_power).fit(texts)
    else:
        from ml.whitening import IdentityText

        text = IdentityText()
    data = data.with_text_transform(text)
    mapper = default_mapper(data) if mapper is None else mapper
    scorers = candidate_scorers(random_state) if scorers is None else scorers
    metrics: dict = {"n_photos": int(len(data.photo_keys)), "n_captions": int(len(data.caption_photo)),
                     "n_pairs": int(len(data.pair_photo)), "mapper": repr(mapper),
                     "whitening_power": getattr(text, "power", None), "list_size": list_size,
                     "mapper_ratings": mapper_ratings}
    oof = None
    fold_models: dict = {}
    if run_cv and len(scorers) > 1:
        cv, oof = grouped_cv(data, mapper, scorers, n_splits=n_splits, random_state=random_state,
                             list_size=list_size, progress=progress, caption_negatives=no_match.N_SCENE_CAPTIONS,
                             caption_pool=no_match.scene_caption_pool(data.caption_photo, data.caption_texts),
                             mapper_ratings=mapper_ratings, models=fold_models)
        views = {n: served_view(data, oof[n], blend=_serves_fold_mean(n, fold_models)) for n in cv if n in oof}
        for n, view in views.items():
            cv[n]["tau_c_served"] = view["report"]["tau_c_served"]
        name = pick_best(cv)
        metrics["cv"] = cv
        metrics["selection_rule"] = SELECTION_RULE
    else:
        name = next(iter(scorers))
    metrics["chosen"] = name
    metrics["training_pairs"] = training_pairs(data, lists=getattr(scorers[name], "rated_weight", 0.0) > 0,
                                               mapper=mapper_ratings)
    if progress:
        print(f"chosen scorer: {name}; fitting on all data", flush=True)
    lists = training_lists(data, oof_evidence(mapper, data, 3, random_state, mapper_ratings), list_size=list_size,
                           random_state=random_state)
    final_mapper = fit_mapper(mapper, data, ratings=mapper_ratings)
    reference = reference_captions(data)
    fitted, serving = {}, {}
    for n, est in scorers.items():
        if oof is not None and _serves_fold_mean(n, fold_models):
            # The listwise loss leaves each network's level free (docs/model.md, "A score for queries
            # that nothing fits"): the network that serves is the mean of the fold networks whose
            # out-of-fold scores the calibration reads, so it is on their scale.
            fitted[n], serving[n] = est, NumpyListMLP.mean_of(fold_models[n])
        elif n == name or oof is not None:
            fitted[n] = clone(est).fit(lists.X, lists.target, rated=lists.rated)
    calibrators = {}
    for n, est in fitted.items():
        if oof is not None:
            # The chosen family serves as the selection saw it (in its blended order); the others are
            # kept in their own order, for `withsense evaluate`'s comparison.
            o, blend = (views[n]["oof"], views[n]["cos_weight"]) if n == name else (oof[n], None)
            if blend is not None:
                serving[n] = serving[n].plus_feature(FEATURES.index("cos_joint"), blend["chosen"])
                metrics["cos_weight"] = blend
            rated, negatives = _calibration_sets(data, o)
            calibrators[n] = fit_calibrator(rated, negatives)
            if n == name:
                report = views[n]["report"]  # the held-out calibration of this very order, as selected on
                if len(negatives["score"]):
                    hit = signals_from(o["hit_signals"], ALL_SIGNALS)
                    report["right_top1_median_cv"] = float(np.median(calibrators[n].predict(o["hit_score"], hit)))
                report["calibrator"] = calibrators[n].to_dict()
                metrics["calibration"] = report
        else:  # in-sample: the quick path has no held-out pairs
            ev = photo_evidence(final_mapper, data.photo_features, data.label_vectors, data.bridge_kind)
            negatives = no_match_queries(data, np.zeros(0, np.int64), random_state=random_state)
            _, o = evaluate_reranker(est, data, ev, np.unique(data.pair_photo), (reference[0], reference[1]),
                                     random_state=random_state, negatives=negatives)
            calibrators[n] = fit_calibrator(*_calibration_sets(data, o))
            metrics["calibration"] = {"note": "in-sample (train --no-cv)"}
    metrics["served_fold_mean"] = sorted(serving)  # families served as the mean of their fold networks
    serving = {n: serving[n] if n in serving else est.serving() for n, est in fitted.items()}
    ranker = Ranker(text, final_mapper, serving[name], calibrators[name], data.label_vectors, reference[0],
                    dims=data.caption_vectors.shape[1], bridge_kind=data.bridge_kind,
                    name=f"{type(final_mapper).__name__}+{name}",
                    cos_weight=metrics.get("cos_weight", {}).get("chosen", 0.0))
    metrics["train_seconds"] = round(time.time() - t0, 1)
    alternatives = {n: (serving[n], calibrators[n]) for n in fitted if n != name}
    return TrainResult(ranker=ranker, scorer_name=name, alternatives=alternatives, metrics=metrics)
