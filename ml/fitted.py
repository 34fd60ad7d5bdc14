"""Fitted models as the service runs them: their learned arrays and the arithmetic on them, numpy only.

Training fits scikit-learn estimators (``ml.joint``, ``ml.whitening``, ``ml.calibration``); each
inherits its inference and its file format from a class here, so there is one implementation of
both. Loading a ranker builds these classes, never the estimators: importing scikit-learn would
cost every web worker ~75 MB and ~0.85 s of start-up for nothing it runs
(``reports/bench/search.md``, cold start).

* :class:`RidgeMap`, :class:`BridgeMixMap` (:func:`load_mapper`): photos into the joint space;
* :class:`WhiteningMap`, :class:`IdentityMap` (:func:`load_text_transform`): text vectors into
  the ranker's space;
* :class:`PlattMap`, :class:`QueryPlattMap` (:func:`load_calibration`): raw scores into P(fits).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.encoders import l2_normalize


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------- the joint space's photo side
class RidgeMap:
    """A kernel ridge regression from image features to the text space (``KernelRidgeMapper``):
    RBF against the stored training photos (``support_``) times ``dual_coef_``, unit-normalised."""

    kind = "kernel_ridge"

    def _z(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean_) / self.scale_) / np.float32(np.sqrt(len(self.mean_)))

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        return np.exp(-self.gamma * np.maximum(d, 0.0))

    def predict_raw(self, image_features: np.ndarray) -> np.ndarray:
        """The regression output before unit normalisation. Its length shrinks as a photo gets
        farther from every training photo (the kernel fades), which :class:`BridgeMixMap` uses."""
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

    @staticmethod
    def load(path: str | Path) -> RidgeMap:
        data = np.load(path)
        m = RidgeMap()
        m.alpha, m.gamma = float(data["alpha"]), float(data["gamma"])
        m.mean_, m.scale_, m.support_, m.dual_coef_ = data["mean"], data["scale"], data["support"], data["dual_coef"]
        return m


class BridgeMixMap:
    """``unit(kernel_ridge_raw + beta * bridge)`` (``BridgeMixMapper``): the untrained label bridge
    takes over where the kernel ridge output fades, far from every training photo."""

    kind = "bridge_mix"

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

    @staticmethod
    def load(path: str | Path) -> BridgeMixMap:
        path = Path(path)
        data = np.load(path)
        m = BridgeMixMap()
        m.beta, m.bridge_kind = float(data["beta"]), str(data["bridge_kind"])
        m.mapper_ = load_mapper(path.parent / str(data["inner"]))
        m.label_vectors_ = data["label_vectors"]
        return m


def load_mapper(path: str | Path) -> RidgeMap | BridgeMixMap:
    """Any saved mapper, by the ``kind`` stored in its file."""
    kind = str(np.load(path)["kind"])
    return {RidgeMap.kind: RidgeMap, BridgeMixMap.kind: BridgeMixMap}[kind].load(path)


# ---------------------------------------------------------------- the text side
class WhiteningMap:
    """``unit((x - mean_) @ projection_)``: partial whitening of the text space (``PartialWhitening``)."""

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, np.float32)
        return l2_normalize((X - self.mean_) @ self.projection_)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"power": np.array(self.power), "mean": self.mean_, "projection": self.projection_}

    def linear_form(self, dims: int) -> tuple[np.ndarray, np.ndarray]:
        """``(weights, bias)`` with ``transform(x) = unit(x @ weights - bias)``: the transform
        as data that SQL can apply (the ``ranker_text_transform`` table, migration 0010)."""
        del dims  # the projection's own shape
        projection = np.asarray(self.projection_, np.float64)
        return projection.astype(np.float32), np.asarray(self.mean_, np.float64) @ projection


class IdentityMap:
    """The raw text space (no whitening), with the same interface."""

    power = None

    def transform(self, X) -> np.ndarray:
        return l2_normalize(np.asarray(X, np.float32))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"power": np.array(np.nan)}

    def linear_form(self, dims: int) -> tuple[np.ndarray, np.ndarray]:
        """``(identity, zeros)``: see :meth:`WhiteningMap.linear_form`."""
        return np.eye(dims, dtype=np.float32), np.zeros(dims)


def load_text_transform(arrays) -> WhiteningMap | IdentityMap:
    """The text transform saved by ``to_arrays`` (a NaN power is the identity)."""
    if np.isnan(float(arrays["power"])):
        return IdentityMap()
    w = WhiteningMap()
    w.power = float(arrays["power"])
    w.mean_, w.projection_ = np.asarray(arrays["mean"], np.float32), np.asarray(arrays["projection"], np.float32)
    return w


# ---------------------------------------------------------------- the score as a probability
class PlattMap:
    """``P(fits) = sigmoid(a_ * score + b_)`` (``PlattCalibrator``)."""

    KIND = "platt"
    signals: tuple = ()

    def predict(self, scores, query=None) -> np.ndarray:
        """``query`` (the query-level signals) is ignored: the score alone is calibrated."""
        return _sigmoid(self.a_ * np.asarray(scores, np.float64) + self.b_)

    def to_dict(self) -> dict:
        return {"kind": self.KIND, "a": self.a_, "b": self.b_}


class QueryPlattMap:
    """``P(fits) = sigmoid(a_ * score + w_ . query + b_)`` (``QueryCalibrator``): with ``a_ > 0``
    the order within a query is the score's; ``query`` shifts the whole list."""

    KIND = "query_platt"

    def predict(self, scores, query=None) -> np.ndarray:
        s = np.asarray(scores, np.float64)
        if query is None:
            raise ValueError("QueryCalibrator.predict needs the query-level signals")
        q = np.asarray(query, np.float64)
        return _sigmoid(self.a_ * s + (q @ self.w_ if q.ndim > 1 else float(q @ self.w_)) + self.b_)

    def to_dict(self) -> dict:
        return {"kind": self.KIND, "signals": list(self.signals), "a": self.a_, "w": self.w_.tolist(), "b": self.b_}


def load_calibration(d: dict) -> PlattMap | QueryPlattMap:
    """The calibration saved by ``to_dict`` (a dict without ``kind`` is plain Platt, format 2)."""
    if d.get("kind", PlattMap.KIND) == QueryPlattMap.KIND:
        c = QueryPlattMap()
        c.signals, c.w_ = tuple(d["signals"]), np.asarray(d["w"], np.float64)
    else:
        c = PlattMap()
    c.a_, c.b_ = float(d["a"]), float(d["b"])
    return c
