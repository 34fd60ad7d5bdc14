"""Grouped CV: the order of a bridged query (issue 16; docs/model.md, "The order of a bridged query").

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m research.cv_bridged_order

The served order is ``network + w * cos_joint`` (``ml.blend``), ``w`` chosen on MiniLM's queries.
Is the same share right for a query that reaches the ranker through the query bridge? In each of
``research.cv_bridged_reranker``'s folds (the product's folds, mapper and training lists; the served
listwise network fitted on the training photos; the bridge and the gloss's vocabulary fitted on
their captions and the label phrases; by default without the Russian captions, as served before
the eleventh session, so that the figures in docs/model.md stay reproducible: ``--parallel-weight 3``
fits them in as served now, and measures on all 764), over galleries of 100 held-out photos:

* ``en-bridged``: every held-out English caption through USE and the fold's bridge (the English
  proxy of the bridged route, about 3,500 queries);
* ``en-minilm``: the same captions through MiniLM (the English route, for reference);
* ``ru``: the hand-written Russian captions of training photos (``ru_train_captions.tsv``, 100, and
  ``ru_train_captions_2.tsv``, 240 more written for this), blended with their word gloss as served;

each ordered by ``network + w * cos_joint`` for every ``w`` of ``ml.blend.COS_WEIGHTS``. The gloss
is served's: with the bilingual dictionary where it is installed (``--no-dictionary``: without). Also, on
the Russian captions: the gloss's share in the query vector, and late fusion (the network's scores
of the bridged and the glossed query added, instead of one blended query vector).

The rule (as ``ml.train.choose_cos_weight``'s): the highest R@1 + R@5 of the Russian captions;
within 0.005, the smaller share. Results are appended to ``<data dir>/research/cv_bridged_order.jsonl``.
"""
from __future__ import annotations

import time

import numpy as np

from ml import metrics as M
from ml.blend import COS_WEIGHTS
from ml.compare import _galleries
from research import bridged_folds as study
from research.data import RU_CAPTIONS, RU_CAPTIONS_2, RUSSIAN_CAPTIONS, append_result, russian_captions

GLOSS_SHARES = (0.3, 0.4, 0.5, 0.6, 0.7)


def main() -> None:
    ap = study.arguments(__doc__)
    ap.add_argument("--no-dictionary", action="store_true",
                    help="the gloss without the bilingual dictionary (before it was served)")
    ap.add_argument("--parallel-weight", type=float, default=0.0,
                    help="fit each fold's bridge with the Russian captions of its training photos at this weight "
                         "(served since the eleventh session: 3) and measure on all 764 captions")
    args = ap.parse_args()
    x = study.inputs()
    rows = russian_captions(*RUSSIAN_CAPTIONS) if args.parallel_weight else russian_captions(RU_CAPTIONS, RU_CAPTIONS_2)
    ru_photo, ru = study.russian_queries(x.data, rows)
    u_ru = x.use.encode(ru)
    dw = x.dw
    ranks: dict[str, list[np.ndarray]] = {}
    t_start = time.time()
    for i, fold in enumerate(study.served_folds(x, args.folds, args.seed, dictionary=not args.no_dictionary)):
        net, evidence, reference, gloss = fold.net, fold.evidence, fold.reference, fold.gloss
        bridge = study.bridge(x, fold, args.parallel_weight)
        bridged = bridge.transform(u_ru)
        glossed = x.glossed(gloss, ru)
        english = {"en-bridged": bridge.transform(x.u_caption), "en-minilm": dw.caption_vectors}
        for gal in _galleries(fold.val, 100, np.random.default_rng(100 + fold.seed)):
            pos = np.full(len(dw.photo_keys), -1)
            pos[gal] = np.arange(len(gal))
            qs = np.flatnonzero((pos[dw.caption_photo] >= 0) & ~dw.caption_blocked)
            for route, vectors in english.items():
                S, C = study.scored(net, vectors[qs], gal, evidence, dw.label_vectors, reference)
                for w in COS_WEIGHTS:
                    ranks.setdefault(f"{route} w{w:g}", []).append(M.ranks_of_correct(S + w * C, pos[dw.caption_photo[qs]]))
        views = {}
        for share in GLOSS_SHARES:
            gloss.weight = share
            views[f"ru gloss {share:g}"] = gloss.blend(bridged, glossed)
        views["ru bridged"], views["ru glossed"] = bridged, glossed
        for gal, qs, right in study.query_galleries(fold, ru_photo):
            S = {name: study.scored(net, vectors[qs], gal, evidence, dw.label_vectors, reference)
                 for name, vectors in views.items()}
            for name, (s, c) in S.items():
                if name.startswith("ru gloss"):
                    for w in COS_WEIGHTS:
                        ranks.setdefault(f"{name} w{w:g}", []).append(M.ranks_of_correct(s + w * c, right))
            late = S["ru bridged"][0] + S["ru glossed"][0]
            ranks.setdefault("ru late fusion w0", []).append(M.ranks_of_correct(late, right))
        print(f"fold {i + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = study.recall_table(ranks)
    served = [f"ru gloss 0.5 w{w:g}" for w in COS_WEIGHTS]
    top = max(table[n]["R@1"] + table[n]["R@5"] for n in served)
    chosen = min(w for w, n in zip(COS_WEIGHTS, served, strict=True) if table[n]["R@1"] + table[n]["R@5"] >= top - 0.005)
    print(f"chosen: a bridged query's share of the joint cosine {chosen:g} (R@1 + R@5 of the Russian captions; "
          "within 0.005, the smaller share)")
    append_result(x.settings, "cv_bridged_order", {"folds": args.folds, "seed": args.seed, "chosen": chosen,
                                                 "dictionary": not args.no_dictionary,
                                                 "parallel_weight": args.parallel_weight,
                                                 "seconds": round(time.time() - t_start), "cv": table})


if __name__ == "__main__":
    main()
