"""The reranker's model families, fitted on lists of candidates and compared by grouped CV.

Each takes ``X`` of shape ``(n_lists, list_size, n_features)`` (``ml.listwise.FEATURES``) and gives
raw scores of the same leading shape: :class:`KerasListwiseMLP` minimises ListNet's cross-entropy
over each list (the true photo must outrank its neighbours); :class:`PointwiseRegressor` fits any
scikit-learn regressor to each candidate's target on the same features; :class:`TunedPointwise`
chooses that regressor's parameters by an inner CV. ``serving()`` gives what the ranker saves: the
network as ``ml.listwise.NumpyListMLP`` and the cosine as ``ml.listwise.JointCosine`` (numpy only),
the linear families pickled (loading those needs scikit-learn).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone

from ml.listwise import FEATURES, JointCosine, NumpyListMLP, clip_to

# How sharply a list's graded targets turn into the distribution the listwise loss matches
# (:func:`target_distribution`); chosen with the rating weight by grouped CV (docs/model.md).
TARGET_TEMPERATURE = 0.25
# The weight of a rated text's list against a caption's list in the loss, and of the network's
# pointwise term, chosen by grouped CV (docs/model.md, "Ratings and votes in the loss").
RATED_WEIGHT = 0.3
POINTWISE_WEIGHT = 0.0


def as_targets(y, shape: tuple[int, int]) -> np.ndarray:
    """Graded targets ``(n_lists, list_size)``: as given, or one-hot from the true photo's index."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(np.float32)
    target = np.zeros(shape, np.float32)
    target[np.arange(shape[0]), y.ravel().astype(np.int64)] = 1.0
    return target


