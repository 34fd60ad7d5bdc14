"""The ranker the service loads: text transform + joint mapper + listwise reranker + calibration.

Serving needs numpy only (``ml.fitted``, ``ml.listwise``; scikit-learn only to unpickle a linear
reranker, should one win the CV), never TensorFlow or torch.

>>> ranker = Ranker.load(directory)
>>> evidence = ranker.photo_evidence(features)   # per photo, stored at publish / upload time
>>> q = ranker.transform_query(text_vector)      # before the SQL shortlist (whitened text space)
>>> scores = ranker.score(q, evidence.take(shortlist))   # (k,) in [0, 1], from the photos' vectors
>>> scores = ranker.score(q, cosines)   # the same from ShortlistCosines, as SQL computed them (serving)

``score`` is the calibrated probability that experts say the description fits the photo
(``ml.calibration``), computed from the reranker's raw score for each candidate *within the
shortlist* (its features are relative to the other candidates, ``ml.listwise``).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ml.fitted import PlattMap, QueryPlattMap, load_calibration, load_mapper, load_text_transform
from ml.listwise import (
    FEATURES,
    NumpyListMLP,
    PhotoEvidence,
    ShortlistCosines,
    photo_evidence,
    query_signals,
    shortlist_features,
    specificity,
)
from ml.multilingual import QueryBridge, load_query_bridges, save_query_bridges

MANIFEST = "ranker.json"
# 3: the calibration may read query-level signals (calibration.json kind "query_platt"), which code
# for format 2 would ignore. Format 2 (plain Platt) still loads.
FORMAT = 3
READS = (2, 3)


class _ArtifactUnpickler(pickle.Unpickler):
    """Reads scorers pickled before the model families moved from ``ml.listwise`` to ``ml.scorers``
    (2026-12), which published libraries keep in their artifact folders."""

    MOVED = {("ml.listwise", n): "ml.scorers" for n in (
        "KerasListwiseMLP", "PointwiseRegressor", "TunedPointwise", "CosineScorer")}

    def find_class(self, module, name):
        return super().find_class(self.MOVED.get((module, name), module), name)


class Ranker:
    def __init__(self, text_transform, mapper, scorer, calibrator: PlattMap | QueryPlattMap, label_vectors: np.ndarray,
                 reference_captions: np.ndarray, *, dims: int, bridge_kind: str = "imagenet_labels",
                 name: str = "ranker", cos_weight: float = 0.0):
        self.dims = dims  # the text space's dimension (= the text encoder's)
        self.text_transform = text_transform
        self._mapper = mapper  # or the path to load it from (``mapper``)
        self.scorer = scorer
        self.calibrator = calibrator
        self.label_vectors = np.asarray(label_vectors, np.float32)  # in the transformed space
        self.reference_captions = np.asarray(reference_captions, np.float32)  # transformed, for specificity
        self.bridge_kind = bridge_kind
        self.name = name
        # The joint cosine's share folded into the scorer (ml.blend): a route that orders by another
        # share (``score``'s ``cos_share``) takes it out again. 0 for rankers saved before it was kept.
        self.cos_weight = cos_weight
        # Other text encoders' spaces mapped into this ranker's (ml.multilingual: USE for queries
        # in other languages), by encoder name; fitted after training, saved and loaded with it.
        self.query_bridges: dict[str, QueryBridge] = {}

    @property
    def mapper(self):
        """The photo side, loaded on first use: a web worker scores shortlists from the cosines SQL
        computed and never maps a photo, and a loaded kernel ridge holds its ~1,800 training photos'
        features (~35 MB)."""
        if isinstance(self._mapper, Path):
            self._mapper = load_mapper(self._mapper)
        return self._mapper

    def transform_query(self, query_vector: np.ndarray) -> np.ndarray:
        """A text encoder vector (or rows of them) into the ranker's space, where SQL compares."""
        q = np.asarray(query_vector, np.float32)
        return self.text_transform.transform(q.reshape(1, -1))[0] if q.ndim == 1 else self.text_transform.transform(q)

    def photo_vectors(self, photo_features: np.ndarray) -> np.ndarray:
        """Photos' joint-space vectors (what the shortlist and similar-photo search compare)."""
        return self.mapper.transform(photo_features)

    def photo_evidence(self, photo_features: np.ndarray) -> PhotoEvidence:
        return photo_evidence(self.mapper, photo_features, self.label_vectors, self.bridge_kind)

    def _features(self, query_vector: np.ndarray, candidates: PhotoEvidence | ShortlistCosines) -> np.ndarray:
        q = np.asarray(query_vector, np.float32).reshape(1, -1)
        if isinstance(candidates, PhotoEvidence):
            candidates = ShortlistCosines.of(q, candidates)
        spec = specificity(q, self.reference_captions)[0]
        return shortlist_features(q, candidates, self.label_vectors, spec)

    def raw_scores(self, query_vector: np.ndarray, candidates: PhotoEvidence | ShortlistCosines) -> np.ndarray:
        """The reranker's uncalibrated scores of one (transformed) query against its shortlist."""
        return np.asarray(self.scorer.predict(self._features(query_vector, candidates)), np.float64)[0]

    def score(self, query_vector: np.ndarray, candidates: PhotoEvidence | ShortlistCosines, *,
              cos_share: float | None = None) -> np.ndarray:
        """Probabilities in [0, 1] that the description fits, for one transformed query and k photos:
        the calibration of the reranker's score and of how well anything could fit the query
        (``ml.calibration.QueryCalibrator``; the order within the query is the score's). The photos
        come as their vectors (training, evaluation) or as the shortlist's cosines (a search).

        ``cos_share``: the joint cosine's share in this query's order, where its route differs from
        the served one (``ml.blend``; a bridged query's, ``QueryBridge.cos_share``). The score then
        moves by ``(cos_share - cos_weight) * (cos_joint - best_joint)``: the order becomes
        ``network + cos_share * cos_joint``, and the candidate with the shortlist's best joint cosine
        keeps the score the calibration gives it, the shift being 0 there and the same function
        of each candidate's cosine for every query."""
        if len(candidates.mapper_norm) == 0:
            return np.zeros(0)
        X = self._features(query_vector, candidates)
        raw = np.asarray(self.scorer.predict(X), np.float64)[0]
        if cos_share is not None and cos_share != self.cos_weight:
            cos = X[0, :, FEATURES.index("cos_joint")].astype(np.float64)
            raw = raw + (cos_share - self.cos_weight) * (cos - cos.max())
        query = query_signals(X, FEATURES, getattr(self.calibrator, "signals", ()))[0]
        return np.clip(self.calibrator.predict(raw, query), 0.0, 1.0)

    @staticmethod
    def save_scorer(directory: Path, scorer, calibrator: PlattMap | QueryPlattMap) -> str:
        """A reranker and its calibration into ``directory``; returns the scorer's file name."""
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(scorer, NumpyListMLP):
            scorer_file = "scorer_mlp.npz"
            np.savez(directory / scorer_file, **scorer.to_arrays())
        else:
            scorer_file = "scorer.pkl"
            with open(directory / scorer_file, "wb") as f:
                pickle.dump(scorer, f)
        (directory / "calibration.json").write_text(json.dumps(calibrator.to_dict()))
        return scorer_file

    @staticmethod
    def _load_scorer(directory: Path, scorer_file: str):
        path = directory / scorer_file
        if path.suffix == ".npz":
            return NumpyListMLP.from_arrays(np.load(path))
        with open(path, "rb") as f:
            return _ArtifactUnpickler(f).load()  # our own artifact, written by save_scorer()

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.mapper.save(directory / "mapper.npz")
        scorer_file = self.save_scorer(directory, self.scorer, self.calibrator)
        np.savez(directory / "text_transform.npz", **self.text_transform.to_arrays())
        save_query_bridges(directory, self.query_bridges)
        np.save(directory / "label_vectors.npy", self.label_vectors)
        # float16 halves the file; a specificity off by 1e-3 changes nothing.
        np.save(directory / "reference_captions.npy", self.reference_captions.astype(np.float16))
        (directory / MANIFEST).write_text(json.dumps({
            "format": FORMAT, "name": self.name, "dims": self.dims, "bridge_kind": self.bridge_kind,
            "scorer_file": scorer_file, "cos_weight": self.cos_weight}))
        return directory

    @classmethod
    def load(cls, directory: str | Path, scorer: str | None = None) -> Ranker:
        """The ranker saved in ``directory``; ``scorer`` names another family saved beside the
        chosen one (``alternatives/<name>/``, for side-by-side evaluations)."""
        directory = Path(directory)
        meta = json.loads((directory / MANIFEST).read_text())
        if meta.get("format") not in READS:
            raise ValueError(f"{directory}: a ranker of format {meta.get('format', 1)}, this code reads {READS}: "
                             "run `withsense train`")
        scorer_dir = directory if scorer is None else directory / "alternatives" / scorer
        scorer_file = meta["scorer_file"] if scorer is None else next(
            f.name for f in scorer_dir.iterdir() if f.name.startswith("scorer"))
        calibrator = load_calibration(json.loads((scorer_dir / "calibration.json").read_text()))
        text_transform = load_text_transform(np.load(directory / "text_transform.npz"))
        ranker = cls(text_transform, directory / "mapper.npz", cls._load_scorer(scorer_dir, scorer_file),
                     calibrator, np.load(directory / "label_vectors.npy"),
                     np.load(directory / "reference_captions.npy").astype(np.float32), dims=meta["dims"],
                     bridge_kind=meta["bridge_kind"], name=meta["name"] if scorer is None else f"{meta['name']}[{scorer}]",
                     cos_weight=meta.get("cos_weight", 0.0) if scorer is None else 0.0)
        ranker.query_bridges = load_query_bridges(directory)
        return ranker
