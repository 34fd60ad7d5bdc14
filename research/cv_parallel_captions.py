"""Grouped CV: hand-written Russian captions of training photos in the query bridge's fit (issue 16;
docs/model.md, "Russian captions in the bridge's fit").

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m research.cv_parallel_captions [--seed 1]

The bridge maps USE's vectors into the ranker's text space and is fitted on English texts, while the
queries it serves are Russian: USE puts a Russian sentence near, not on, its English translation. The
product holds 764 Russian captions of rated training photos written by hand
(``service/training/russian_captions/``). In each of ``research.cv_bridged_reranker``'s folds (the
product's folds; the served listwise network fitted on the training photos), the bridge is fitted on
the training photos' captions and the label phrases plus the Russian captions of the *training*
photos (``parallel_captions`` of the fold's data), each with weight ``w`` for every ``w`` of
``WEIGHTS`` (0: the English texts alone, as before). The Russian captions of the held-out photos are
then served as the product serves them (blended with their word gloss, ordered by the network, the
bridged route's share 0, as served when the weight was chosen) against galleries of 100 held-out
photos. Also reported: the bridged vector alone, the gloss's share at 0.4 and 0.6, each variant
ordered by the joint cosine alone, and the served blend ordered with each share of the joint cosine
(``ml.blend.COS_WEIGHTS``; 5 is served for this route since the twelfth session:
``BRIDGED_COS_SHARE``, chosen by ``research.cv_bridged_order``).

The rule: the highest R@1 + R@5 of the held-out Russian captions served with the gloss's share 0.5
(both seeds' mean, read off the two runs' tables); within 0.005, the smaller weight. Results are appended to
``<data dir>/research/cv_parallel_captions.jsonl``.
"""
from __future__ import annotations

import time

import numpy as np

from ml import metrics as M
from ml.blend import COS_WEIGHTS
from ml.data import cached_text_vectors
from research import bridged_folds as study
from research.data import RUSSIAN_CAPTIONS, append_result, russian_captions

WEIGHTS = (0, 1, 3, 10, 30)
GLOSS_SHARES = (0.4, 0.5, 0.6)  # the gloss's share in the query vector: 0.5 served


def main() -> None:
    ap = study.arguments(__doc__)
    args = ap.parse_args()
    x = study.inputs()
    ru_photo, ru = study.russian_queries(x.data, russian_captions(*RUSSIAN_CAPTIONS))
    u_ru = cached_text_vectors(ru, x.use, x.cache)
    dw = x.dw
    ranks: dict[str, list[np.ndarray]] = {}
    t_start = time.time()
    for i, fold in enumerate(study.served_folds(x, args.folds, args.seed)):
        gloss = fold.gloss
        glossed = x.glossed(gloss, ru)
        views = {}
        for w in WEIGHTS:
            bridged = study.bridge(x, fold, w).transform(u_ru)
            views[f"weight {w:g}, bridged"] = bridged
            for share in GLOSS_SHARES:
                gloss.weight = share
                views[f"weight {w:g}, gloss {share:g}"] = gloss.blend(bridged, glossed)
        for gal, qs, right in study.query_galleries(fold, ru_photo):
            for name, vectors in views.items():
                s, c = study.scored(fold.net, vectors[qs], gal, fold.evidence, dw.label_vectors, fold.reference)
                ranks.setdefault(name, []).append(M.ranks_of_correct(s, right))
                ranks.setdefault(f"{name}, cosine", []).append(M.ranks_of_correct(c, right))
                if name.endswith("gloss 0.5"):  # the joint cosine's share in the order (5 served for this route)
                    for share in COS_WEIGHTS[1:]:
                        ranks.setdefault(f"{name}, + {share:g} x cosine", []).append(
                            M.ranks_of_correct(s + share * c, right))
        print(f"fold {i + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = study.recall_table(ranks, width=28)
    append_result(x.settings, "cv_parallel_captions", {"folds": args.folds, "seed": args.seed,
                                                     "seconds": round(time.time() - t_start), "cv": table})


if __name__ == "__main__":
    main()
