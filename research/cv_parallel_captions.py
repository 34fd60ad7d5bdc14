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

import argparse
import time

import numpy as np

from ml import metrics as M
from ml.blend import COS_WEIGHTS
from ml.compare import _galleries, fit_mapper, oof_evidence, reference_captions, training_lists
from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.listwise import photo_evidence
from ml.scorers import KerasListwiseMLP
from ml.train import default_mapper
from ml.word_gloss import WordGloss, vocabulary
from research.cv_bridged_order import _scored
from research.cv_bridged_reranker import _one_thread, fold_bridge, folds
from research.data import RUSSIAN_CAPTIONS, append_result, load, russian_captions, text_whitening
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings
from service.training.query_bridge import gloss_dictionary

WEIGHTS = (0, 1, 3, 10, 30)
GLOSS_SHARES = (0.4, 0.5, 0.6)  # the gloss's share in the query vector: 0.5 served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the folds' shuffle and the lists' draws (0: grouped_cv's)")
    args = ap.parse_args()
    _one_thread()
    settings = resolved_settings(load_settings())
    data = load(settings)
    encoders = encoders_for(settings)
    use, cache = encoders.multilingual, settings.data_dir / "cache"
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    rows = russian_captions(*RUSSIAN_CAPTIONS)
    key = {k: i for i, k in enumerate(data.photo_keys)}
    ru_photo = np.array([key[r["caption_id"].split("#")[0]] for r in rows])
    ru = [r["text_ru"] for r in rows]
    u_ru = cached_text_vectors(ru, use, cache)
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
        words = vocabulary([*tdata.caption_texts.tolist(), *imagenet_label_texts()])
        gloss = WordGloss().fit(words, cached_text_vectors(words, use, cache))
        gloss.dictionary = gloss_dictionary(words, settings)
        glossed = whitening.transform(encoders.text.encode([gloss.gloss(t, use.encode) for t in ru]))
        views = {}
        for w in WEIGHTS:
            bridged = fold_bridge(tdata, u_caption, in_train, u_label, dw.label_vectors, use, cache, w).transform(u_ru)
            views[f"weight {w:g}, bridged"] = bridged
            for share in GLOSS_SHARES:
                gloss.weight = share
                views[f"weight {w:g}, gloss {share:g}"] = gloss.blend(bridged, glossed)
        reference = reference_captions(tdata)[0]
        for gal in _galleries(val, 100, np.random.default_rng(seed)):
            pos = np.full(len(dw.photo_keys), -1)
            pos[gal] = np.arange(len(gal))
            qs = np.flatnonzero(pos[ru_photo] >= 0)
            if not len(qs):
                continue
            right = pos[ru_photo[qs]]
            for name, vectors in views.items():
                s, c = _scored(net, vectors[qs], gal, evidence, dw.label_vectors, reference)
                ranks.setdefault(name, []).append(M.ranks_of_correct(s, right))
                ranks.setdefault(f"{name}, cosine", []).append(M.ranks_of_correct(c, right))
                if name.endswith("gloss 0.5"):  # the joint cosine's share in the order (5 served for this route)
                    for share in COS_WEIGHTS[1:]:
                        ranks.setdefault(f"{name}, + {share:g} x cosine", []).append(M.ranks_of_correct(s + share * c, right))
        print(f"fold {fold + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = {}
    for name, rs in ranks.items():
        r = np.concatenate(rs)
        table[name] = {"n": len(r), **{f"R@{k}": round(float(np.mean(r <= k)), 4) for k in (1, 5, 10)}}
        print(f"{name:28s} ({len(r)}) R@1 {table[name]['R@1']:.3f}  R@5 {table[name]['R@5']:.3f}  "
              f"R@10 {table[name]['R@10']:.3f}")
    append_result(settings, "cv_parallel_captions", {"folds": args.folds, "seed": args.seed,
                                                     "seconds": round(time.time() - t_start), "cv": table})


if __name__ == "__main__":
    main()
