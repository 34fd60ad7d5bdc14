"""Partial whitening of the text space: the transform the ranker applies to every text vector.

MiniLM's space is anisotropic: a few directions carry most of the variance and little of the
meaning, so they dominate cosines. PCA (scikit-learn) on every caption there is, then each
component scaled by its eigenvalue to the power ``-power`` and the result unit-normalised, flattens
those directions part of the way (``power = 0.5`` would be full whitening, which also blows up the
noise directions; ``power = 0`` is the raw space, centred). ``power`` is chosen by grouped CV only
(docs/model.md). Photos are mapped into the whitened space; queries are whitened the same way
before the SQL shortlist, so the transform belongs to the ranker and is versioned with it.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from ml.encoders import l2_normalize


class PartialWhitening(TransformerMixin, BaseEstimator):
    def __init__(self, power: float = 0.2):
        self.power = power

    def fit(self, X, y=None) -> "PartialWhitening":
        pca = PCA(svd_solver="full").fit(np.asarray(X, np.float64))
        self.mean_ = pca.mean_.astype(np.float32)
        # Eigenvalues floored at a millionth of the largest: a (nearly) empty direction must not be
        # scaled up without bound.
        ev = np.maximum(pca.explained_variance_, pca.explained_variance_[0] * 1e-6)
        self.projection_ = (pca.components_.T * ev ** -self.power).astype(np.float32)  # (d, d)
        return self

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, np.float32)
        return l2_normalize((X - self.mean_) @ self.projection_)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"power": np.array(self.power), "mean": self.mean_, "projection": self.projection_}

    @classmethod
    def from_arrays(cls, a) -> "PartialWhitening":
        w = cls(power=float(a["power"]))
        w.mean_, w.projection_ = np.asarray(a["mean"], np.float32), np.asarray(a["projection"], np.float32)
        return w


class IdentityText(TransformerMixin, BaseEstimator):
    """The raw text space (no whitening), with the same interface."""

    power = None

    def fit(self, X, y=None) -> "IdentityText":
        return self

    def transform(self, X) -> np.ndarray:
        return l2_normalize(np.asarray(X, np.float32))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"power": np.array(np.nan)}
