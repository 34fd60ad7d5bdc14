"""The joint space: photos mapped into the text encoder's space, where SQL compares them by cosine.

A mapper is an estimator (scikit-learn contract): ``fit(image_features, text_vectors)`` learns from
(photo, caption) pairs, ``transform(image_features)`` gives unit vectors in the text space. Serving
needs numpy only: a fitted mapper saves to a ``.npz`` file, which ``ml.fitted.load_mapper`` reads
back as the inference class each mapper inherits from.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import StandardScaler

from ml.fitted import BridgeMixMap, RidgeMap


def _standardise_fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per feature (``StandardScaler``), with the scale floored at a tenth of the
    median feature's: a feature (nearly) constant over the training photos would otherwise blow a
    new photo's small difference in it up into a huge distance (measured on the full training set
    with the Lite0 + Lite2 features, the floor touched 1 of their 4,560)."""
    scaler = StandardScaler().fit(np.asarray(X, dtype=np.float64))
    floor = max(0.1 * float(np.median(scaler.scale_)), 1e-6)
    return scaler.mean_.astype(np.float32), np.maximum(scaler.scale_, floor).astype(np.float32)


class KernelRidgeMapper(BaseEstimator, RidgeMap):
    """Kernel ridge regression (RBF kernel) from image features to the text space.

    Features are standardised and divided by sqrt(d), so squared distances are about 2 on average
    and ``gamma`` is scale-free. Captions of the same photo are merged first: the target of a photo
    is the mean of its caption vectors, and the ridge penalty of a photo is ``alpha / n_captions``
    (the same solution as one row per caption). Inference and the file format are
    ``ml.fitted.RidgeMap``'s.
    """

    def __init__(self, alpha: float = 1.0, gamma: float = 0.5):
        self.alpha = alpha
        self.gamma = gamma

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray,
            sample_weight: np.ndarray | None = None) -> KernelRidgeMapper:
        """``sample_weight``: how much each (photo, text) row counts, as a fraction of a caption
        (a rated pair that fits, weighted by its target; ``ml.compare.mapper_pairs``)."""
        X = np.asarray(image_features, np.float32)
        Y = np.asarray(text_vectors, np.float64)
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.mean_, self.scale_ = _standardise_fit(X)
        Z = self._z(X)
        support, inv = np.unique(Z, axis=0, return_inverse=True)
        inv = inv.ravel()
        counts = np.bincount(inv, weights=w).astype(np.float64)
        T = np.zeros((len(support), Y.shape[1]))
        np.add.at(T, inv, Y * w[:, None])
        T /= counts[:, None]
        K = self._kernel(support.astype(np.float64), support.astype(np.float64))
        self.dual_coef_ = np.linalg.solve(K + np.diag(self.alpha / counts), T).astype(np.float32)
        self.support_ = support.astype(np.float32)
        return self


class BridgeMixMapper(BaseEstimator, BridgeMixMap):
    """A kernel ridge mapper whose output leans on the label bridge where it knows little.

    ``transform = unit(kernel_ridge_raw + beta * bridge)``. Near the training photos the kernel
    ridge output is long (|raw| ~ 0.7) and dominates; for a photo unlike any training photo (a cup
    of coffee among Flickr8k's people and dogs) it fades toward zero and the untrained bridge view
    (ImageNet classes turned into text) takes over, instead of the photo being mapped onto its
    nearest, unrelated training photos. ``beta`` was chosen by grouped CV on training photos
    (docs/model.md): 0.2 gave R@1 0.504 / R@5 0.851 against 0.500 / 0.838 for the plain mapper.
    Inference and the file format are ``ml.fitted.BridgeMixMap``'s.
    """

    def __init__(self, mapper=None, beta: float = 0.2, label_vectors: np.ndarray | None = None,
                 bridge_kind: str = "imagenet_labels"):
        self.mapper = mapper
        self.beta = beta
        self.label_vectors = label_vectors
        self.bridge_kind = bridge_kind

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray,
            sample_weight: np.ndarray | None = None) -> BridgeMixMapper:
        self.mapper_ = clone(self.mapper if self.mapper is not None else KernelRidgeMapper()).fit(
            image_features, text_vectors, sample_weight=sample_weight)
        self.label_vectors_ = np.asarray(self.label_vectors, np.float32)
        return self
