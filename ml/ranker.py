"""The ranker the service loads: joint mapper + scorer + how to make a photo's bridge vector.

Serving needs numpy (and scikit-learn for unpickling a linear scorer), never TensorFlow or torch.

>>> ranker = Ranker.load(directory)
>>> joint, bridge = ranker.photo_side(features)       # (n, d) each; stored per photo at publish time
>>> scores = ranker.score(query_vector, joint[:k], bridge[:k])   # (k,) in [0, 1]

Two views of a photo live in the text space: ``joint`` (the learned mapping, what the SQL
shortlist compares with ``<=>``) and ``bridge`` (made without training: ImageNet class
probabilities times label-phrase vectors for EfficientNet features, or CLIP's own image vector).
The scorer reads the query's cosine with both.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ml.features import photo_bridges
from ml.scorer import NumpyMLP, pair_features

MANIFEST = "ranker.json"


class Ranker:
    def __init__(self, mapper, scorer, label_vectors: np.ndarray, *, dims: int, bridge_kind: str = "imagenet_labels",
                 product: bool = False, name: str = "ranker"):
        self.dims = dims  # the text space's dimension (= the text encoder's)
        self.mapper = mapper
        self.scorer = scorer
        self.label_vectors = np.asarray(label_vectors, np.float32)
        self.bridge_kind = bridge_kind
        self.product = product
        self.name = name

    def photo_vectors(self, photo_features: np.ndarray) -> np.ndarray:
        return self.mapper.transform(photo_features)

    def photo_side(self, photo_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(joint, bridge) unit vectors of photos, from their raw image features."""
        return self.photo_vectors(photo_features), photo_bridges(photo_features, self.label_vectors, self.bridge_kind)

    def score(self, query_vector: np.ndarray, photo_joint: np.ndarray, photo_bridge: np.ndarray) -> np.ndarray:
        """Match scores in [0, 1] for one query against k photos."""
        if len(photo_joint) == 0:
            return np.zeros(0)
        X = pair_features(query_vector, photo_joint, photo_bridge, product=self.product)
        return np.clip(np.asarray(self.scorer.predict(X), dtype=np.float64).ravel(), 0.0, 1.0)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.mapper.save(directory / "mapper.npz")
        if isinstance(self.scorer, NumpyMLP):
            scorer_file = "scorer_mlp.npz"
            np.savez(directory / scorer_file, **self.scorer.to_arrays())
        else:
            scorer_file = "scorer.pkl"
            with open(directory / scorer_file, "wb") as f:
                pickle.dump(self.scorer, f)
        np.save(directory / "label_vectors.npy", self.label_vectors)
        (directory / MANIFEST).write_text(json.dumps({
            "name": self.name, "dims": self.dims, "bridge_kind": self.bridge_kind, "product": self.product,
            "scorer_file": scorer_file}))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Ranker":
        from ml.joint import load_mapper

        directory = Path(directory)
        meta = json.loads((directory / MANIFEST).read_text())
        scorer_path = directory / meta["scorer_file"]
        if scorer_path.suffix == ".npz":
            scorer = NumpyMLP.from_arrays(np.load(scorer_path))
        else:
            with open(scorer_path, "rb") as f:
                scorer = pickle.load(f)  # our own artifact, written by save() above
        return cls(load_mapper(directory / "mapper.npz"), scorer, np.load(directory / "label_vectors.npy"),
                   dims=meta["dims"], bridge_kind=meta["bridge_kind"], product=meta["product"], name=meta["name"])
