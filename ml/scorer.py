"""The reranking scorer: (query, photo) pair features -> match score in [0, 1].

Pair features (:func:`pair_features`) for a query text vector ``q`` and a photo:
``cos(q, j)`` with ``j`` the photo's joint vector (``ml.joint``), ``cos(q, b)`` with ``b`` the
label-bridge vector (ImageNet class probabilities times label-phrase vectors, ``ml.features``),
and the elementwise product ``q * j`` (a learned diagonal metric on the joint space).

Candidate scorers share the scikit-learn contract (``fit``/``predict``/``score``) and are
compared by ``ml.compare``: LinearRegression, LinearSVR, :class:`KerasMLP` (three layers, Keras on
TensorFlow, TensorFlow imported inside ``fit`` only) and sklearn's MLPRegressor. Serving needs
numpy only: :meth:`NumpyMLP.from_keras` copies a Keras network's weights and evaluates it in numpy;
sklearn models predict with numpy already. ``ml.ranker.Ranker`` bundles mapper + scorer for the service.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.preprocessing import StandardScaler


def pair_features(
    query_vectors: np.ndarray,
    photo_joint: np.ndarray,
    photo_bridge: np.ndarray | None = None,
    *,
    product: bool = False,
) -> np.ndarray:
    """Features of k (query, photo) pairs: rows of ``query_vectors`` (or one query broadcast)
    against rows of ``photo_joint`` / ``photo_bridge`` (unit vectors of the text space)."""
    q = np.asarray(query_vectors, dtype=np.float32)
    j = np.asarray(photo_joint, dtype=np.float32)
    if q.ndim == 1:
        q = np.broadcast_to(q, j.shape)
    cols = [np.sum(q * j, axis=1, keepdims=True)]
    if photo_bridge is not None:
        cols.append(np.sum(q * np.asarray(photo_bridge, np.float32), axis=1, keepdims=True))
    if product:
        cols.append(q * j)
    return np.concatenate(cols, axis=1).astype(np.float32)


def _clip01(y: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(y, dtype=np.float64).ravel(), 0.0, 1.0)


def soft_clip01(y: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Into (0, 1), strictly increasing: identity on [margin, 1 - margin], exponential tails outside.

    A hard clip would tie every prediction below 0 (or above 1) and lose their order, which is
    what ranking needs; this keeps the order and the scale of the middle range.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    lo, hi = margin, 1.0 - margin
    out = y.copy()
    below, above = y < lo, y > hi
    out[below] = lo * np.exp((y[below] - lo) / lo)
    out[above] = 1.0 - margin * np.exp(-(y[above] - hi) / margin)
    return out


class ClippedRegressor(RegressorMixin, BaseEstimator):
    """Any regressor with its predictions squashed into (0, 1) by :func:`soft_clip01` (order kept),
    with optional standardisation of the features."""

    def __init__(self, estimator=None, standardize: bool = True, columns: tuple | None = None):
        self.estimator = estimator
        self.standardize = standardize
        self.columns = columns

    def fit(self, X, y, sample_weight=None):
        from sklearn.base import clone
        from sklearn.linear_model import LinearRegression
        from sklearn.utils.validation import has_fit_parameter, validate_data

        X, y = validate_data(self, X, y, y_numeric=True)
        X = X[:, list(self.columns)] if self.columns is not None else X
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w is not None and not w.sum() > 0:
            w = None
        self.scaler_ = StandardScaler(with_mean=self.standardize, with_std=self.standardize).fit(X, sample_weight=w)
        self.estimator_ = clone(self.estimator if self.estimator is not None else LinearRegression())
        Z = self.scaler_.transform(X)
        if sample_weight is not None and has_fit_parameter(self.estimator_, "sample_weight"):
            self.estimator_.fit(Z, y, sample_weight=sample_weight)  # the estimator validates the weights
        else:
            self.estimator_.fit(Z, y)
        return self

    def predict(self, X):
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        X = X[:, list(self.columns)] if self.columns is not None else X
        return soft_clip01(self.estimator_.predict(self.scaler_.transform(X)))


class NumpyMLP:
    """A dense network evaluated in numpy: ``relu`` hidden layers, ``sigmoid`` output."""

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], mean: np.ndarray, scale: np.ndarray):
        self.weights = [np.asarray(w, np.float32) for w in weights]
        self.biases = [np.asarray(b, np.float32) for b in biases]
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)

    @classmethod
    def from_keras(cls, model, mean=None, scale=None) -> "NumpyMLP":
        dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
        weights = [np.asarray(layer.get_weights()[0]) for layer in dense]
        biases = [np.asarray(layer.get_weights()[1]) for layer in dense]
        d = weights[0].shape[0]
        return cls(weights, biases, np.zeros(d) if mean is None else mean, np.ones(d) if scale is None else scale)

    def predict(self, X: np.ndarray) -> np.ndarray:
        # float64: in float32 the sigmoid rounds to exactly 1.0 for z > 17, tying the best photos.
        h = (np.asarray(X, np.float64) - self.mean) / self.scale
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w.astype(np.float64) + b, 0.0)
        z = (h @ self.weights[-1].astype(np.float64) + self.biases[-1]).ravel()
        return 1.0 / (1.0 + np.exp(-z))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale, "n_layers": np.array(len(self.weights))}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"W{i}"], out[f"b{i}"] = w, b
        return out

    @classmethod
    def from_arrays(cls, a) -> "NumpyMLP":
        n = int(a["n_layers"])
        return cls([a[f"W{i}"] for i in range(n)], [a[f"b{i}"] for i in range(n)], a["mean"], a["scale"])


class KerasMLP(RegressorMixin, BaseEstimator):
    """Three dense layers (two ReLU hidden + sigmoid output) in Keras on TensorFlow, MSE loss.

    TensorFlow is imported inside ``fit`` only. After ``fit`` the network lives in ``model_``
    (Keras) and ``numpy_`` (:class:`NumpyMLP`, used by ``predict`` and at serving time).
    """

    def __init__(self, hidden=(256, 64), dropout: float = 0.2, epochs: int = 20, batch_size: int = 256,
                 learning_rate: float = 1e-3, l2: float = 1e-5, random_state: int | None = 0, verbose: int = 0):
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y, sample_weight=None):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).ravel()
        seed = 0 if self.random_state is None else int(self.random_state)
        keras.utils.set_random_seed(seed)
        tf.config.threading.set_inter_op_parallelism_threads(1) if not tf.executing_eagerly() else None
        scaler = StandardScaler().fit(X)
        self.mean_, self.scale_ = scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)
        Z = (X - self.mean_) / self.scale_
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        layers = [keras.Input(shape=(X.shape[1],))]
        for units in self.hidden:
            layers.append(keras.layers.Dense(units, activation="relu", kernel_regularizer=reg))
            if self.dropout:
                layers.append(keras.layers.Dropout(self.dropout, seed=seed))
        layers.append(keras.layers.Dense(1, activation="sigmoid"))
        model = keras.Sequential(layers)
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse")
        history = model.fit(Z, y, sample_weight=sample_weight, epochs=self.epochs, batch_size=self.batch_size,
                            shuffle=True, verbose=self.verbose)
        self.loss_curve_ = [float(v) for v in history.history["loss"]]
        self.model_ = model
        self.numpy_ = NumpyMLP.from_keras(model, self.mean_, self.scale_)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return self.numpy_.predict(X).astype(np.float64)

    def predict_keras(self, X):
        Z = (np.asarray(X, np.float32) - self.mean_) / self.scale_
        return self.model_.predict(Z, verbose=0).ravel()

    def __getstate__(self):  # pickles without the Keras model: serving needs numpy only
        state = self.__dict__.copy()
        state.pop("model_", None)
        return state


def candidate_scorers(random_state: int = 0) -> dict[str, BaseEstimator]:
    """The scorers compared in ``ml.compare`` (name -> unfitted estimator)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor
    from sklearn.svm import LinearSVR

    return {
        "linear_regression": ClippedRegressor(LinearRegression()),
        "linear_svr": ClippedRegressor(LinearSVR(C=0.1, epsilon=0.0, loss="squared_epsilon_insensitive",
                                                 dual=False, max_iter=5000, random_state=random_state)),
        # A calibrated joint cosine: a linear function of the cosine alone, so it ranks as the joint space.
        "calibrated_cosine": ClippedRegressor(LinearRegression(), columns=(0,)),
        "keras_mlp": KerasMLP(hidden=(256, 64), epochs=15, random_state=random_state),
        "sklearn_mlp": ClippedRegressor(MLPRegressor(hidden_layer_sizes=(128,), alpha=1e-2, max_iter=60,
                                                     early_stopping=True, random_state=random_state)),
    }
