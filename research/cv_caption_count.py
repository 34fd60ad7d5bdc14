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

import argparse
import time
from pathlib import Path

import numpy as np

from ml import metrics as M
from ml.compare import _galleries, fit_mapper, oof_evidence, reference_captions, training_lists
from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.listwise import photo_evidence
from ml.scorers import KerasListwiseMLP
from ml.train import default_mapper
from ml.word_gloss import WordGloss, vocabulary
from research.cv_bridged_order import _scored
from research.cv_bridged_reranker import _one_thread, fold_bridge, folds
from research.data import RU_CAPTIONS_4, RUSSIAN_CAPTIONS, append_result, load, russian_captions, text_whitening
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings
from service.training.query_bridge import BRIDGED_COS_SHARE, PARALLEL_WEIGHT, gloss_dictionary

WEIGHTS = (1.0, PARALLEL_WEIGHT, 10.0)  # the newer file's captions at each, beside the older ones at the served weight


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the folds' shuffle and the lists' draws (0: grouped_cv's)")
    ap.add_argument("--new", type=Path, default=RU_CAPTIONS_4, help="the newer caption file")
    ap.add_argument("--measure", type=Path, nargs="*", default=[],
                    help="caption files only measured on, never fitted (reported as 'measured')")
    args = ap.parse_args()
    _one_thread()
    older = tuple(f for f in RUSSIAN_CAPTIONS if f.resolve() != args.new.resolve())
    settings = resolved_settings(load_settings())
    data = load(settings)
    encoders = encoders_for(settings)
    use, cache = encoders.multilingual, settings.data_dir / "cache"
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    parts = {"older": russian_captions(*older), "newer": russian_captions(args.new)}
    if args.measure:
        parts["measured"] = russian_captions(*args.measure)
    rows = [r for part in parts.values() for r in part]
    group = np.repeat(list(parts), [len(part) for part in parts.values()])
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
        bridges = {"base": fold_bridge(tdata, u_caption, in_train, u_label, dw.label_vectors, use, cache,
                                       PARALLEL_WEIGHT, older)}
        for w in WEIGHTS:
            bridges[f"+ new at {w:g}"] = fold_bridge(tdata, u_caption, in_train, u_label, dw.label_vectors, use,
                                                     cache, [PARALLEL_WEIGHT] * len(older) + [w], (*older, args.new))
        views = {name: gloss.blend(b.transform(u_ru), glossed) for name, b in bridges.items()}
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
                r = M.ranks_of_correct(s + BRIDGED_COS_SHARE * c, right)
                for part in parts:
                    ranks.setdefault(f"{name}, {part}", []).append(r[group[qs] == part])
                ranks.setdefault(f"{name}, all", []).append(r)
        print(f"fold {fold + 1}/{args.folds} {time.time() - t_start:.0f}s", flush=True)
    table = {}
    for name, rs in ranks.items():
        r = np.concatenate(rs)
        if not len(r):  # captions of photos no fold holds out (the extra photos are always training)
            continue
        table[name] = {"n": len(r), **{f"R@{k}": round(float(np.mean(r <= k)), 4) for k in (1, 5, 10)}}
        print(f"{name:24s} ({len(r)}) R@1 {table[name]['R@1']:.3f}  R@5 {table[name]['R@5']:.3f}  "
              f"R@10 {table[name]['R@10']:.3f}")
    append_result(settings, "cv_caption_count", {"folds": args.folds, "seed": args.seed, "new": args.new.name,
                                                 "seconds": round(time.time() - t_start), "cv": table})


if __name__ == "__main__":
    main()
