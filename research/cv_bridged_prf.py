"""Grouped CV: pseudo-relevance feedback for a bridged query (issue 16; docs/model.md, "Pseudo-relevance
feedback for bridged queries").

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m research.cv_bridged_prf [--seed 1]

A Russian query reaches the ranker as a noisy vector (USE through the bridge, blended with its word
gloss). Average query expansion moves it towards the photos it ranks first: ``q' = q + beta * mean of
the joint vectors of its top k``, renormalised, then scored again by the same network over the same
gallery (in the product: a second pass over the same shortlist, no second SQL query). In each fold
(``research.bridged_folds``: the product's folds, the served network and gloss; the bridge fitted as
served), every held-out Russian caption (the 764 served ones and the 730 second captions of
``research/ru_train_captions_4.tsv``, which no bridge is fitted on) is served as the product serves
it, against galleries of 100 held-out photos, with and without the feedback for each ``k`` and ``beta``.

The rule, set before the first run: the feedback is worth serving if one setting raises the mean
R@1 + R@5 of all 1,494 captions over seeds 0 and 1 by more than 0.005. Results are appended to
``<data dir>/research/cv_bridged_prf.jsonl``.
"""
from __future__ import annotations

import time

import numpy as np

from ml import metrics as M
from research import bridged_folds as study
from research.data import RU_CAPTIONS_4, RUSSIAN_CAPTIONS, append_result, russian_captions
from service.training.query_bridge import BRIDGED_COS_SHARE, PARALLEL_WEIGHT

TOP_K = (1, 3, 5)
BETAS = (0.25, 0.5, 1.0)


def main() -> None:
    ap = study.arguments(__doc__)
    args = ap.parse_args()
    x = study.inputs()
    dw = x.dw
    ru_photo, ru = study.russian_queries(x.data, russian_captions(*RUSSIAN_CAPTIONS, RU_CAPTIONS_4))
    u_ru = x.use.encode(ru)
    ranks: dict[str, list[np.ndarray]] = {}
    t_start = time.time()
    for i, fold in enumerate(study.served_folds(x, args.folds, args.seed)):
        queries = fold.gloss.blend(study.bridge(x, fold, PARALLEL_WEIGHT).transform(u_ru), x.glossed(fold.gloss, ru))
        for gal, qs, right in study.query_galleries(fold, ru_photo):
            served = _order(fold, queries[qs], gal, dw)
            ranks.setdefault("served", []).append(M.ranks_of_correct(served, right))
            first = np.argsort(-served, axis=1, kind="stable")
            for k in TOP_K:
                feedback = fold.evidence.joint[gal][first[:, :k]].mean(axis=1)
                for beta in BETAS:
                    expanded = queries[qs] + beta * feedback
                    expanded /= np.linalg.norm(expanded, axis=1, keepdims=True)
                    ranks.setdefault(f"top {k}, beta {beta:g}", []).append(
                        M.ranks_of_correct(_order(fold, expanded, gal, dw), right))
        print(f"fold {i + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = study.recall_table(ranks)
    append_result(x.settings, "cv_bridged_prf", {"folds": args.folds, "seed": args.seed,
                                                 "seconds": round(time.time() - t_start), "cv": table})


def _order(fold, queries: np.ndarray, gallery: np.ndarray, dw) -> np.ndarray:
    """The served order of a bridged query: the network plus its share of the joint cosine."""
    s, c = study.scored(fold.net, queries, gallery, fold.evidence, dw.label_vectors, fold.reference)
    return s + BRIDGED_COS_SHARE * c


if __name__ == "__main__":
    main()
