"""The listwise reranker as the service runs it: features of (query, candidate) pairs *within a
shortlist*, the network that scores them in numpy, and the query-level signals the calibration reads.

The joint cosine already ranks the shortlist; a reranker helps only with information the cosine
lacks. Per candidate photo (computed once per photo at publish or upload time, :class:`PhotoEvidence`):

* ``joint`` - its vector in the (whitened) joint space, what the SQL shortlist compares;
* ``bridge`` - ImageNet class probabilities times the label phrases' text vectors (no training);
* ``label_ids`` / ``label_probs`` - its top ImageNet labels and their probabilities;
* ``mapper_norm`` - the length of the kernel ridge output before normalising: it fades as the
  photo gets farther from every training photo, telling the scorer how far to trust ``joint``.

Per query: its ``specificity``, the best cosine to any training caption (a query unlike every
caption is one the joint space knows little about). :func:`list_features` then gives each
candidate the columns of :data:`FEATURES`: the three cosines, the distance signal, each cosine
relative to the rest of the shortlist (minus the best, z-score) and the specificity.

Scores come from :class:`NumpyListMLP`, the trained network's weights in numpy. The model families
that are fitted and compared by grouped CV live in ``ml.scorers``; this module imports numpy only,
so a web worker never loads scikit-learn (~75 MB and ~0.85 s of imports) or TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.features import photo_bridges, softmax, split_features

FEATURES = (
    "cos_joint", "cos_bridge", "label_evidence", "mapper_norm",
    "joint_minus_best", "bridge_minus_best", "evidence_minus_best",
    "joint_z", "bridge_z", "evidence_z",
    "specificity",
)
TOP_LABELS = 5


@dataclass
class PhotoEvidence:
    """What the reranker reads about each photo, stored per photo for the active ranker."""

    joint: np.ndarray        # (n, d) unit vectors, the shortlist's space
    bridge: np.ndarray       # (n, d) unit vectors
    label_ids: np.ndarray    # (n, TOP_LABELS) int
    label_probs: np.ndarray  # (n, TOP_LABELS) float32
    mapper_norm: np.ndarray  # (n,) float32

    def take(self, index) -> PhotoEvidence:
        return PhotoEvidence(self.joint[index], self.bridge[index], self.label_ids[index], self.label_probs[index],
                             self.mapper_norm[index])


def top_labels(probabilities: np.ndarray, k: int = TOP_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes of each row and their probabilities, most probable first."""
    p = np.asarray(probabilities, np.float32)
    ids = np.argsort(-p, axis=1)[:, :k]
    return ids.astype(np.int32), np.take_along_axis(p, ids, axis=1)


def photo_evidence(mapper, features: np.ndarray, label_vectors: np.ndarray, bridge_kind: str = "imagenet_labels") -> PhotoEvidence:
    """Everything the reranker reads about photos, from their raw features and a fitted mapper."""
    features = np.asarray(features, np.float32)
    n = len(features)
    bridge = photo_bridges(features, label_vectors, bridge_kind)
    if bridge_kind == "imagenet_labels":
        ids, probs = top_labels(softmax(split_features(features)[1]))
    else:  # CLIP: no ImageNet labels; the evidence columns are zero
        ids, probs = np.zeros((n, 5), np.int32), np.zeros((n, 5), np.float32)
    inner = getattr(mapper, "mapper_", mapper)
    norm = (np.linalg.norm(inner.predict_raw(features), axis=1) if hasattr(inner, "predict_raw")
            else np.ones(n)).astype(np.float32)
    return PhotoEvidence(mapper.transform(features), bridge, ids, probs, norm)


def specificity(queries: np.ndarray, captions: np.ndarray, exclude: np.ndarray | None = None,
                caption_group: np.ndarray | None = None) -> np.ndarray:
    """Best cosine of each query to any of ``captions``; with ``exclude`` (a group per query) the
    captions of the query's own group are skipped (a training caption must not find itself)."""
    q = np.asarray(queries, np.float32)
    c = np.asarray(captions, np.float32)
    out = np.full(len(q), -1.0, np.float32)
    if not len(c):
        return out
    for s in range(0, len(q), 2048):
        S = q[s:s + 2048] @ c.T
        if exclude is not None:
            S[exclude[s:s + 2048, None] == caption_group[None, :]] = -1.0
        out[s:s + 2048] = S.max(axis=1)
    return out


def _relative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x minus the list's best, z-score within the list) along the last axis."""
    sd = x.std(axis=-1, keepdims=True)
    return x - x.max(axis=-1, keepdims=True), (x - x.mean(axis=-1, keepdims=True)) / np.maximum(sd, 1e-6)


