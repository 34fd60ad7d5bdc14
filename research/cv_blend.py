"""Research: the candidate's own joint cosine in the score's calibration (issue 17, tau-c; issue 16,
the right top-1 median), compared on the out-of-fold output of one grouped CV as ``withsense train``
runs it (listwise network, 5 folds by photo, galleries of 100, scene captions as no-match queries).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_blend [--reuse]

The served score is ``sigmoid(a * reranker + w . query + b)``: the query-level terms move a whole
list, so the order is the reranker's, and a rated pair's score is comparable with another query's
only through them. The joint cosine alone has a higher tau-c against the experts than that score
(docs/model.md), since a cosine means the same for every query. A variant adds ``c * cos_joint`` of
the candidate itself, its slope on the reranker left free: the order becomes the blend
``a * reranker + c * cos_joint`` (``cos``, ``cos_hinge_*``; rejected, docs/model.md). The variants
``blend_<w>`` fix the order to ``reranker + w * cos_joint`` (``ml.blend``) and calibrate that as
served, ``a > 0``: what ``withsense train`` now chooses among (``ml.train.choose_cos_weight``).

Each variant is fitted 2-fold (``ml.calibration.held_out_mixed``: rated pairs by photo, no-match
queries by query) and reports, held out: tau-c of the score against the expert mean, ECE on rated
pairs and on the mixed set, the share of no-match queries whose best score is under 0.5; the CV's
right top-1 median; and R@1/5/10 of the caption queries ranked by the variant's order, each query
ranked with the calibration fitted on the half its photo is not in.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ml import metrics as M
from ml import no_match
from ml.blend import COS_WEIGHTS, blended, list_recall
from ml.calibration import held_out_mixed, mixed_halves
from ml.compare import ALL_SIGNALS
from ml.fitted import QueryPlattMap
from ml.listwise import QUERY_SIGNALS, signals_from
from ml.train import _calibration_sets, _fits, choose_cos_weight, fit_calibrator, served_tau_c
from research.data import append_result, listwise_oof, load, whitened
from service.config import load_settings

# name -> (query signals, with the candidate's joint cosine, with its hinge at 0.3)
VARIANTS = {
    "served": (QUERY_SIGNALS, False, None),
    "cos": (QUERY_SIGNALS, True, None),
    "cos_hinge_0.3": (QUERY_SIGNALS, True, 0.3),
    "cos_hinge_0.4": (QUERY_SIGNALS, True, 0.4),
}


def _with_cos(part: dict, cos: np.ndarray, hinge: float | None) -> dict:
    cols = [part["query"], cos[:, None]] + ([np.maximum(cos - hinge, 0)[:, None]] if hinge is not None else [])
    return {**part, "query": np.column_stack(cols)}


def _recall(oof: dict, data, half, fitted) -> dict:
    """R@k of the caption lists, each ranked by the calibration fitted without its photo's half."""
    photo = data.caption_photo[oof["own_caption"]]
    S, C = oof["list_score"], oof["list_cos"]
    ranks = np.zeros(len(S), np.int64)
    for in_half, c in zip((~np.isin(photo, half), np.isin(photo, half)), fitted, strict=True):
        m = in_half
        w_cos = c.w_[len(c.w_) - c.n_cand:] if getattr(c, "n_cand", 0) else np.zeros(0)
        order = c.a_ * S[m] + (w_cos[0] * C[m] if len(w_cos) else 0.0)
        if len(w_cos) > 1:
            order = order + w_cos[1] * np.maximum(C[m] - c.hinge, 0)
        order = np.where(np.isfinite(S[m]), order, -np.inf)
        ranks[m] = M.ranks_of_correct(order, oof["list_right"][m])
    return {f"R@{k}": M.recall_at_k(ranks, k) for k in (1, 5, 10)}


