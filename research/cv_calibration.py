"""Research: the score's calibration with query-level signals and no-match negatives (issue 16,
point 5), compared on the out-of-fold scores of one grouped CV of the served reranker family.

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_calibration

Runs ``ml.compare.grouped_cv`` once (listwise network, 5 folds by photo, galleries of 100, the
fold's no-match queries scored in each gallery, their best candidate, with 400 captions of photos
outside the gallery per fold among them), keeps its out-of-fold output in
``<WITHSENSE_DATA_DIR>/research/cv_calibration_oof.npz`` (``--reuse`` reads it back), then fits
each calibration variant 2-fold (``ml.calibration.held_out_mixed``) and prints one JSON line per
variant: ECE on held-out rated pairs and on the mixed set, the share of held-out no-match queries
(by kind) whose best score is under 0.5, and the median score of caption queries whose own photo
ranked first (the CV's stand-in for "right top-1 matches").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ml.calibration import PlattCalibrator, held_out_calibration, held_out_mixed
from ml.compare import ALL_SIGNALS
from ml.listwise import signals_from
from ml.no_match import scene_caption_pool
from ml.train import _calibration_sets, fit_calibrator
from research.data import append_result, listwise_oof, load, whitened
from service.config import load_settings

VARIANTS = {  # name -> (signals, kinds of negatives)
    "platt_today": ((), ()),
    "spec_hinge_sentences_random": (("specificity", "specificity>0.45"), ("sentence", "random")),
    "spec_hinge_sentences_random_own": (("specificity", "specificity>0.45"), ("sentence", "random", "own_caption")),
    "spec_sentences_random_own": (("specificity",), ("sentence", "random", "own_caption")),
    "spec_best_joint_sentences_random_own": (("specificity", "best_joint"), ("sentence", "random", "own_caption")),
    "spec_sentences_random": (("specificity",), ("sentence", "random")),
    "spec_all": (("specificity",), ("sentence", "random", "caption")),
    "spec_best_joint_sentences_random": (("specificity", "best_joint"), ("sentence", "random")),
    "spec_best_joint_all": (("specificity", "best_joint"), ("sentence", "random", "caption")),
    "best_joint_all": (("best_joint",), ("sentence", "random", "caption")),
    # with --scene-captions the "caption" negatives are scenes without people or dogs (ml.no_match.scene_caption_pool)
    "spec_hinge_own_scene": (("specificity", "specificity>0.45"), ("sentence", "random", "own_caption", "caption")),
    "spec_hinge_best_joint_own_scene": (("specificity", "specificity>0.45", "best_joint"),
                                        ("sentence", "random", "own_caption", "caption")),
    "spec_hinge_best_joint_hinge_own_scene": (("specificity", "specificity>0.45", "best_joint", "best_joint>0.5"),
                                              ("sentence", "random", "own_caption", "caption")),
    "spec_hinge_best_joint_own": (("specificity", "specificity>0.45", "best_joint"), ("sentence", "random", "own_caption")),
}


def _select(neg: dict, kinds) -> dict:
    m = np.isin(neg["kind"], list(kinds))
    return {k: v[m] for k, v in neg.items()}


def variant(name: str, data, oof: dict) -> dict:
    signals, kinds = VARIANTS[name]
    rated, all_neg = _calibration_sets(data, oof, signals, own_captions="own_caption" in kinds)
    row: dict = {"variant": name, "signals": list(signals), "negatives": list(kinds)}
    if not signals:  # today's: Platt on rated pairs only, applied to the held-out negatives too
        rep = held_out_calibration(rated["score"], rated["fits"], rated["group"])
        c = PlattCalibrator().fit(rated["score"], rated["fits"])
        top = all_neg["top1"].astype(bool)
        row.update(rated_ECE=rep["ECE"], at_0_5=rep["at_threshold"],
                   no_match_under_0_5={k: float((c.predict(all_neg["score"][top & (all_neg["kind"] == k)]) < 0.5).mean())
                                       for k in np.unique(all_neg["kind"])},
                   mixed_ECE=_mixed_ece(c, rated, all_neg),
                   right_top1_median=float(np.median(c.predict(oof["hit_score"]))))
        return row
    neg = _select(all_neg, kinds)
    rep = held_out_mixed(rated, neg, signals=signals)
    full = fit_calibrator(rated, neg, signals)
    top = all_neg["top1"].astype(bool)
    row.update(rated_ECE=rep["ECE"], at_0_5=rep["at_threshold"], mixed_ECE_own_negatives=rep["mixed"]["ECE"],
               own_caption_median_held_out=rep.get("own_caption_median"),
               no_match_under_0_5_held_out={k: v["share"] for k, v in rep["no_match_under"].items()},
               # every kind scored by the calibrator fitted on this variant's negatives (in-sample for those kinds)
               no_match_under_0_5_all_kinds={k: float((full.predict(all_neg["score"][top & (all_neg["kind"] == k)],
                                                                     all_neg["query"][top & (all_neg["kind"] == k)])
                                                         < 0.5).mean()) for k in np.unique(all_neg["kind"])},
               right_top1_median=float(np.median(full.predict(oof["hit_score"], signals_from(oof["hit_signals"], ALL_SIGNALS, signals)))),
               calibrator=full.to_dict())
    return row


def _mixed_ece(c, rated, neg) -> float:
    from ml.calibration import reliability

    p = np.concatenate([c.predict(rated["score"]), c.predict(neg["score"])])
    return reliability(p, np.concatenate([rated["fits"], neg["label"]]))["ECE"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.cv_calibration", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="read the out-of-fold output of an earlier run")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--scene-captions", action="store_true",
                    help="caption negatives: one caption per training photo that shows neither people nor dogs")
    ap.add_argument("--variants", nargs="*", default=None)
    args = ap.parse_args(argv)
    settings = load_settings()
    t0 = time.time()
    data = load(settings)
    data = whitened(data)
    cache = settings.data_dir / "research" / f"cv_calibration{'_scene' if args.scene_captions else ''}_oof.npz"
    cv, oof = listwise_oof(data, cache, reuse=args.reuse, caption_negatives=400,
                           caption_pool=scene_caption_pool(data.caption_photo, data.caption_texts)
                           if args.scene_captions else None)
    for name in args.variants or VARIANTS:
        row = variant(name, data, oof)
        row["cv"] = None if cv is None else {k: round(v, 4) for k, v in cv.items() if isinstance(v, float)}
        row["seconds"] = round(time.time() - t0)
        append_result(settings, "cv_calibration", row, args.out)

if __name__ == "__main__":
    main()
