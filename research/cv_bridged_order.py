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

import argparse
import time

import numpy as np

from ml import metrics as M
from ml.blend import COS_WEIGHTS
from ml.compare import _galleries, fit_mapper, oof_evidence, reference_captions, training_lists
from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.listwise import FEATURES, list_features, photo_evidence, specificity
from ml.scorers import KerasListwiseMLP
from ml.train import default_mapper
from ml.word_gloss import WordGloss, vocabulary
from research.cv_bridged_reranker import _one_thread, fold_bridge, folds
from research.data import (
    RU_CAPTIONS,
    RU_CAPTIONS_2,
    RUSSIAN_CAPTIONS,
    append_result,
    load,
    russian_captions,
    text_whitening,
)
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings
from service.training.query_bridge import gloss_dictionary

GLOSS_SHARES = (0.3, 0.4, 0.5, 0.6, 0.7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the folds' shuffle and the lists' draws (0: grouped_cv's)")
    ap.add_argument("--no-dictionary", action="store_true",
                    help="the gloss without the bilingual dictionary (before it was served)")
    ap.add_argument("--parallel-weight", type=float, default=0.0,
                    help="fit each fold's bridge with the Russian captions of its training photos at this weight "
                         "(served since the eleventh session: 3) and measure on all 764 captions")
    args = ap.parse_args()
    _one_thread()
    settings = resolved_settings(load_settings())
    data = load(settings)
    encoders = encoders_for(settings)
    use, cache = encoders.multilingual, settings.data_dir / "cache"
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    rows = russian_captions(*RUSSIAN_CAPTIONS) if args.parallel_weight else russian_captions(RU_CAPTIONS, RU_CAPTIONS_2)
    key = {k: i for i, k in enumerate(data.photo_keys)}
    ru_photo = np.array([key[r["caption_id"].split("#")[0]] for r in rows])
    ru = [r["text_ru"] for r in rows]
    u_ru = use.encode(ru)
    whitening = text_whitening(data)
    dw = data.with_text_transform(whitening)
    mapper = default_mapper(dw)
    ranks: dict[str, list[np.ndarray]] = {}
    t_start = time.time()
    for fold, val in enumerate(folds(dw, args.folds, args.seed)):
        train_mask = np.ones(len(dw.photo_keys), bool)
        train_mask[val] = False
        tdata = dw.subset_photos(np.flatnonzero(train_mask))
        in_train = train_mask[dw.caption_photo]
        seed = args.seed + fold
        evidence = photo_evidence(fit_mapper(mapper, tdata), dw.photo_features, dw.label_vectors, dw.bridge_kind)
        lists = training_lists(tdata, oof_evidence(mapper, tdata, 3, seed), random_state=seed)
        net = KerasListwiseMLP(random_state=args.seed).fit(lists.X, lists.target, rated=lists.rated)
        bridge = fold_bridge(tdata, u_caption, in_train, u_label, dw.label_vectors, use, cache, args.parallel_weight)
        words = vocabulary([*tdata.caption_texts.tolist(), *imagenet_label_texts()])
        gloss = WordGloss().fit(words, cached_text_vectors(words, use, cache))
        if not args.no_dictionary:  # as served: where the dictionary is installed
            gloss.dictionary = gloss_dictionary(words, settings)
        bridged = bridge.transform(u_ru)
        glossed = whitening.transform(encoders.text.encode([gloss.gloss(t, use.encode) for t in ru]))
        reference = reference_captions(tdata)[0]
        english = {"en-bridged": bridge.transform(u_caption), "en-minilm": dw.caption_vectors}
        for gal in _galleries(val, 100, np.random.default_rng(100 + seed)):
            pos = np.full(len(dw.photo_keys), -1)
            pos[gal] = np.arange(len(gal))
            qs = np.flatnonzero((pos[dw.caption_photo] >= 0) & ~dw.caption_blocked)
            for route, vectors in english.items():
                S, C = _scored(net, vectors[qs], gal, evidence, dw.label_vectors, reference)
                for w in COS_WEIGHTS:
                    ranks.setdefault(f"{route} w{w:g}", []).append(M.ranks_of_correct(S + w * C, pos[dw.caption_photo[qs]]))
        views = {}
        for share in GLOSS_SHARES:
            gloss.weight = share
            views[f"ru gloss {share:g}"] = gloss.blend(bridged, glossed)
        views["ru bridged"], views["ru glossed"] = bridged, glossed
        for gal in _galleries(val, 100, np.random.default_rng(seed)):
            pos = np.full(len(dw.photo_keys), -1)
            pos[gal] = np.arange(len(gal))
            qs = np.flatnonzero(pos[ru_photo] >= 0)
            if not len(qs):
                continue
            right = pos[ru_photo[qs]]
            S = {name: _scored(net, vectors[qs], gal, evidence, dw.label_vectors, reference)
                 for name, vectors in views.items()}
            for name, (s, c) in S.items():
                if name.startswith("ru gloss"):
                    for w in COS_WEIGHTS:
                        ranks.setdefault(f"{name} w{w:g}", []).append(M.ranks_of_correct(s + w * c, right))
            late = S["ru bridged"][0] + S["ru glossed"][0]
            ranks.setdefault("ru late fusion w0", []).append(M.ranks_of_correct(late, right))
        print(f"fold {fold + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = {}
    for name, rs in ranks.items():
        r = np.concatenate(rs)
        table[name] = {"n": len(r), **{f"R@{k}": round(float(np.mean(r <= k)), 4) for k in (1, 5, 10)}}
        print(f"{name:24s} ({len(r)}) R@1 {table[name]['R@1']:.3f}  R@5 {table[name]['R@5']:.3f}  "
              f"R@10 {table[name]['R@10']:.3f}")
    served = [f"ru gloss 0.5 w{w:g}" for w in COS_WEIGHTS]
    top = max(table[n]["R@1"] + table[n]["R@5"] for n in served)
    chosen = min(w for w, n in zip(COS_WEIGHTS, served, strict=True) if table[n]["R@1"] + table[n]["R@5"] >= top - 0.005)
    print(f"chosen: a bridged query's share of the joint cosine {chosen:g} (R@1 + R@5 of the Russian captions; "
          "within 0.005, the smaller share)")
    append_result(settings, "cv_bridged_order", {"folds": args.folds, "seed": args.seed, "chosen": chosen,
                                                 "dictionary": not args.no_dictionary,
                                                 "parallel_weight": args.parallel_weight,
                                                 "seconds": round(time.time() - t_start), "cv": table})


def _scored(net, queries, gallery, evidence, label_vectors, reference) -> tuple[np.ndarray, np.ndarray]:
    """The network's scores and the joint cosines of ``queries`` against every photo of ``gallery``."""
    X = list_features(queries, np.tile(gallery, (len(queries), 1)), evidence, label_vectors,
                      specificity(queries, reference))
    return net.predict(X), X[..., FEATURES.index("cos_joint")]


if __name__ == "__main__":
    main()
