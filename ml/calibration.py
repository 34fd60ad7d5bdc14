"""The final score as a probability: P(experts say the description fits | reranker score).

"Fits" is an expert mean of at least 3 (of 4), the same event ROC-AUC measures. The calibrator is
fitted on rated pairs the reranker never trained on (its out-of-fold scores from grouped CV).
Platt scaling (a logistic regression on the raw score) was chosen over isotonic regression
because it is strictly increasing: isotonic steps would tie candidates and lose the reranker's
order, which is what search needs.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

FITS = 3.0  # expert mean at or above which a description "fits"


class PlattCalibrator(BaseEstimator):
    def __init__(self, C: float = 1e4):
        self.C = C

    def fit(self, scores, fits) -> PlattCalibrator:
        lr = LogisticRegression(C=self.C).fit(np.asarray(scores, np.float64).reshape(-1, 1), np.asarray(fits, bool))
        self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def predict(self, scores) -> np.ndarray:
        z = self.a_ * np.asarray(scores, np.float64) + self.b_
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return {"kind": "platt", "a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, d: dict) -> PlattCalibrator:
        c = cls()
        c.a_, c.b_ = float(d["a"]), float(d["b"])
        return c


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
