"""The ranker the service loads: a joint-space mapper plus a scorer, from one artifact folder.

Serving needs numpy only. ``photo_vectors`` runs at ingest/train time (photo features to the
joint space); ``score`` runs per search on the shortlisted candidates.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.joint import RidgeMapper

MANIFEST = "ranker.json"


@dataclass
class Ranker:
    mapper: object
    dims: int
    name: str = "ridge"

    def photo_vectors(self, image_features: np.ndarray) -> np.ndarray:
        return self.mapper.transform(image_features)

    def score(self, query_vector: np.ndarray, photo_vectors: np.ndarray, image_features: np.ndarray | None = None) -> np.ndarray:
        """Match scores in [0, 1]; with no learned scorer, the cosine in the joint space rescaled."""
        cosine = photo_vectors @ np.asarray(query_vector, dtype=np.float32)
        return np.clip((cosine + 1.0) / 2.0, 0.0, 1.0)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.mapper.save(directory / "mapper.npz")
        (directory / MANIFEST).write_text(json.dumps({"name": self.name, "dims": self.dims, "mapper": "mapper.npz"}))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Ranker":
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST).read_text())
        return cls(mapper=RidgeMapper.load(directory / manifest["mapper"]), dims=manifest["dims"], name=manifest["name"])
