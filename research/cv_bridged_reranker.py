"""Grouped CV: does the listwise reranker serve bridged queries better when it has also been trained
on them? (issue 16, docs/model.md "A reranker that has seen bridged queries": no, not kept.)

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m research.cv_bridged_reranker \
        [--folds 5] [--seed 0] [--variants served mixed route]

The folds, galleries, mapper and training lists are ``ml.compare.grouped_cv``'s. A query in another
language reaches the ranker as USE's vector put through the query bridge (``ml.multilingual``), a
distribution the reranker trained on MiniLM's vectors never saw. In each fold the bridge is fitted
on the training photos' captions plus the ImageNet label phrases only; the bridged copies of the
training captions that enter a loss are *cross-fitted* (3 inner folds by photo), so they are as far
from MiniLM's vectors as a new query's, not as close as a text the bridge was fitted on.

Scorers (each the served ``KerasListwiseMLP``, or the joint cosine for reference):

* ``served``: caption lists + rated lists, MiniLM queries (what is served today, for both routes);
* ``mixed[_w<w>]``: the same plus a bridged copy of every caption list (weight ``w``, default 1:
  a random share ``w`` of them), one scorer for both routes;
* ``mixed_noise``: the same, the bridged copies made from USE vectors moved as far as a Russian
  translation moves them (:func:`language_noise`);
* ``route``: bridged caption lists + the rated lists, a scorer for the bridged route only (the
  English route keeps ``served``); ``route_noise``: the same from the noised copies;
  ``route_noise_half``: half of each.

Each is measured on three query sets of the held-out photos, in the same galleries of 100:

* ``en``: their English captions through MiniLM (the English route; R@1, R@5, tau-c);
* ``bridged``: the same captions through USE + the fold's bridge (the English proxy of the
  bridged route; tau-c on the rated texts bridged the same way);
* ``ru``: the 100 hand-written Russian captions of training photos (``service/training/russian_captions/ru_train_captions.tsv``)
  through USE + the fold's bridge; every one of those photos has rated pairs, so each is held out
  in one fold;
* ``ru_gloss``: the same blended with MiniLM's reading of their word gloss (``ml.word_gloss``, as
  served: its vocabulary from the fold's training captions and the label phrases).

Results are appended to ``<data dir>/research/cv_bridged_reranker.jsonl``.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from ml.compare import TrainingLists, evaluate_reranker, fit_mapper, oof_evidence, reference_captions, training_lists
from ml.data import TrainingData, cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.listwise import FEATURES, photo_evidence, specificity
from ml.multilingual import QueryBridge
from ml.scorers import CosineScorer, KerasListwiseMLP
from ml.train import default_mapper
from ml.word_gloss import WordGloss, vocabulary
from research.data import append_result, load, russian_captions, text_whitening
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings

# The bridged copies of the caption lists draw other random photos than the captions' own lists.
BRIDGED_SEED = 100


def cross_fitted(u_caption: np.ndarray, data: TrainingData, u_label: np.ndarray, random_state: int,
                 u_query: np.ndarray | None = None, n_splits: int = 3) -> np.ndarray:
    """Each caption of ``data`` (USE vectors ``u_caption``) through a ridge bridge fitted without its
    photo's captions (on the other photos' captions plus the label phrases), in ``n_splits`` folds by
    photo: fitted on the caption itself, the bridge would hand it back closer to its own vector than
    it brings any new query. ``u_query``: other USE vectors of the same captions to put through those
    bridges (the noised copies)."""
    u_query = u_caption if u_query is None else u_query
    photos = np.random.default_rng(random_state).permutation(np.unique(data.caption_photo))
    out = np.zeros_like(data.caption_vectors)
    for part in np.array_split(photos, n_splits):
        held = np.isin(data.caption_photo, part)
        bridge = QueryBridge().fit(np.concatenate([u_caption[~held], u_label]),
                                   np.concatenate([data.caption_vectors[~held], data.label_vectors]))
        out[held] = bridge.transform(u_query[held])
    return out


def query_lists(data: TrainingData, evidence, queries: np.ndarray, random_state: int) -> TrainingLists:
    """``ml.compare.training_lists``'s caption lists with ``queries`` (one per caption) as the
    queries; their specificity is measured against the captions' own vectors, as a served query's."""
    lists = training_lists(dataclasses.replace(data, caption_vectors=queries), evidence, random_state=random_state,
                           ratings=False)
    qs = np.flatnonzero(~data.caption_blocked)
    ref, ref_photo = reference_captions(data)
    spec = specificity(queries[qs], ref, exclude=data.caption_photo[qs], caption_group=ref_photo)
    lists.X[..., FEATURES.index("specificity")] = spec[:, None]
    return lists


def language_noise(u: np.ndarray, pool: np.ndarray, cosines: np.ndarray, random_state: int = 0) -> np.ndarray:
    """USE vectors ``u`` moved as far as a translation moves them: each to a random cosine drawn
    from ``cosines`` (USE's cosine between a Russian caption and its English original), along a
    direction drawn from the spread of the caption vectors ``pool`` (where texts differ in meaning,
    not a direction no text takes), orthogonal to the vector itself."""
    rng = np.random.default_rng(random_state)
    centred = pool - pool.mean(0)
    eigval, eigvec = np.linalg.eigh(centred.T @ centred / len(pool))
    noise = (rng.standard_normal((len(u), len(eigval))) * np.sqrt(np.maximum(eigval, 0))) @ eigvec.T
    noise -= (noise * u).sum(1, keepdims=True) * u
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    c = rng.choice(cosines, len(u))[:, None]
    return (c * u + np.sqrt(1 - c**2) * noise).astype(np.float32)


def concat(*lists: TrainingLists) -> TrainingLists:
    return TrainingLists(*(np.concatenate([getattr(x, f) for x in lists]) for f in ("X", "target", "rated")))


def folds(data: TrainingData, n_splits: int, random_state: int = 0):
    """grouped_cv's folds (GroupKFold by photo over the photos with rated pairs)."""
    from sklearn.model_selection import GroupKFold

    shuffled = np.random.default_rng(random_state).permutation(np.unique(data.pair_photo))
    for _, val_pos in GroupKFold(n_splits=n_splits).split(shuffled, groups=shuffled):
        yield shuffled[val_pos]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-folds", type=int, default=None, help="stop after this many folds (screening)")
    ap.add_argument("--variants", nargs="*", default=["served", "mixed", "route"])
    ap.add_argument("--gloss-csls", action="store_true",
                    help="the ru_gloss route's words chosen by CSLS (research.ru_gloss.CslsGloss; not served)")
    ap.add_argument("--seed", type=int, default=0, help="the folds' shuffle and the lists' draws (0: grouped_cv's)")
    args = ap.parse_args()
    _one_thread()
    settings = resolved_settings(load_settings())  # the library's image precision
    data = load(settings)
    encoders = encoders_for(settings)
    use = encoders.multilingual
    cache = settings.data_dir / "cache"
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_pair = cached_text_vectors(data.pair_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    rows = russian_captions()
    u_ru, u_en = use.encode([r["text_ru"] for r in rows]), use.encode([r["text_en"] for r in rows])
    key = {k: i for i, k in enumerate(data.photo_keys)}
    ru_photo = np.array([key[r["caption_id"].split("#")[0]] for r in rows])
    whitening = text_whitening(data)
    dw = data.with_text_transform(whitening)
    mapper = default_mapper(dw)
    scores: dict[str, list[dict]] = {}
    t_start = time.time()
    for fold, val in enumerate(folds(dw, args.folds, args.seed)):
        if args.max_folds is not None and fold >= args.max_folds:
            break
        t0 = time.time()
        train_mask = np.ones(len(dw.photo_keys), bool)
        train_mask[val] = False
        train_idx = np.flatnonzero(train_mask)
        tdata = dw.subset_photos(train_idx)
        in_train = train_mask[dw.caption_photo]
        evidence = photo_evidence(fit_mapper(mapper, tdata), dw.photo_features, dw.label_vectors, dw.bridge_kind)
        seed = args.seed + fold
        oof_ev = oof_evidence(mapper, tdata, 3, seed)
        base = training_lists(tdata, oof_ev, random_state=seed)
        bridged_lists = query_lists(tdata, oof_ev, cross_fitted(u_caption[in_train], tdata, u_label, seed),
                                    random_state=seed + BRIDGED_SEED)
        if any("noise" in v for v in args.variants):
            # the translation's cosine from the training photos' Russian captions only
            ru_train = train_mask[ru_photo]
            cosines = (u_ru[ru_train] * u_en[ru_train]).sum(1)
            noisy = language_noise(u_caption[in_train], u_caption[in_train], cosines, random_state=seed)
            # the bridges are fitted on the clean vectors; the noised copies only go through them
            noisy_lists = query_lists(tdata, oof_ev, cross_fitted(u_caption[in_train], tdata, u_label, seed, noisy),
                                      random_state=seed + BRIDGED_SEED)
        bridge = QueryBridge().fit(np.concatenate([u_caption[in_train], u_label]),
                                   np.concatenate([tdata.caption_vectors, dw.label_vectors]))
        words = vocabulary([*tdata.caption_texts.tolist(), *imagenet_label_texts()])
        if args.gloss_csls:
            from research.ru_gloss import CslsGloss, foreign_words

            gloss = CslsGloss().fit(words, cached_text_vectors(words, use, cache),
                                    cached_text_vectors(foreign_words(exclude=words), use, cache))
        else:
            gloss = WordGloss().fit(words, cached_text_vectors(words, use, cache))
        glossed = whitening.transform(encoders.text.encode([gloss.gloss(r["text_ru"], use.encode) for r in rows]))
        ref_vectors, ref_photo = reference_captions(tdata)
        reference = (ref_vectors, train_idx[ref_photo])
        routes = {
            "en": dw,
            "bridged": dataclasses.replace(dw, caption_vectors=bridge.transform(u_caption),
                                           pair_vectors=bridge.transform(u_pair)),
            "ru": dataclasses.replace(dw, caption_texts=np.array([r["text_ru"] for r in rows], dtype=object),
                                      caption_vectors=bridge.transform(u_ru), caption_photo=ru_photo,
                                      caption_blocked=np.zeros(len(rows), bool)),
        }
        routes["ru_gloss"] = dataclasses.replace(routes["ru"], caption_vectors=gloss.blend(bridge.transform(u_ru), glossed))
        fits = {"cosine": (CosineScorer(), None)}
        for name in args.variants:
            if name == "served":
                fits[name] = (KerasListwiseMLP(random_state=args.seed), base)
            elif name == "mixed_noise":
                fits[name] = (KerasListwiseMLP(random_state=args.seed), concat(base, noisy_lists))
            elif name.startswith("mixed"):
                w = float(name.split("_w")[1]) if "_w" in name else 1.0
                extra = bridged_lists if w == 1 else _weighted(bridged_lists, w)
                fits[name] = (KerasListwiseMLP(random_state=args.seed), concat(base, extra))
            elif name in ("route", "route_noise", "route_noise_half"):
                rated = TrainingLists(base.X[base.rated], base.target[base.rated], base.rated[base.rated])
                parts = {"route": [bridged_lists], "route_noise": [noisy_lists] if name != "route" else [],
                         "route_noise_half": [_weighted(bridged_lists, 0.5), _weighted(noisy_lists, 0.5, 1)]
                         if name == "route_noise_half" else []}[name]
                fits[name] = (KerasListwiseMLP(random_state=args.seed), concat(*parts, rated))
        for name, (est, lists) in fits.items():
            fitted = est if lists is None else est.fit(lists.X, lists.target, rated=lists.rated)
            for route, rdata in routes.items():
                r, _ = evaluate_reranker(fitted, rdata, evidence, val, reference, random_state=seed)
                scores.setdefault(f"{name}/{route}", []).append(r)
            if name != "cosine":
                print(f"  fold {fold + 1} {name}: " + "; ".join(
                    f"{route} {scores[f'{name}/{route}'][-1]['R@1']:.3f}/{scores[f'{name}/{route}'][-1]['R@5']:.3f}"
                    for route in routes), flush=True)
        print(f"fold {fold + 1}/{args.folds} {time.time() - t0:.0f}s", flush=True)
    table = {k: {m: round(float(np.nanmean([r[m] for r in rs])), 4) for m in ("R@1", "R@5", "R@10", "tau_c")}
             for k, rs in scores.items()}
    append_result(settings, "cv_bridged_reranker",
                  {"folds": args.folds, "max_folds": args.max_folds, "seed": args.seed, "gloss_csls": args.gloss_csls, "seconds": round(time.time() - t_start),
                   "cv": table})


def _one_thread() -> None:
    """TensorFlow on one thread each way: the machine's cores are shared (its default takes them all)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _weighted(lists: TrainingLists, weight: float, random_state: int = 0) -> TrainingLists:
    """``lists`` at ``weight`` in the loss: KerasListwiseMLP weighs lists flagged ``rated`` by its
    ``rated_weight`` only, so a weight other than 1 keeps a random share ``weight`` of the lists."""
    keep = np.random.default_rng(random_state).random(len(lists)) < weight
    return TrainingLists(lists.X[keep], lists.target[keep], lists.rated[keep])


if __name__ == "__main__":
    main()
