"""Research: photo-side hubness correction (CSLS, querybank normalisation) by the product's grouped CV.

A photo whose joint vector lies near many captions ("a hub") tops many queries' shortlists. CSLS
(Conneau et al. 2018) and querybank normalisation (Bogolin et al. 2022) discount each photo by its
mean cosine to its ``k`` nearest texts of a bank: ``cos(query, photo) - beta * hub(photo)``. Here the
bank is the fold's training captions (a photo's own captions left out), so nothing of the held-out
queries is read. The product has no such term; this wraps ``ml.compare``'s list building to add it:

* ``--cosine``: the joint cosine alone, for each ``k`` and ``beta``;
* otherwise, one grouped CV of the listwise network as ``withsense train`` runs it per variant
  ``BETA:FEATURE`` (``0.25:0``: the corrected cosine in every cosine-derived feature; ``0:1``: the hub
  as one more feature), with the served blend's sweep (``ml.train.choose_cos_weight``).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_hubness --cosine
    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_hubness 0:0 0.25:0 0:1

Prints one JSON line per run and appends it to ``--out`` (docs/model.md, "Tried and not kept").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

import ml.compare as C
import ml.listwise as L
from ml import metrics as M
from ml import no_match
from ml.scorers import candidate_scorers
from ml.train import choose_cos_weight, default_mapper
from research.data import append_result, load, whitened
from service.config import load_settings

_VARIANT = {"beta": 0.0, "feature": False, "k": 20}
_HUB: dict[int, np.ndarray] = {}  # id(PhotoEvidence) -> each photo's hub score


def hub_scores(joint: np.ndarray, bank: np.ndarray, bank_photo: np.ndarray, k: int) -> np.ndarray:
    """Each photo's mean cosine to its ``k`` nearest bank texts, its own captions (``bank_photo``,
    indexed like ``joint``) left out."""
    J = joint / np.linalg.norm(joint, axis=1, keepdims=True)
    B = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    out = np.zeros(len(J), np.float32)
    for s in range(0, len(J), 512):
        S = J[s : s + 512] @ B.T
        S[bank_photo[None, :] == np.arange(s, s + len(S))[:, None]] = -np.inf
        out[s : s + 512] = -np.sort(-S, axis=1)[:, :k].mean(1)
    return out


_training_lists, _evaluate_reranker = C.training_lists, C.evaluate_reranker


def _with_hub_training_lists(tdata, evidence, **kw):
    _HUB[id(evidence)] = hub_scores(evidence.joint, *C.reference_captions(tdata), _VARIANT["k"])
    return _training_lists(tdata, evidence, **kw)


def _with_hub_evaluate(scorer, data, evidence, photo_index, reference, **kw):
    _HUB[id(evidence)] = hub_scores(evidence.joint, reference[0], reference[1], _VARIANT["k"])
    return _evaluate_reranker(scorer, data, evidence, photo_index, reference, **kw)


def _with_hub_list_features(queries, candidates, photos, label_vectors, query_specificity):
    """``ml.listwise.list_features`` with the joint cosine discounted by the hub score (and the hub
    score as a last feature when the variant asks)."""
    cand = np.asarray(candidates)
    hub = _HUB[id(photos)][cand]
    q = np.asarray(queries, np.float32)
    cj = np.einsum("nd,ngd->ng", q, photos.joint[cand]) - _VARIANT["beta"] * hub
    cb = np.einsum("nd,ngd->ng", q, photos.bridge[cand])
    ev = L._label_evidence(q @ np.asarray(label_vectors, np.float32).T, photos.label_ids[cand], photos.label_probs[cand])
    X = L._assemble(cj, cb, ev, photos.mapper_norm[cand], query_specificity)
    return np.concatenate([X, hub[..., None].astype(np.float32)], axis=-1) if _VARIANT["feature"] else X


def cosine_sweep(data, ks=(5, 20, 100), betas=(0.0, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """R@k of the corrected joint cosine on the product's folds and galleries."""
    mapper = default_mapper(data)
    shuffled = np.random.default_rng(0).permutation(np.unique(data.pair_photo))
    ranks = {(k, b): [] for k in ks for b in betas}
    for fold, (_, val_pos) in enumerate(GroupKFold(n_splits=5).split(shuffled, groups=shuffled)):
        val = shuffled[val_pos]
        train = np.setdiff1d(np.arange(len(data.photo_keys)), val)
        tdata = data.subset_photos(train)
        evidence = L.photo_evidence(C.fit_mapper(mapper, tdata), data.photo_features, data.label_vectors,
                                    data.bridge_kind)
        bank, bank_photo = C.reference_captions(tdata)
        hubs = {k: hub_scores(evidence.joint, bank, train[bank_photo], k) for k in ks}
        joint = evidence.joint / np.linalg.norm(evidence.joint, axis=1, keepdims=True)
        for gal in C._galleries(val, 100, np.random.default_rng(fold)):
            pos = np.full(len(data.photo_keys), -1)
            pos[gal] = np.arange(len(gal))
            qs = np.flatnonzero((pos[data.caption_photo] >= 0) & ~data.caption_blocked)
            q = data.caption_vectors[qs] / np.linalg.norm(data.caption_vectors[qs], axis=1, keepdims=True)
            cos = q @ joint[gal].T
            for (k, b), r in ranks.items():
                r.extend(M.ranks_of_correct(cos - b * hubs[k][gal][None, :], pos[data.caption_photo[qs]]).tolist())
    return {f"k={k} beta={b}": {f"R@{n}": round(M.recall_at_k(np.array(r), n), 4) for n in (1, 5, 10)}
            for (k, b), r in ranks.items()}