def target_distribution(target: np.ndarray, temperature: float = TARGET_TEMPERATURE) -> np.ndarray:
    """ListNet's target distribution over each list: ``exp(t / T) - 1``, normalised. The softmax of
    the targets, except that a candidate with target 0 gets no mass (a plain softmax would ask the
    ~95 random photos of a list for 1/4 of the mass at T = 0.25, flattening the scores); a one-hot
    list (a caption and its photo) stays one-hot."""
    g = np.expm1(np.asarray(target, np.float64) / temperature)
    return (g / np.maximum(g.sum(axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def list_weights(n: int, rated, rated_weight: float) -> np.ndarray:
    """Each list's weight in the loss: 1 for caption lists, ``rated_weight`` for rated ones."""
    rated = np.zeros(n, bool) if rated is None else np.asarray(rated, bool)
    return np.where(rated, rated_weight, 1.0).astype(np.float32)


class KerasListwiseMLP(BaseEstimator):
    """Two hidden ReLU layers plus a linear skip, trained with ListNet: softmax cross-entropy of
    each list's scores against its targets' distribution (:func:`target_distribution`).

    ``fit(X, y, rated=None)``: ``X`` ``(n_lists, list_size, n_features)``, ``y`` graded targets
    ``(n_lists, list_size)`` or the index of the true photo in each list; ``rated`` marks the lists
    of rated pairs, weighted ``rated_weight`` in the loss (0 leaves them out). TensorFlow is imported
    inside ``fit`` only; ``numpy_`` (:class:`NumpyListMLP`) is what ``predict`` and the service use.
    """

    def __init__(self, hidden=(32, 16), epochs: int = 12, batch_size: int = 64, learning_rate: float = 2e-3,
                 l2: float = 1e-4, random_state: int | None = 0, verbose: int = 0, rated_weight: float = RATED_WEIGHT,
                 temperature: float = TARGET_TEMPERATURE, pointwise_weight: float = POINTWISE_WEIGHT):
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.random_state = random_state
        self.verbose = verbose
        self.rated_weight = rated_weight
        self.temperature = temperature
        self.pointwise_weight = pointwise_weight

    def _loss(self, keras):
        """ListNet's cross-entropy, plus ``pointwise_weight`` times each candidate's logistic loss
        against its target. The softmax alone ignores a list's offset, so scores of different
        queries are not comparable; the pointwise term anchors them (Kendall's tau against the
        experts compares pairs across queries). ``y_true`` holds the distribution, then the targets."""
        ops, w = keras.ops, self.pointwise_weight

        def loss(y_true, logits):
            n = ops.shape(logits)[-1]
            p, t = y_true[..., :n], y_true[..., n:]
            listnet = -ops.sum(p * ops.log_softmax(logits, axis=-1), axis=-1)
            if not w:
                return listnet
            point = ops.mean(ops.maximum(logits, 0.0) - logits * t + ops.log1p(ops.exp(-ops.abs(logits))), axis=-1)
            return listnet + w * point

        return loss

    def fit(self, X, y, rated=None) -> KerasListwiseMLP:
        import keras  # TensorFlow's C++ log level is set by the entry point (service/cli.py main)

        X = np.asarray(X, np.float32)
        weight = list_weights(len(X), rated, self.rated_weight)
        keep = weight > 0
        T = as_targets(y, X.shape[:2])[keep]
        P = target_distribution(T, self.temperature)
        X, weight = X[keep], weight[keep]
        keras.utils.set_random_seed(0 if self.random_state is None else int(self.random_state))
        flat = X.reshape(-1, X.shape[-1])
        self.lo_, self.hi_ = flat.min(0), flat.max(0)
        self.mean_, self.scale_ = flat.mean(0), np.maximum(flat.std(0), 1e-6)
        Z = (X - self.mean_) / self.scale_
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        inp = keras.Input(shape=(None, X.shape[-1]))
        h = inp
        for units in self.hidden:
            h = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg)(h)
        deep = keras.layers.Dense(1, name="out")(h)
        skip = keras.layers.Dense(1, use_bias=False, name="skip")(inp)
        logits = keras.layers.Reshape((-1,))(keras.layers.Add()([deep, skip]))
        model = keras.Model(inp, logits)
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss=self._loss(keras))
        history = model.fit(Z, np.concatenate([P, T], axis=-1), sample_weight=weight, epochs=self.epochs, batch_size=self.batch_size, shuffle=True,
                            verbose=self.verbose)
        self.loss_curve_ = [float(v) for v in history.history["loss"]]
        self.model_ = model
        dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense" and layer.name != "skip"]
        self.numpy_ = NumpyListMLP([d.get_weights()[0] for d in dense], [d.get_weights()[1] for d in dense],
                                   model.get_layer("skip").get_weights()[0], self.mean_, self.scale_, self.lo_, self.hi_)
        return self

    def predict(self, X) -> np.ndarray:
        return self.numpy_.predict(X)

    def predict_keras(self, X) -> np.ndarray:
        Z = (clip_to(X, self.lo_, self.hi_).astype(np.float32) - self.mean_) / self.scale_
        return np.asarray(self.model_.predict(Z, verbose=0))

    def serving(self):
        return self.numpy_

    def __getstate__(self):  # pickles without the Keras model: serving needs numpy only
        state = self.__dict__.copy()
        state.pop("model_", None)
        return state


class PointwiseRegressor(BaseEstimator):
    """A scikit-learn regressor fitted to each candidate's target (1/0 for "is this the true photo"
    of a caption list, the graded target in a rated list) on every candidate of every list,
    features standardised, each row weighted by its list's weight (:func:`list_weights`). Same
    ``fit(X, y, rated=None)`` / ``predict(X)`` shapes as the network.

    Its output is standardised too, by the mean and spread of its own predictions on the rows it was
    fitted on: the calibration is fitted on out-of-fold scores pooled over the CV's fold models and
    applied to a model refitted on all photos, so they must share a scale. Without it the LinearSVR's
    fold models, each tuned by its own inner CV, gave the rated pairs interquartile ranges from 0.001
    to 0.217, and its calibrated score's tau-c against the experts was 0.220 where each fold's raw
    score had 0.52-0.57 (docs/model.md, "The selection rule reads the served score"). The order
    within a list is unchanged."""

    def __init__(self, estimator=None, columns: tuple | None = None, rated_weight: float = RATED_WEIGHT):
        self.estimator = estimator
        self.columns = columns  # feature names (FEATURES) to use; None = all
        self.rated_weight = rated_weight

    def _cols(self, X: np.ndarray) -> np.ndarray:
        return X if self.columns is None else X[..., [FEATURES.index(c) for c in self.columns]]

    def fit(self, X, y, rated=None) -> PointwiseRegressor:
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = self._cols(np.asarray(X, np.float32))
        target = as_targets(y, X.shape[:2])
        weight = list_weights(len(X), rated, self.rated_weight)
        keep = weight > 0
        X, target, weight = X[keep], target[keep], weight[keep]
        self.lo_, self.hi_ = X.reshape(-1, X.shape[-1]).min(0), X.reshape(-1, X.shape[-1]).max(0)
        self.model_ = make_pipeline(StandardScaler(), clone(self.estimator if self.estimator is not None
                                                             else LinearRegression()))
        rows = np.repeat(weight, X.shape[1])
        step = self.model_.steps[-1][0]
        flat = X.reshape(-1, X.shape[-1])
        self.model_.fit(flat, target.ravel(), **({} if (rows == 1).all() else {f"{step}__sample_weight": rows}))
        fitted = self.model_.predict(flat)
        self.out_mean_, self.out_scale_ = float(fitted.mean()), float(max(fitted.std(), 1e-12))
        return self

    def predict(self, X) -> np.ndarray:
        X = clip_to(self._cols(np.asarray(X)), getattr(self, "lo_", None), getattr(self, "hi_", None))
        raw = self.model_.predict(X.reshape(-1, X.shape[-1])).reshape(X.shape[:-1])
        # a scorer pickled before the output was standardised serves its raw output, as it was calibrated
        return (raw - getattr(self, "out_mean_", 0.0)) / getattr(self, "out_scale_", 1.0)

    def serving(self):
        return self


class TunedPointwise(BaseEstimator):
    """A :class:`PointwiseRegressor` whose estimator's hyper-parameters are chosen by an inner CV
    on the training lists: ``grid`` (a scikit-learn parameter grid of ``estimator``) is scored by
    R@1 + R@5 of the caption lists of held-out lists (the outer selection rule's number), on a
    sample of ``max_lists`` lists (the pointwise fits grow with rows: 100 per list), then the best
    is refitted on that sample. ``best_params_`` and ``inner_cv_`` say what was chosen."""

    def __init__(self, estimator=None, grid: dict | None = None, inner_splits: int = 2, max_lists: int = 1000,
                 rated_weight: float = RATED_WEIGHT, random_state: int = 0):
        self.estimator = estimator
        self.grid = grid
        self.inner_splits = inner_splits
        self.max_lists = max_lists
        self.rated_weight = rated_weight
        self.random_state = random_state

    def fit(self, X, y, rated=None) -> TunedPointwise:
        from sklearn.model_selection import KFold, ParameterGrid

        X = np.asarray(X, np.float32)
        target = as_targets(y, X.shape[:2])
        rated = np.zeros(len(X), bool) if rated is None else np.asarray(rated, bool)
        rng = np.random.default_rng(self.random_state)
        sample = rng.permutation(len(X))[: self.max_lists]
        self.inner_cv_ = []
        for params in ParameterGrid(self.grid or {}):
            est = clone(self.estimator).set_params(**params)
            scores = []
            splits = min(self.inner_splits, len(sample))
            for tr, va in KFold(splits, shuffle=True, random_state=self.random_state).split(sample) if splits > 1 else ():
                tr, va = sample[tr], sample[va]
                va = va[~rated[va]]  # retrieval is measured on caption lists, as the outer CV does
                if not len(va):
                    continue
                m = PointwiseRegressor(est, rated_weight=self.rated_weight).fit(X[tr], target[tr], rated[tr])
                S = m.predict(X[va])
                own = S[np.arange(len(va)), target[va].argmax(axis=1)][:, None]
                rank = (S > own).sum(axis=1) + (S == own).sum(axis=1)  # ties count against: a flat scorer ranks last
                scores.append(float(np.mean(rank <= 1) + np.mean(rank <= 5)))
            # Too few lists to hold any out (a tiny library): every setting ties, the grid's first wins.
            self.inner_cv_.append({**params, "R@1+R@5": round(float(np.mean(scores)), 4) if scores else 0.0})
        best = max(self.inner_cv_, key=lambda r: r["R@1+R@5"])
        self.best_params_ = {k: v for k, v in best.items() if k != "R@1+R@5"}
        # Refitted on the same sample, where the inner CV saw the setting work: refitted on all
        # ~7,000 lists (700,000 rows; liblinear's dual solver warned it had not converged) the
        # SVR scored CV R@1 0.127 in one fold and 0.435 in two; 11 coefficients need no more rows.
        self.model_ = PointwiseRegressor(clone(self.estimator).set_params(**self.best_params_),
                                         rated_weight=self.rated_weight).fit(X[sample], target[sample], rated[sample])
        return self

    def predict(self, X) -> np.ndarray:
        return self.model_.predict(X)

    def serving(self):
        return self.model_


class CosineScorer(BaseEstimator, JointCosine):
    """The reference: the joint cosine itself (no reranking)."""

    def fit(self, X, y=None, rated=None) -> CosineScorer:
        return self

    def serving(self):
        return JointCosine()


# The LinearSVR's inner-CV grid: the regularisation C and the width epsilon of the tube inside which
# an error costs nothing (targets are 0..1, most of them 0). epsilon 0 is median regression, which
# on 99 % zero targets scores every photo 0 (inner R@1+R@5 0.32-0.58 against 1.35 at 0.3 in a first
# run on the demo data); 0.5 fits 0/1 targets with no error at all by a flat 0.5; C 1 fitted slowest.
SVR_GRID = {"C": [0.001, 0.01, 0.1], "epsilon": [0.1, 0.3]}


def candidate_scorers(random_state: int = 0, rated_weight: float = RATED_WEIGHT) -> dict:
    """The three model families compared by grouped CV (``ml.compare``), name -> unfitted estimator.
    The LinearSVR is the study's: epsilon-insensitive (absolute) loss, C and epsilon by inner CV."""
    from sklearn.linear_model import LinearRegression
    from sklearn.svm import LinearSVR

    return {
        "linear_regression": PointwiseRegressor(LinearRegression(), rated_weight=rated_weight),
        "linear_svr": TunedPointwise(LinearSVR(loss="epsilon_insensitive", dual=True, max_iter=2000,
                                               random_state=random_state),
                                     grid=SVR_GRID, rated_weight=rated_weight, random_state=random_state),
        "listwise_mlp": KerasListwiseMLP(random_state=random_state, rated_weight=rated_weight),
    }