@dataclass
class ShortlistCosines:
    """What the reranker reads about one query's k candidates when the shortlist (in SQL) has
    already compared the query with their vectors: the serving path, where no vector travels."""

    cos_joint: np.ndarray    # (k,) query . joint
    cos_bridge: np.ndarray   # (k,) query . bridge
    label_ids: np.ndarray    # (k, TOP_LABELS) int
    label_probs: np.ndarray  # (k, TOP_LABELS) float32
    mapper_norm: np.ndarray  # (k,) float32

    @classmethod
    def of(cls, query: np.ndarray, photos: PhotoEvidence) -> ShortlistCosines:
        """The same from the photos' vectors (training and evaluation hold them in memory)."""
        q = np.asarray(query, np.float32).reshape(-1)
        return cls(photos.joint @ q, photos.bridge @ q, photos.label_ids, photos.label_probs, photos.mapper_norm)


def _label_evidence(label_cos: np.ndarray, ids: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per candidate, its top labels' cosines to the query weighted by their probabilities:
    ``label_cos`` (n, n_labels), ``ids``/``probs`` (n, g, k) -> (n, g)."""
    if label_cos.shape[1] == 0:  # an encoder without ImageNet classes (CLIP): no label evidence
        return np.zeros(ids.shape[:2], np.float32)
    n = len(label_cos)
    return (np.take_along_axis(label_cos[:, None, :], ids.reshape(n, -1)[:, None, :], axis=2)
            .reshape(ids.shape) * probs).sum(-1)


def _assemble(cj: np.ndarray, cb: np.ndarray, ev: np.ndarray, mapper_norm: np.ndarray,
              query_specificity: np.ndarray) -> np.ndarray:
    cols = [cj, cb, ev, mapper_norm]
    rel = [_relative(x) for x in (cj, cb, ev)]
    cols += [r[0] for r in rel] + [r[1] for r in rel]
    cols.append(np.broadcast_to(np.asarray(query_specificity, np.float32)[:, None], cj.shape))
    return np.stack(cols, axis=-1).astype(np.float32)


def list_features(queries: np.ndarray, candidates: np.ndarray, photos: PhotoEvidence, label_vectors: np.ndarray,
                  query_specificity: np.ndarray) -> np.ndarray:
    """``(n_lists, list_size, len(FEATURES))`` for queries ``(n, d)`` and candidate photo indices
    ``(n, list_size)`` into ``photos``. All vectors live in the same (whitened) text space."""
    q = np.asarray(queries, np.float32)
    cand = np.asarray(candidates)
    cj = np.einsum("nd,ngd->ng", q, photos.joint[cand])
    cb = np.einsum("nd,ngd->ng", q, photos.bridge[cand])
    label_cos = q @ np.asarray(label_vectors, np.float32).T  # (n, 1000)
    ev = _label_evidence(label_cos, photos.label_ids[cand], photos.label_probs[cand])
    return _assemble(cj, cb, ev, photos.mapper_norm[cand], query_specificity)


def shortlist_features(query: np.ndarray, candidates: ShortlistCosines, label_vectors: np.ndarray,
                       query_specificity: float) -> np.ndarray:
    """``(1, k, len(FEATURES))``: :func:`list_features` of one query from its candidates' cosines."""
    q = np.asarray(query, np.float32).reshape(1, -1)
    label_cos = q @ np.asarray(label_vectors, np.float32).T
    ev = _label_evidence(label_cos, _one_list(candidates.label_ids, np.int64), _one_list(candidates.label_probs))
    return _assemble(_one_list(candidates.cos_joint), _one_list(candidates.cos_bridge), ev,
                     _one_list(candidates.mapper_norm), np.array([query_specificity], np.float32))


def _one_list(x, dtype=np.float32) -> np.ndarray:
    return np.asarray(x, dtype)[None]


def clip_to(X: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
    """Features clipped to the range seen in training. A photo unlike every training photo (its
    ``mapper_norm`` near 0, label evidence of classes never seen) must not be scored by a model's
    extrapolation beyond the data: that sank an uploaded photo of a cup of coffee to the bottom."""
    X = np.asarray(X, np.float64)
    return X if lo is None else np.clip(X, lo, hi)


class JointCosine:
    """The joint cosine itself as the score, no reranking (``train --no-cv`` and the test fixtures
    serve it): ``ml.scorers.CosineScorer`` fitted, kept without scikit-learn."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float32)[..., FEATURES.index("cos_joint")].astype(np.float64)


class NumpyListMLP:
    """The listwise network in numpy: ``relu`` hidden layers plus a linear skip from the input."""

    def __init__(self, weights, biases, skip, mean, scale, lo=None, hi=None):
        self.weights = [np.asarray(w, np.float64) for w in weights]
        self.biases = [np.asarray(b, np.float64) for b in biases]
        self.skip = np.asarray(skip, np.float64)
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.lo = None if lo is None else np.asarray(lo, np.float64)
        self.hi = None if hi is None else np.asarray(hi, np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = (clip_to(X, self.lo, self.hi) - self.mean) / self.scale
        h = z
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        return (h @ self.weights[-1] + self.biases[-1] + z @ self.skip)[..., 0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale, "skip": self.skip, "n_layers": np.array(len(self.weights))}
        if self.lo is not None:
            out["lo"], out["hi"] = self.lo, self.hi
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"W{i}"], out[f"b{i}"] = w, b
        return out

    @classmethod
    def mean_of(cls, nets: list[NumpyListMLP]) -> NumpyListMLP:
        """One network whose output is the mean of ``nets``' (each standardised and clipped by its
        own training data, the grouped CV's fold networks): each member's standardisation folded
        into its first layer, hidden layers side by side (the first concatenated, deeper ones
        block-diagonal), output layer and skip divided by the count. Inputs are clipped to the
        range every member saw (the intersection), the one place it can differ from the members'
        mean: for a feature beyond some member's range but inside another's."""
        k = len(nets)
        if k == 1:
            return nets[0]
        depth = len(nets[0].weights)
        first_w, first_b, skip, offset = [], [], np.zeros_like(nets[0].skip), 0.0
        for n in nets:  # z = (x - mean) / scale  ->  x @ (W / scale) - (mean / scale) @ W
            inv = 1.0 / n.scale
            first_w.append(n.weights[0] * inv[:, None])
            first_b.append(n.biases[0] - (n.mean * inv) @ n.weights[0])
            skip += n.skip * inv[:, None] / k
            offset -= float(((n.mean * inv) @ n.skip).ravel()[0]) / k
        weights = [np.concatenate(first_w, axis=1)]
        for i in range(1, depth - 1):
            blocks = [n.weights[i] for n in nets]
            w = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
            r = c = 0
            for b in blocks:
                w[r:r + b.shape[0], c:c + b.shape[1]] = b
                r, c = r + b.shape[0], c + b.shape[1]
            weights.append(w)
        weights.append(np.concatenate([n.weights[-1] for n in nets], axis=0) / k)
        biases = [np.concatenate(first_b)] + [np.concatenate([n.biases[i] for n in nets]) for i in range(1, depth - 1)]
        biases.append(np.mean([n.biases[-1] for n in nets], axis=0) + offset)
        width = len(nets[0].mean)
        bounded = all(n.lo is not None for n in nets)
        lo = np.max([n.lo for n in nets], axis=0) if bounded else None
        hi = np.min([n.hi for n in nets], axis=0) if bounded else None
        return cls(weights, biases, skip, np.zeros(width), np.ones(width), lo, hi)

    def plus_feature(self, column: int, weight: float) -> NumpyListMLP:
        """The same network plus ``weight`` times input ``column`` (clipped as every input is), put
        in the linear skip: ``ml.blend``'s served order, in the same arrays and file format."""
        skip, last = self.skip.copy(), self.biases[-1].copy()
        skip[column] += weight * self.scale[column]  # z * scale + mean is the (clipped) input
        last += weight * self.mean[column]
        return NumpyListMLP(self.weights, [*self.biases[:-1], last], skip, self.mean, self.scale, self.lo, self.hi)

    @classmethod
    def from_arrays(cls, a) -> NumpyListMLP:
        n = int(a["n_layers"])
        bounds = (a["lo"], a["hi"]) if "lo" in a else (None, None)
        return cls([a[f"W{i}"] for i in range(n)], [a[f"b{i}"] for i in range(n)], a["skip"], a["mean"], a["scale"],
                   *bounds)


# Per query, from its shortlist's features (ml.listwise.FEATURES): how well anything could fit it.
# "specificity>0.45" is the specificity's excess over 0.45 (a hinge): below it the queries nothing
# fits (sentences p95 0.47, random strings 0.29), above it the rated pairs (p5 0.38, median 0.55),
# where specificity says less. The knot was chosen by grouped CV (docs/model.md). "best_joint" is
# the photo side: the shortlist's best joint cosine, low for a caption-like scene no photo shows;
# it is a scalar per candidate, so the SQL that returns cosines can serve it.
QUERY_SIGNALS = ("specificity", "specificity>0.45", "best_joint")


def signals_from(base: np.ndarray, base_names, signals=QUERY_SIGNALS) -> np.ndarray:
    """``signals`` from columns ``base`` named ``base_names`` (``specificity``, ``best_joint``);
    ``name>t`` is ``max(name - t, 0)``."""
    base = np.asarray(base, np.float64).reshape(len(base), len(base_names))
    cols = []
    for s in signals:
        name, _, knot = s.partition(">")
        col = base[:, list(base_names).index(name)]
        cols.append(np.maximum(col - float(knot), 0.0) if knot else col)
    return np.stack(cols, axis=-1) if cols else np.zeros((len(base), 0))


def query_signals(X: np.ndarray, feature_names, signals=QUERY_SIGNALS) -> np.ndarray:
    """``(n_lists, len(signals))`` from list features ``X`` ``(n_lists, list_size, n_features)``:
    ``specificity`` (the query's best cosine to a training caption, the same in every row),
    ``best_joint`` (the shortlist's best joint cosine), and hinges of them (:func:`signals_from`)."""
    X = np.asarray(X)
    names = list(feature_names)
    base = np.column_stack([X[:, 0, names.index("specificity")], X[..., names.index("cos_joint")].max(axis=-1)])
    return signals_from(base, ("specificity", "best_joint"), signals)
