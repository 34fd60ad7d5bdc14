"""The joint space: photos mapped into the text encoder's space, where SQL compares them by cosine.

A mapper is an estimator (scikit-learn contract): ``fit(image_features, text_vectors)`` learns from
(photo, caption) pairs, ``transform(image_features)`` gives unit vectors in the text space. Serving
needs numpy only: a fitted mapper saves to and loads from a ``.npz`` file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler

from ml.encoders import l2_normalize


def _standardise_fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per feature (``StandardScaler``), with the scale floored at a tenth of the
    median feature's: a feature (nearly) constant over the training photos would otherwise blow a
    new photo's small difference in it up into a huge distance (measured on the full training set
    with the Lite0 + Lite2 features, the floor touched 1 of their 4,560)."""
    scaler = StandardScaler().fit(np.asarray(X, dtype=np.float64))
    floor = max(0.1 * float(np.median(scaler.scale_)), 1e-6)
    return scaler.mean_.astype(np.float32), np.maximum(scaler.scale_, floor).astype(np.float32)


class KernelRidgeMapper(BaseEstimator):
    """Kernel ridge regression (RBF kernel) from image features to the text space.

    Features are standardised and divided by sqrt(d), so squared distances are about 2 on average
    and ``gamma`` is scale-free. Captions of the same photo are merged first: the target of a photo
    is the mean of its caption vectors, and the ridge penalty of a photo is ``alpha / n_captions``
    (the same solution as one row per caption). Inference is numpy: RBF against the stored
    training photos (``support_``) times ``dual_coef_``, unit-normalised.
    """

    kind = "kernel_ridge"

    def __init__(self, alpha: float = 1.0, gamma: float = 0.5):
        self.alpha = alpha
        self.gamma = gamma

    def _z(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean_) / self.scale_) / np.float32(np.sqrt(len(self.mean_)))

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        return np.exp(-self.gamma * np.maximum(d, 0.0))

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

    def predict_raw(self, image_features: np.ndarray) -> np.ndarray:
        """The regression output before unit normalisation. Its length shrinks as a photo gets
        farther from every training photo (the kernel fades), which ``BridgeMixMapper`` uses."""
        Z = self._z(image_features)
        return self._kernel(Z, self.support_) @ self.dual_coef_

    def transform(self, image_features: np.ndarray) -> np.ndarray:
        Z = self._z(image_features)
        # Each row's kernel is scaled by exp(gamma * its smallest distance): the unit-normalised result
        # is the same, and a photo far from every training photo does not underflow to a zero vector.
        A, B = Z, self.support_
        d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        d = np.maximum(d, 0.0)
        K = np.exp(-self.gamma * (d - d.min(axis=1, keepdims=True)))
        return l2_normalize(K @ self.dual_coef_)

    def save(self, path: str | Path) -> None:
        np.savez(path, kind=self.kind, alpha=self.alpha, gamma=self.gamma, mean=self.mean_, scale=self.scale_,
                 support=self.support_, dual_coef=self.dual_coef_)

    @classmethod
    def load(cls, path: str | Path) -> KernelRidgeMapper:
        data = np.load(path)
        m = cls(alpha=float(data["alpha"]), gamma=float(data["gamma"]))
        m.mean_, m.scale_, m.support_, m.dual_coef_ = data["mean"], data["scale"], data["support"], data["dual_coef"]
        return m


class BridgeMixMapper(BaseEstimator):
    """A kernel ridge mapper whose output leans on the label bridge where it knows little.

    ``transform = unit(kernel_ridge_raw + beta * bridge)``. Near the training photos the kernel
    ridge output is long (|raw| ~ 0.7) and dominates; for a photo unlike any training photo (a cup
    of coffee among Flickr8k's people and dogs) it fades toward zero and the untrained bridge view
    (ImageNet classes turned into text) takes over, instead of the photo being mapped onto its
    nearest, unrelated training photos. ``beta`` was chosen by grouped CV on training photos
    (docs/model.md): 0.2 gave R@1 0.504 / R@5 0.851 against 0.500 / 0.838 for the plain mapper.
    """

    kind = "bridge_mix"

    def __init__(self, mapper=None, beta: float = 0.2, label_vectors: np.ndarray | None = None,
                 bridge_kind: str = "imagenet_labels"):
        self.mapper = mapper
        self.beta = beta
        self.label_vectors = label_vectors
        self.bridge_kind = bridge_kind

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray,
            sample_weight: np.ndarray | None = None) -> BridgeMixMapper:
        from sklearn.base import clone

        self.mapper_ = clone(self.mapper if self.mapper is not None else KernelRidgeMapper()).fit(
            image_features, text_vectors, sample_weight=sample_weight)
        self.label_vectors_ = np.asarray(self.label_vectors, np.float32)
        return self

    def transform(self, image_features: np.ndarray) -> np.ndarray:
        from ml.features import photo_bridges

        bridge = photo_bridges(image_features, self.label_vectors_, self.bridge_kind)
        return l2_normalize(self.mapper_.predict_raw(image_features) + self.beta * bridge)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        inner = path.with_suffix(".inner.npz")
        self.mapper_.save(inner)
        np.savez(path, kind=self.kind, beta=self.beta, bridge_kind=self.bridge_kind,
                 label_vectors=self.label_vectors_, inner=inner.name)

    @classmethod
    def load(cls, path: str | Path) -> BridgeMixMapper:
        path = Path(path)
        data = np.load(path)
        m = cls(beta=float(data["beta"]), bridge_kind=str(data["bridge_kind"]))
        m.mapper_ = load_mapper(path.parent / str(data["inner"]))
        m.label_vectors_ = data["label_vectors"]
        return m


def load_mapper(path: str | Path):
    """Any saved mapper, by the ``kind`` stored in its file."""
    kind = str(np.load(path)["kind"])
    kinds = {"kernel_ridge": KernelRidgeMapper, "bridge_mix": BridgeMixMapper}
    return kinds[kind].load(path)