def variant(name: str, data, oof: dict, random_state: int = 0) -> dict:
    if name == "chosen":  # as `withsense train` serves it: the share its rule picks, then the calibration
        weight, _ = choose_cos_weight(data, oof)
        return {**variant(f"blend_{weight:g}", data, oof, random_state), "variant": name, "weight": weight}
    if name.startswith("blend_"):  # a fixed share of the cosine in the order, then the served calibration
        o = blended(oof, float(name.split("_")[1]))
        return {**variant("served", data, o, random_state), "variant": name, "order": list_recall(o)}
    signals, with_cos, hinge = VARIANTS[name]
    rated, neg = _calibration_sets(data, oof, signals)
    if with_cos:
        # _calibration_sets appends one own caption per photo: their cosines in the same order
        rng = np.random.default_rng(random_state)
        order = rng.permutation(len(oof["own_score"]))
        _, first = np.unique(oof["own_photo"][order], return_index=True)
        neg_cos = np.concatenate([oof["neg_cos"], oof["own_cos"][order[first]]])
        rated = _with_cos(rated, oof["cos"][_fits(data, oof["pair_index"])[0]], hinge)
        neg = _with_cos(neg, neg_cos, hinge)
    rep = held_out_mixed(rated, neg, signals=signals, fit=_fit_free if with_cos else None)
    fit = _fit_sets(_fit_free) if with_cos else fit_calibrator
    row = {"variant": name, "rated_ECE": rep["ECE"], "mixed_ECE": rep["mixed"]["ECE"],
           "no_match_under_0_5": {k: v["share"] for k, v in rep["no_match_under"].items()},
           "tau_c_served": served_tau_c(data, oof["pair_index"], rep["prob"]),
           "at_0_5": rep["at_threshold"]}
    # held_out_mixed's halves, for the caption lists' ranking
    r_half, n_half = mixed_halves(rated, neg, random_state)
    half = np.unique(rated["group"][r_half])
    fitted = []
    for r_train, n_train in ((r_half, n_half), (~r_half, ~n_half)):
        c = fit({k: v[r_train] for k, v in rated.items()}, {k: v[n_train] for k, v in neg.items()}, signals)
        c.n_cand, c.hinge = (1 + (hinge is not None)) if with_cos else 0, hinge
        fitted.append(c)
    row.update(_recall(oof, data, half, fitted))
    full = fit(rated, neg, signals)
    hits = blended(oof, 0.0)  # the right top-1 queries with their cosines (read from own_*)
    hit_q = signals_from(hits["hit_signals"], ALL_SIGNALS, signals)
    if with_cos:
        hit_q = _with_cos({"query": hit_q}, hits["hit_cos"], hinge)["query"]
    row["right_top1_median"] = float(np.median(full.predict(hits["hit_score"], hit_q)))
    row["calibrator"] = full.to_dict()
    return row


def _fit_free(scores, query, fits, signals) -> QueryPlattMap:
    """The served calibration's logistic regression with the cosine columns in ``query``, its slope
    on the reranker's score left free: given the candidate's cosine it comes out at about zero."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=2000).fit(np.column_stack([scores, query]), fits)
    c = QueryPlattMap()
    c.signals, c.a_, c.w_, c.b_ = tuple(signals), float(lr.coef_[0, 0]), lr.coef_[0, 1:], float(lr.intercept_[0])
    return c


def _fit_sets(fit_query):
    """``fit_calibrator``'s signature (rated, negatives, signals) over a ``fit_query_calibration``-like function."""
    def fit(rated, neg, signals):
        return fit_query(np.concatenate([rated["score"], neg["score"]]), np.concatenate([rated["query"], neg["query"]]),
                         np.concatenate([rated["fits"], neg["label"]]), signals)
    return fit


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.cv_blend", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="read the out-of-fold output of an earlier run")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--variants", nargs="*", default=None)
    ap.add_argument("--scene-captions", type=int, default=no_match.N_SCENE_CAPTIONS,
                    help="scene captions per fold among the no-match queries (ml.no_match.N_SCENE_CAPTIONS)")
    args = ap.parse_args(argv)
    settings = load_settings()
    t0 = time.time()
    data = load(settings)
    data = whitened(data)
    suffix = "" if args.scene_captions == no_match.N_SCENE_CAPTIONS else f"_scene{args.scene_captions}"
    cv, oof = listwise_oof(data, settings.data_dir / "research" / f"cv_blend{suffix}_oof.npz", reuse=args.reuse,
                           caption_negatives=args.scene_captions,
                           caption_pool=no_match.scene_caption_pool(data.caption_photo, data.caption_texts))
    for name in args.variants or [*VARIANTS, *(f"blend_{w:g}" for w in COS_WEIGHTS)]:
        row = variant(name, data, oof)
        if cv is not None:
            row["cv"] = {k: round(v, 4) for k, v in cv.items() if isinstance(v, float)}
        row["seconds"], row["scene_captions"] = round(time.time() - t0), args.scene_captions
        append_result(settings, "cv_blend", row, args.out)

if __name__ == "__main__":
    main()
