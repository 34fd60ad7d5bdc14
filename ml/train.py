"""Training: the joint mapper on captions, the scorer on ratings + captions, the comparison.

>>> result = train(data)                       # data: ml.data.TrainingData
>>> save_artifacts(result, "var/models/v1")
>>> ranker = load_artifacts("var/models/v1")   # ml.ranker.Ranker, numpy only
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from sklearn.base import clone

from ml.compare import fit_mapper, grouped_cv, oof_joint, pick_best, scorer_training_set
from ml.data import TrainingData
from ml.joint import BridgeMixMapper, KernelRidgeMapper
from ml.ranker import Ranker
from ml.scorer import KerasMLP, candidate_scorers


def default_mapper(data: TrainingData):
    """The mapper chosen in docs/model.md by grouped CV: RBF kernel ridge on the Lite0 + Lite2
    flip-averaged features (``ml.features.ConcatImageEncoder.default()``), leaning on the label
    bridge where a photo is unlike every training photo (``BridgeMixMapper``, beta 0.2)."""
    return BridgeMixMapper(KernelRidgeMapper(alpha=1.0, gamma=1.0), beta=0.2,
                           label_vectors=data.label_vectors, bridge_kind=data.bridge_kind)


@dataclass
class TrainResult:
    ranker: Ranker
    mapper: object
    scorer: object
    scorer_name: str
    metrics: dict = field(default_factory=dict)  # {"cv": {name: {...}}, "chosen": name, ...}


def train(
    data: TrainingData,
    *,
    random_state: int = 0,
    progress: bool = True,
    mapper=None,
    scorers: dict | None = None,
    n_splits: int = 5,
    run_cv: bool = True,
) -> TrainResult:
    """Fit mapper and scorers, compare the scorers by grouped CV, refit the best on all data.

    ``mapper`` defaults to :func:`default_mapper`; ``scorers`` to ``candidate_scorers()``.
    With ``run_cv=False`` the first scorer is fitted without comparison (quick runs, tests).
    """
    t0 = time.time()
    mapper = default_mapper(data) if mapper is None else mapper
    scorers = candidate_scorers(random_state) if scorers is None else scorers
    metrics: dict = {"n_photos": int(len(data.photo_keys)), "n_captions": int(len(data.caption_photo)),
                     "n_pairs": int(len(data.pair_photo)), "mapper": repr(mapper)}
    if run_cv and len(scorers) > 1:
        cv = grouped_cv(data, mapper, scorers, n_splits=n_splits, random_state=random_state, progress=progress)
        name = pick_best(cv)
        metrics["cv"] = cv
        metrics["selection_rule"] = "highest CV R@1 + R@5; ties within 0.005 -> highest tau-c"
    else:
        name = next(iter(scorers))
    metrics["chosen"] = name
    if progress:
        print(f"chosen scorer: {name}; fitting on all data", flush=True)
    joint_oof = oof_joint(mapper, data, 3, random_state)
    X, y = scorer_training_set(data, joint_oof, random_state=random_state)
    scorer = clone(scorers[name]).fit(X, y)
    final_mapper = fit_mapper(mapper, data)
    serving_scorer = scorer.numpy_ if isinstance(scorer, KerasMLP) else scorer
    ranker = Ranker(final_mapper, serving_scorer, data.label_vectors, dims=data.caption_vectors.shape[1],
                    bridge_kind=data.bridge_kind, name=f"{type(final_mapper).__name__}+{name}")
    metrics["train_seconds"] = round(time.time() - t0, 1)
    return TrainResult(ranker=ranker, mapper=final_mapper, scorer=scorer, scorer_name=name, metrics=metrics)


def save_artifacts(result: TrainResult, directory: str | Path) -> Path:
    """Write the ranker (mapper .npz, scorer, label vectors, ranker.json) and metrics.json."""
    directory = result.ranker.save(directory)
    (directory / "metrics.json").write_text(json.dumps({"scorer": result.scorer_name, **result.metrics}, indent=2, default=str))
    return directory


def load_artifacts(directory: str | Path) -> Ranker:
    """The serving :class:`~ml.ranker.Ranker` (numpy only, no TensorFlow)."""
    return Ranker.load(directory)
