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

from ml.fitted import IdentityMap, WhiteningMap


class PartialWhitening(TransformerMixin, BaseEstimator, WhiteningMap):
    """Fitted by PCA; ``transform`` and the file format are ``ml.fitted.WhiteningMap``'s."""

    def __init__(self, power: float = 0.2):
        self.power = power

    def fit(self, X, y=None) -> PartialWhitening:
        X = np.asarray(X, np.float64)
        # All d components even when there are fewer texts than dimensions (a small fixture):
        # the space keeps the text encoder's dimension, which the database's vectors are checked against.
        pca = PCA(n_components=min(X.shape), svd_solver="full").fit(X)
        components, ev = pca.components_, pca.explained_variance_
        if len(components) < X.shape[1]:  # complete the basis; the missing directions get the floor
            q, _ = np.linalg.qr(np.concatenate([components.T, np.eye(X.shape[1])], axis=1))
            components = np.concatenate([components, q[:, len(components):X.shape[1]].T])
            ev = np.concatenate([ev, np.zeros(X.shape[1] - len(ev))])
        self.mean_ = pca.mean_.astype(np.float32)
        # Eigenvalues floored at a thousandth of the largest: a (nearly) empty direction must not be
        # scaled up without bound.
        ev = np.maximum(ev, ev[0] * 1e-3)
        self.projection_ = (components.T * ev ** -self.power).astype(np.float32)  # (d, d)
        return self


class IdentityText(TransformerMixin, BaseEstimator, IdentityMap):
    """The raw text space (no whitening), as an estimator: CV compares it with the whitened one."""

    def fit(self, X, y=None) -> IdentityText:
        return self
