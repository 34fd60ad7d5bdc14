"""Research: grouped CV of the listwise network against seed-averaged ensembles of it, on the
training data of a database built by ``make demo`` (``research.data``: the product's own).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_ensemble --members 1,3,5

Result on the full build of 2026-11-28 (docs/model.md, "Tried and not kept"): no retrieval gain
(R@1 0.559 alone, 0.558 with 3, 0.557 with 5), tau-c up (0.559 -> 0.572), 5x the training time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ml.compare import grouped_cv
from ml.listwise import NumpyListMLP
from ml.scorers import KerasListwiseMLP
from ml.train import default_mapper
from research.data import append_result, load, whitened
from service.config import load_settings


def average_networks(nets: list[NumpyListMLP]) -> NumpyListMLP:
    """One network giving the mean of ``nets``' outputs: hidden layers side by side (the first
    concatenated, deeper ones block-diagonal), the output layer and skip divided by the count."""
    from scipy.linalg import block_diag

    k, first = len(nets), nets[0]
    weights = [np.concatenate([n.weights[0] for n in nets], axis=1)]
    weights += [block_diag(*[n.weights[i] for n in nets]) for i in range(1, len(first.weights) - 1)]
    weights.append(np.concatenate([n.weights[-1] for n in nets], axis=0) / k)
    biases = [np.concatenate([n.biases[i] for n in nets]) for i in range(len(first.biases) - 1)]
    biases.append(np.mean([n.biases[-1] for n in nets], axis=0))
    return NumpyListMLP(weights, biases, np.mean([n.skip for n in nets], axis=0), first.mean, first.scale,
                        first.lo, first.hi)


class SeedEnsemble(KerasListwiseMLP):
    """``n_members`` networks from seeds ``random_state + i``, served as their average."""

    def __init__(self, n_members: int = 5, random_state: int | None = 0):
        super().__init__(random_state=random_state)
        self.n_members = n_members

    def fit(self, X, y, rated=None) -> SeedEnsemble:
        seed = self.random_state or 0
        nets = [KerasListwiseMLP(random_state=seed + i).fit(X, y, rated=rated).numpy_ for i in range(self.n_members)]
        self.numpy_ = average_networks(nets)
        return self


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.cv_ensemble", description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", default="1,5", help="ensemble sizes to compare, comma-separated")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON lines appended here (default: <WITHSENSE_DATA_DIR>/research/cv_ensemble.jsonl)")
    args = ap.parse_args(argv)
    settings = load_settings()
    t0 = time.time()
    data = load(settings)
    data = whitened(data)
    scorers = {f"listwise_mlp_x{k}": SeedEnsemble(n_members=int(k)) for k in args.members.split(",")}
    cv, _ = grouped_cv(data, default_mapper(data), scorers)
    line = {"seconds": round(time.time() - t0), "cv": cv}
    append_result(settings, "cv_ensemble", line, args.out)


if __name__ == "__main__":
    main()
