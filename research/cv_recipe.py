"""Research: grouped CV of image features (views, networks), whitening power and rerankers on the
training data of a database built by ``make demo`` (``research.data``).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_recipe \\
        --image-model efficientnet-lite0+efficientnet-lite0/crop5+efficientnet-lite0@320+efficientnet-lite2 \\
        --power 0.2 --scorers listwise_mlp

Prints one JSON line per run and appends it to ``--out``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ml.compare import grouped_cv
from ml.scorers import candidate_scorers
from ml.train import default_mapper
from ml.whitening import IdentityText, PartialWhitening
from research.data import append_result, load
from service.config import load_settings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.cv_recipe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-model", default=None,
                    help="image features in WITHSENSE_IMAGE_MODEL's syntax (default: the database's own)")
    ap.add_argument("--power", type=float, default=None, help="whitening power (default: raw MiniLM space)")
    ap.add_argument("--scorers", default="none", help="none | all | comma list of names (ml.listwise.candidate_scorers)")
    ap.add_argument("--no-coco", action="store_true", help="without the captioned_extra (MS-COCO) photos")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--extra-text", action="store_true",
                    help="fit the whitening with the text-only Flickr8k captions too (the product does not)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON lines appended here (default: <WITHSENSE_DATA_DIR>/research/cv_recipe.jsonl)")
    args = ap.parse_args(argv)
    settings = load_settings()
    image_model = args.image_model or settings.image_model
    t0 = time.time()
    data = load(settings, image_model=image_model, coco=not args.no_coco, extra_text=args.extra_text)
    text = IdentityText() if args.power is None else PartialWhitening(args.power)
    data = data.with_text_transform(text.fit(data.all_text_vectors()))
    all_scorers = candidate_scorers()
    scorers = {} if args.scorers == "none" else all_scorers if args.scorers == "all" else {
        n: all_scorers[n] for n in args.scorers.split(",")}
    cv, _ = grouped_cv(data, default_mapper(data), scorers, n_splits=args.folds)
    row = {"image_model": image_model, "power": args.power, "coco": not args.no_coco, "extra_text": args.extra_text,
           "seconds": round(time.time() - t0),
           "cv": {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()} for k, r in cv.items()}}
    append_result(settings, "cv_recipe", row, args.out)


if __name__ == "__main__":
    main()
