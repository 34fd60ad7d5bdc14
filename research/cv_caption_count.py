"""Grouped CV: does the query bridge gain from more hand-written Russian captions? (issue 16;
docs/model.md, "More Russian captions").

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m research.cv_caption_count [--seed 1]

The product's bridge is fitted on the Russian captions of ``service/training/russian_captions/`` at
``PARALLEL_WEIGHT`` (``research.cv_parallel_captions`` chose it with one caption per photo). Here a
newer file (``--new``; by default ``research/ru_train_captions_4.tsv``, a second caption of 730 of the
same photos) is set against the served files, paired in the same folds (``research.cv_bridged_reranker``'s:
the product's folds; the served listwise network fitted on the training photos): each fold's bridge is
fitted with the *training* photos' captions of the served files alone (``base``, as served), and with
the newer file's too at each weight of ``WEIGHTS``. Every held-out Russian caption of both is then
served as the product serves it (blended with its word gloss at the served share, ordered by the
network plus ``BRIDGED_COS_SHARE`` times the joint cosine) against galleries of 100 held-out photos,
and reported for the served files' captions (``older``: the 764 that ``research.cv_parallel_captions``
and ``research.cv_bridged_order`` chose on), the newer file's (``newer``; none when it holds only
captions of photos that are never held out, such as the extra photos), those of ``--measure`` files
(``measured``: served as queries, never fitted), and all of them (``all``). No held-out photo's
caption is ever in its fold's fit.

The rule, set before the first run: the newer file is served if it raises the mean R@1 + R@5 of the
``older`` captions over both seeds by more than 0.005 (the same queries as the earlier choices, so
their figures compare). Results are appended to ``<data dir>/research/cv_caption_count.jsonl``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ml import metrics as M
from ml.data import cached_text_vectors
from research import bridged_folds as study
from research.data import RU_CAPTIONS_4, RUSSIAN_CAPTIONS, append_result, russian_captions
from service.training.query_bridge import BRIDGED_COS_SHARE, PARALLEL_WEIGHT

WEIGHTS = (1.0, PARALLEL_WEIGHT, 10.0)  # the newer file's captions at each, beside the older ones at the served weight


def main() -> None:
    ap = study.arguments(__doc__)
    ap.add_argument("--new", type=Path, default=RU_CAPTIONS_4, help="the newer caption file")
    ap.add_argument("--measure", type=Path, nargs="*", default=[],
                    help="caption files only measured on, never fitted (reported as 'measured')")
    args = ap.parse_args()
    older = tuple(f for f in RUSSIAN_CAPTIONS if f.resolve() != args.new.resolve())
    x = study.inputs()
    parts = {"older": russian_captions(*older), "newer": russian_captions(args.new)}
    if args.measure:
        parts["measured"] = russian_captions(*args.measure)
    ru_photo, ru = study.russian_queries(x.data, [r for part in parts.values() for r in part])
    group = np.repeat(list(parts), [len(part) for part in parts.values()])
    u_ru = cached_text_vectors(ru, x.use, x.cache)
    dw = x.dw
    ranks: dict[str, list[np.ndarray]] = {}
    t_start = time.time()
    for i, fold in enumerate(study.served_folds(x, args.folds, args.seed)):
        glossed = x.glossed(fold.gloss, ru)
        bridges = {"base": study.bridge(x, fold, PARALLEL_WEIGHT, older)}
        for w in WEIGHTS:
            bridges[f"+ new at {w:g}"] = study.bridge(x, fold, [PARALLEL_WEIGHT] * len(older) + [w], (*older, args.new))
        views = {name: fold.gloss.blend(b.transform(u_ru), glossed) for name, b in bridges.items()}
        for gal, qs, right in study.query_galleries(fold, ru_photo):
            for name, vectors in views.items():
                s, c = study.scored(fold.net, vectors[qs], gal, fold.evidence, dw.label_vectors, fold.reference)
                r = M.ranks_of_correct(s + BRIDGED_COS_SHARE * c, right)
                for part in parts:  # a part no fold holds out (the extra photos are always training) stays empty
                    ranks.setdefault(f"{name}, {part}", []).append(r[group[qs] == part])
                ranks.setdefault(f"{name}, all", []).append(r)
        print(f"fold {i + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = study.recall_table(ranks)
    append_result(x.settings, "cv_caption_count", {"folds": args.folds, "seed": args.seed, "new": args.new.name,
                                                 "seconds": round(time.time() - t_start), "cv": table})


if __name__ == "__main__":
    main()
