"""The final score as a probability: P(experts say the description fits | reranker score, query).

"Fits" is an expert mean of at least 3 (of 4), the same event ROC-AUC measures. The calibrator is
fitted on rated pairs the reranker never trained on (its out-of-fold scores from grouped CV).
Platt scaling (a logistic regression on the raw score) was chosen over isotonic regression
because it is strictly increasing: isotonic steps would tie candidates and lose the reranker's
order, which is what search needs.

The reranker's score is relative to the shortlist: for a query nothing fits, the least bad photo
still scores high. :class:`QueryCalibrator` adds query-level signals (:data:`QUERY_SIGNALS`: the
query's specificity, its best cosine to a training caption, a hinge of it, and the shortlist's best
joint cosine; ``ml.listwise``) to the logistic regression and is fitted on rated pairs, on no-match queries' best candidates (label 0: written
sentences, random strings and captions of scenes without people or dogs) and on
photos scored against one of their own captions (label 1: the experts said all 120 rated pairs of
that kind fit). A term that is the same for every candidate of a query moves the scores, never the
order within the query.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from ml.fitted import PlattMap, QueryPlattMap
from ml.listwise import QUERY_SIGNALS

FITS = 3.0  # expert mean at or above which a description "fits"


class PlattCalibrator(BaseEstimator, PlattMap):
    """Platt scaling: a logistic regression on the raw score alone (inference: ``ml.fitted.PlattMap``)."""

    def __init__(self, C: float = 1e4):
        self.C = C

    def fit(self, scores, fits) -> PlattCalibrator:
        lr = LogisticRegression(C=self.C).fit(np.asarray(scores, np.float64).reshape(-1, 1), np.asarray(fits, bool))
        self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self


class QueryCalibrator(BaseEstimator, QueryPlattMap):
    """Logistic regression on the reranker's raw score and query-level signals:
    ``P(fits) = sigmoid(a * score + w . query + b)`` (inference: ``ml.fitted.QueryPlattMap``). With
    ``a > 0`` the order within a query is the score's; ``query`` shifts the whole list, down for a
    query nothing fits."""

    def __init__(self, signals: tuple = QUERY_SIGNALS, C: float = 1e4):
        self.signals = signals
        self.C = C

    def fit(self, scores, query, fits, sample_weight=None) -> QueryCalibrator:
        X = np.column_stack([np.asarray(scores, np.float64), np.asarray(query, np.float64)])
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(X, np.asarray(fits, bool), sample_weight=sample_weight)
        self.a_, self.w_, self.b_ = float(lr.coef_[0, 0]), lr.coef_[0, 1:].astype(np.float64), float(lr.intercept_[0])
        if self.a_ <= 0:  # the order within a query must stay the reranker's
            raise ValueError(f"calibration slope {self.a_:.3g} <= 0: the score would reverse the ranking")
        return self


def reliability(prob: np.ndarray, fits: np.ndarray, n_bins: int = 10) -> dict:
    """Equal-width bins: mean predicted probability, observed share of fits, count; and the
    expected calibration error (bin-count-weighted mean absolute gap)."""
    prob, fits = np.asarray(prob, np.float64), np.asarray(fits, np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            bins.append({"lo": edges[b], "hi": edges[b + 1], "mean_prob": float(prob[m].mean()),
                         "observed": float(fits[m].mean()), "n": int(m.sum())})
            ece += m.sum() / len(prob) * abs(prob[m].mean() - fits[m].mean())
    return {"bins": bins, "ECE": float(ece), "n": int(len(prob))}


def precision_recall_at(prob: np.ndarray, fits: np.ndarray, threshold: float = 0.5) -> dict:
    """Precision and recall of "score >= threshold" as the decision "the description fits"."""
    pred, fits = np.asarray(prob) >= threshold, np.asarray(fits, bool)
    tp = int((pred & fits).sum())
    return {"threshold": threshold, "precision": tp / max(int(pred.sum()), 1), "recall": tp / max(int(fits.sum()), 1),
            "n_pairs": int(len(fits)), "n_fits": int(fits.sum()), "n_passing": int(pred.sum())}


def held_out_calibration(scores: np.ndarray, fits: np.ndarray, groups: np.ndarray, *, threshold: float = 0.5,
                         random_state: int = 0) -> dict:
    """Calibration measured honestly: fitted on half of the photos' pairs, reported on the other
    half, and the other way round (2-fold, grouped by photo); the report pools both halves."""
    rng = np.random.default_rng(random_state)
    photos = np.unique(groups)
    half = set(rng.permutation(photos)[: len(photos) // 2].tolist())
    a = np.array([g in half for g in groups])
    prob = np.zeros(len(scores))
    for train in (a, ~a):
        if train.any() and (~train).any():
            prob[~train] = PlattCalibrator().fit(scores[train], fits[train]).predict(scores[~train])
    out = reliability(prob, fits)
    out["at_threshold"] = precision_recall_at(prob, fits, threshold)
    out["prob"] = prob
    return out


def fit_query_calibration(scores, query, fits, signals: tuple = QUERY_SIGNALS) -> PlattCalibrator | QueryCalibrator:
    """:class:`QueryCalibrator`, or where its slope would be <= 0 (seen on tiny data only: it would
    reverse the ranking) Platt scaling of the score alone, or if that too slopes down the logistic
    of the raw score."""
    try:
        return QueryCalibrator(signals).fit(scores, query, fits)
    except ValueError:
        c = PlattCalibrator().fit(scores, fits)
        if c.a_ <= 0:
            c.a_, c.b_ = 1.0, 0.0
        return c


def mixed_halves(rated: dict, negatives: dict, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`held_out_mixed`'s first half: masks of the rated pairs (half of the photos) and of the
    no-match candidates (half of the queries); the second half is the rest."""
    rng = np.random.default_rng(random_state)
    rp, nq = np.unique(rated["group"]), np.unique(negatives["group"])
    return (np.isin(rated["group"], rng.permutation(rp)[: len(rp) // 2]),
            np.isin(negatives["group"], rng.permutation(nq)[: len(nq) // 2]))


def held_out_mixed(rated: dict, negatives: dict, *, signals: tuple = QUERY_SIGNALS, threshold: float = 0.5,
                   random_state: int = 0, fit=None) -> dict:
    """:class:`QueryCalibrator` measured honestly on a mixed set: fitted on half of the rated
    photos' pairs and half of the no-match queries' top candidates, reported on the other halves,
    and the other way round (2-fold; rated pairs grouped by photo, negatives by query).

    ``rated``: ``score``, ``query`` (n, len(signals)), ``fits``, ``group``; ``negatives``: the same
    with ``label`` for ``fits``, ``group`` (one per query), ``top1`` (the query's best candidate)
    and ``kind`` (``caption`` / ``sentence`` / ``random``); ``fit`` (scores, query, fits, signals) ->
    calibrator, :func:`fit_query_calibration` by default. Reports ECE on the rated pairs alone and
    on the mixed set, precision/recall at ``threshold``, and per kind of no-match query the share
    whose best score is under ``threshold``."""
    r_half, n_half = mixed_halves(rated, negatives, random_state)
    r_prob, n_prob = np.zeros(len(r_half)), np.zeros(len(n_half))
    for r_train, n_train in ((r_half, n_half), (~r_half, ~n_half)):
        c = (fit or fit_query_calibration)(
            np.concatenate([rated["score"][r_train], negatives["score"][n_train]]),
            np.concatenate([rated["query"][r_train], negatives["query"][n_train]]),
            np.concatenate([rated["fits"][r_train], negatives["label"][n_train]]), signals)
        r_prob[~r_train] = c.predict(rated["score"][~r_train], rated["query"][~r_train])
        n_prob[~n_train] = c.predict(negatives["score"][~n_train], negatives["query"][~n_train])
    out = reliability(r_prob, rated["fits"])
    out["at_threshold"] = precision_recall_at(r_prob, rated["fits"], threshold)
    mixed = reliability(np.concatenate([r_prob, n_prob]), np.concatenate([rated["fits"], negatives["label"]]))
    out["mixed"] = {"ECE": mixed["ECE"], "n": mixed["n"], "n_negatives": int(len(n_prob)), "bins": mixed["bins"]}
    top = np.asarray(negatives["top1"], bool) & ~np.asarray(negatives["label"], bool)
    own = negatives["kind"] == "own_caption"
    if own.any():  # photos scored against their own caption: the experts say these fit
        out["own_caption_median"] = float(np.median(n_prob[own]))
    out["no_match_under"] = {k: {"share": float((n_prob[top & (negatives["kind"] == k)] < threshold).mean()),
                                 "n_queries": int((top & (negatives["kind"] == k)).sum())}
                             for k in np.unique(negatives["kind"]) if (top & (negatives["kind"] == k)).any()}
    out["prob"] = r_prob
    return out
