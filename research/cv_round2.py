"""Research only: grouped CV of image views, whitening power and rerankers on the shared files.

    nice -n 5 python scripts/experiments/cv_round2.py --spec lite0,lite2 --power 0.2 --scorers all
Prints one JSON line per run (also appended to <work>/cv_runs.jsonl).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ml.compare import grouped_cv  # noqa: E402
from ml.listwise import candidate_scorers  # noqa: E402
from ml.train import default_mapper  # noqa: E402
from ml.whitening import IdentityText, PartialWhitening  # noqa: E402
from scripts.experiments.research_data import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/ws12")
    ap.add_argument("--spec", default="lite0,lite2")
    ap.add_argument("--power", type=float, default=None)
    ap.add_argument("--scorers", default="none", help="none | all | comma list of names")
    ap.add_argument("--no-coco", action="store_true")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-extra-text", action="store_true", help="fit the whitening without the text-only captions")
    args = ap.parse_args()
    t0 = time.time()
    data, _test, _src = load(args.work, args.spec, coco=not args.no_coco, extra_text=not args.no_extra_text)
    text = IdentityText() if args.power is None else PartialWhitening(args.power)
    data = data.with_text_transform(text.fit(data.all_text_vectors()))
    all_scorers = candidate_scorers()
    scorers = {} if args.scorers == "none" else all_scorers if args.scorers == "all" else {
        n: all_scorers[n] for n in args.scorers.split(",")}
    cv, _ = grouped_cv(data, default_mapper(data), scorers, n_splits=args.folds)
    row = {"spec": args.spec, "power": args.power, "coco": not args.no_coco, "extra_text": not args.no_extra_text, "seconds": round(time.time() - t0),
           "cv": {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()} for k, r in cv.items()}}
    print(json.dumps(row), flush=True)
    with open(Path(args.work) / "cv_runs.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
