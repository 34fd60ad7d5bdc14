"""Research: ratings and live votes in the ranker's loss (issue 17), by grouped CV on the training
data of a database built by ``make demo`` (``research.data``): captions only against captions plus
the rated texts' graded lists, with the rated lists weighted less or more, with and without the
joint mapper learning from rated pairs that fit, and the three families on the chosen recipe.

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_ratings

Prints one JSON line per run and appends it to ``--out`` (docs/model.md, "Ratings and votes in
the loss").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ml.compare import grouped_cv
from ml.scorers import KerasListwiseMLP, candidate_scorers
from ml.train import default_mapper
from research.data import append_result, load, whitened
from service.config import load_settings


def variants(weights: list[float], pointwise: list[float], families: bool) -> dict:
    out = {f"listwise_mlp/rated_weight={w:g}" + (f"/pointwise={p:g}" if p else ""):
           KerasListwiseMLP(rated_weight=w, pointwise_weight=p) for w in weights for p in pointwise}
    if families:
        out.update({f"{n}/rated_weight=1": est for n, est in candidate_scorers(rated_weight=1.0).items()
                    if n != "listwise_mlp"})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.cv_ratings", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="0,0.3,1,3", help="rated-list weights of the listwise network (0: captions only)")
    ap.add_argument("--pointwise", default="0", help="weights of the network's pointwise term (KerasListwiseMLP)")
    ap.add_argument("--mapper-ratings", default="0,1", help="comma list of 0/1: the mapper without / with rated pairs")
    ap.add_argument("--families", action="store_true", help="also LinearRegression and the tuned LinearSVR (weight 1)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    settings = load_settings()
    data = load(settings)
    data = whitened(data)
    weights = [float(w) for w in args.weights.split(",")]
    for mapper_ratings in (bool(int(m)) for m in args.mapper_ratings.split(",")):
        t0 = time.time()
        cv, _ = grouped_cv(data, default_mapper(data), variants(weights, [float(p) for p in args.pointwise.split(",")], args.families), n_splits=args.folds,
                           mapper_ratings=mapper_ratings, with_negatives=False)
        row = {"mapper_ratings": mapper_ratings, "seconds": round(time.time() - t0),
               "cv": {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()} for k, r in cv.items()}}
        append_result(settings, "cv_ratings", row, args.out)


if __name__ == "__main__":
    main()
