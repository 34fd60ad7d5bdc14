"""Grouped CV of nonlinear query bridges (docs/model.md, "Queries in other languages"), beside the
served ridge: the same folds, galleries and scorer as ``research.cv_multilingual`` (English captions
of held-out photos encoded by USE are the queries, the route a Russian query takes).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_bridge [--variants ...]

Variants (each fitted on the training fold's captions plus the ImageNet label phrases):

* ``ridge``: the served bridge (alpha 1);
* ``mlp<h>``: ridge plus a one-hidden-layer residual (``ml.multilingual.MlpBridge``), cosine loss;
* ``mlp<h>_nce``: the same with a contrastive loss (each bridged caption against the batch's targets);
* ``knn<k>``: ridge blended with the mean target of the k nearest training captions in USE's space;
* ``centroid``: ridge onto the mean target of the caption's photo (less caption noise in the target).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.multilingual import MlpBridge, QueryBridge
from ml.preprocess import l2_normalize
from ml.train import WHITENING_POWER
from ml.whitening import PartialWhitening
from research.cv_multilingual import cv_retrieval
from research.data import load
from service.config import load_settings
from service.runtime import encoders_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=["ridge", "mlp512", "mlp512_nce", "knn10", "centroid"])
    args = parser.parse_args()
    settings = load_settings()
    data = load(settings)
    use = encoders_for(settings).multilingual
    cache = settings.data_dir / "cache"
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    dw = data.with_text_transform(PartialWhitening(WHITENING_POWER).fit(data.all_text_vectors()))

    def fit_set(train_mask, target="caption"):
        rows = train_mask[data.caption_photo]
        y = dw.caption_vectors
        if target == "centroid":
            sums = np.zeros((len(data.photo_keys), y.shape[1]))
            np.add.at(sums, data.caption_photo, y)
            y = l2_normalize(sums[data.caption_photo])
        return np.concatenate([u_caption[rows], u_label]), np.concatenate([y[rows], dw.label_vectors])

    def variant(name):
        def queries_for(train_mask):
            x, y = fit_set(train_mask, "centroid" if name == "centroid" else "caption")
            if name.startswith("mlp"):
                hidden = int(name[3:].split("_")[0])
                loss = "nce" if name.endswith("_nce") else "cosine"
                return MlpBridge(hidden=hidden, loss=loss).fit(x, y).transform(u_caption)
            ridge = QueryBridge(alpha=1.0).fit(x, y)
            out = ridge.transform(u_caption)
            if name.startswith("knn"):
                k = int(name[3:])
                sims = u_caption @ x.T
                # a caption must not find itself among the training texts
                own = train_mask[data.caption_photo]
                idx_train = np.flatnonzero(own)
                sims[idx_train, np.arange(len(idx_train))] = -np.inf
                top = np.argpartition(-sims, k, axis=1)[:, :k]
                knn = l2_normalize(y[top].mean(axis=1))
                out = l2_normalize(out + knn)
            return out
        return queries_for

    out_path = settings.data_dir / "research" / "cv_bridge.jsonl"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        t0 = time.time()
        result = {"variant": name, "folds": args.folds, **cv_retrieval(dw, variant(name), args.folds),
                  "seconds": round(time.time() - t0, 1)}
        print(json.dumps(result), flush=True)
        with open(out_path, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