def reranker_cv(data, beta: float, feature: bool) -> dict:
    _VARIANT.update(beta=beta, feature=feature)
    C.training_lists, C.evaluate_reranker, C.list_features = (
        _with_hub_training_lists, _with_hub_evaluate, _with_hub_list_features)
    try:
        cv, oof = C.grouped_cv(data, default_mapper(data), {"listwise_mlp": candidate_scorers()["listwise_mlp"]},
                               progress=False, caption_negatives=no_match.N_SCENE_CAPTIONS,
                               caption_pool=no_match.scene_caption_pool(data.caption_photo, data.caption_texts))
    finally:
        C.training_lists, C.evaluate_reranker, C.list_features = _training_lists, _evaluate_reranker, L.list_features
    weight, rows = choose_cos_weight(data, oof["listwise_mlp"])
    keep = ("R@1", "R@5", "R@10", "tau_c", "weight", "tau_c_served")
    rounded = lambda r: {k: round(v, 4) for k, v in r.items() if k in keep}  # noqa: E731
    return {"cosine": rounded(cv[C.COSINE]), "listwise": rounded(cv["listwise_mlp"]), "chosen_weight": weight,
            "blend": [rounded(r) for r in rows]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.cv_hubness", description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", default=["0:0", "0.25:0", "0:1"],
                    help="BETA:FEATURE per listwise run (FEATURE 1: the hub score as one more feature)")
    ap.add_argument("--cosine", action="store_true", help="the joint cosine's sweep over k and beta instead")
    ap.add_argument("--k", type=int, default=20, help="nearest bank texts per photo in the listwise runs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    settings = load_settings()
    data = whitened(load(settings))
    if args.cosine:
        t0 = time.time()
        append_result(settings, "cv_hubness", {"cosine_sweep": cosine_sweep(data), "seconds": round(time.time() - t0)},
                      args.out)
        return
    _VARIANT["k"] = args.k
    for variant in args.variants:
        beta, feature = variant.split(":")
        t0 = time.time()
        row = {"beta": float(beta), "feature": feature == "1", "k": args.k,
               **reranker_cv(data, float(beta), feature == "1"), "seconds": round(time.time() - t0)}
        append_result(settings, "cv_hubness", row, args.out)


if __name__ == "__main__":
    main()
