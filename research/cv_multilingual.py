"""Grouped CV of the ways a query in another language can reach the photos (docs/model.md,
"Queries in other languages"): English captions of held-out photos are the queries, encoded by USE
multilingual, so every variant is measured on what it does to a query MiniLM did not read.

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_multilingual [--folds 5]

Variants (the photo side is the product's: partial whitening 0.2, the served mapper fitted on the
fold's training photos, the joint cosine as the scorer, galleries of 100 held-out photos):

* ``minilm``: the queries' own MiniLM vectors (the English path, the reference);
* ``bridge_whitened``: ridge from USE into the ranker's whitened space (what is served), fitted on
  the training fold's captions plus the ImageNet label phrases; ``..._nolabels`` without the
  phrases; ``..._alpha<a>`` other penalties;
* ``bridge_raw``: ridge into MiniLM's raw space, then the whitening (the measurement in the issue);
* ``minilm_plus_bridge<s>``: an English query read by both encoders, MiniLM's vector plus ``s``
  times the served bridge's (each unit length; an ensemble of the two readings);
* ``use_joint``: no MiniLM at all: the whole photo side trained on USE's vectors of the captions
  (whitening and mapper in USE's space), queries by their USE vectors.

The bridge is fitted on training-fold captions only (the rated texts are left out here: some are
captions of held-out photos). Results are appended to ``<data dir>/research/cv_multilingual.jsonl``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from ml.compare import evaluate_reranker, fit_mapper, reference_captions
from ml.data import TrainingData, cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.listwise import photo_evidence
from ml.multilingual import QueryBridge
from ml.preprocess import l2_normalize
from ml.scorers import CosineScorer
from ml.train import default_mapper
from research.data import load, text_whitening, whitened
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings


def folds(data: TrainingData, n_splits: int, random_state: int = 0):
    """grouped_cv's folds: GroupKFold by photo over the photos with rated pairs."""
    from sklearn.model_selection import GroupKFold

    rated = np.unique(data.pair_photo)
    shuffled = np.random.default_rng(random_state).permutation(rated)
    for _, val_pos in GroupKFold(n_splits=n_splits).split(shuffled, groups=shuffled):
        yield shuffled[val_pos]


def cv_retrieval(data: TrainingData, queries_for, n_splits: int) -> dict:
    """Mean R@1/5/10 over folds with the joint cosine; ``queries_for(train_mask)`` -> every caption's
    query vector in ``data``'s text space, made from the training photos only."""
    mapper = default_mapper(data)
    out = []
    for fold, val in enumerate(folds(data, n_splits)):
        train_mask = np.ones(len(data.photo_keys), bool)
        train_mask[val] = False
        tdata = data.subset_photos(np.flatnonzero(train_mask))
        evidence = photo_evidence(fit_mapper(mapper, tdata), data.photo_features, data.label_vectors, data.bridge_kind)
        queried = dataclasses.replace(data, caption_vectors=queries_for(train_mask))
        r, _ = evaluate_reranker(CosineScorer(), queried, evidence, val, reference_captions(tdata), random_state=fold)
        out.append(r)
    return {k: round(float(np.mean([r[k] for r in out])), 4) for k in ("R@1", "R@5", "R@10", "MRR")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--extra-text", action="store_true",
                        help="also fit the bridge on the Flickr8k captions of photos absent here (text only)")
    args = parser.parse_args()
    settings = resolved_settings(load_settings())  # the library's image precision
    data = load(settings, extra_text=args.extra_text)
    extra_minilm, extra_texts = data.extra_vectors, data.extra_texts
    # the photo side stays the product's: the whitening reads no text-only captions
    data = dataclasses.replace(data, extra_texts=np.zeros(0, dtype=object),
                               extra_vectors=np.zeros((0, data.caption_vectors.shape[1]), np.float32))
    u_extra = None
    use = encoders_for(settings).multilingual
    cache = settings.data_dir / "cache"
    labels = imagenet_label_texts()
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(labels, use, cache)
    if args.extra_text:
        u_extra = cached_text_vectors(extra_texts.tolist(), use, cache)
    whitening = text_whitening(data)
    dw = data.with_text_transform(whitening)
    in_train = lambda mask: mask[data.caption_photo]  # noqa: E731

    def bridge(alpha: float, target: str, with_labels: bool, with_extra: bool = False):
        def queries_for(train_mask):
            rows = in_train(train_mask)
            x, y = u_caption[rows], (dw.caption_vectors if target == "whitened" else data.caption_vectors)[rows]
            if with_labels:
                x = np.concatenate([x, u_label])
                y = np.concatenate([y, dw.label_vectors if target == "whitened" else data.label_vectors])
            if with_extra:
                x = np.concatenate([x, u_extra])
                y = np.concatenate([y, whitening.transform(extra_minilm) if target == "whitened" else extra_minilm])
            b = QueryBridge(alpha=alpha).fit(x, y)
            raw = b.transform(u_caption)
            return raw if target == "whitened" else whitening.transform(raw)
        return queries_for

    variants = {
        "minilm": (dw, lambda mask: dw.caption_vectors),
        "bridge_whitened": (dw, bridge(1.0, "whitened", True)),
        "bridge_whitened_nolabels": (dw, bridge(1.0, "whitened", False)),
        "bridge_whitened_alpha0.3": (dw, bridge(0.3, "whitened", True)),
        "bridge_whitened_alpha3": (dw, bridge(3.0, "whitened", True)),
        "bridge_raw": (dw, bridge(1.0, "raw", True)),
    }
    def english_blend(share: float):
        """An English query read by both encoders: MiniLM's vector plus ``share`` times the bridged
        USE vector (each unit length), as one query vector in the ranker's whitened space."""
        served = bridge(1.0, "whitened", True)
        return lambda mask: l2_normalize(l2_normalize(dw.caption_vectors) + share * l2_normalize(served(mask)))

    for share in (0.25, 0.5, 1.0):
        variants[f"minilm_plus_bridge{share:g}"] = (dw, english_blend(share))
    if args.extra_text:
        variants["bridge_whitened_extra_text"] = (dw, bridge(1.0, "whitened", True, with_extra=True))
    if args.variants is None or "use_joint" in args.variants:
        u_pair = cached_text_vectors(data.pair_texts.tolist(), use, cache)
        ud = dataclasses.replace(data, caption_vectors=u_caption, pair_vectors=u_pair, label_vectors=u_label,
                                 extra_vectors=np.zeros((0, use.dim), np.float32))
        uw = whitened(ud)
        variants["use_joint"] = (uw, lambda mask: uw.caption_vectors)
    out = settings.data_dir / "research" / "cv_multilingual.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, (space, queries_for) in variants.items():
        if args.variants and name not in args.variants:
            continue
        t0 = time.time()
        result = {"variant": name, "folds": args.folds, **cv_retrieval(space, queries_for, args.folds),
                  "seconds": round(time.time() - t0, 1), "n_captions": int(len(data.caption_texts))}
        print(json.dumps(result), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
