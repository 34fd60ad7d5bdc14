"""The served order: the listwise network's score plus a share of the candidate's own joint cosine.

ListNet sets each list's scores up to a shift, so the network's score says which candidate of a
shortlist fits best, not how well it fits. The joint cosine means the same for every query: against
the experts its Kendall tau-c is 0.586 where the network's is 0.538 (docs/model.md). A little of it
in the score (``score + weight * cos_joint``) leaves the order within a shortlist nearly as the
network's and lets the calibration tell a right match from a caption-like scene no photo shows.

``withsense train`` chooses the weight by grouped CV (``ml.train.choose_cos_weight``) and folds it
into the served network's linear skip (:meth:`ml.listwise.NumpyListMLP.plus_feature`): nothing
changes in serving or in the artifact's format. A query that reaches the ranker through a query
bridge takes its own share (``QueryBridge.cos_share``, applied by ``Ranker.score``): its cosines are
noisier, and grouped CV chose 0 for it (docs/model.md, "The order of a bridged query").
"""
from __future__ import annotations

import numpy as np

from ml import metrics as M

# Weights tried, in raw score units (the fold networks' right top-1 score has a median of about 7).
COS_WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0)
# (score, its candidates' joint cosine) in the out-of-fold output of ml.compare.evaluate_reranker
# (the right top-1 queries' hit_* are re-read from own_* in the blended order)
_PAIRS = (("score", "cos"), ("own_score", "own_cos"), ("neg_score", "neg_cos"), ("list_score", "list_cos"))


def blended(oof: dict[str, np.ndarray], weight: float) -> dict[str, np.ndarray]:
    """The out-of-fold output with each score replaced by ``score + weight * cos_joint``, and the
    right top-1 caption queries (``hit_*``) those of the new order."""
    out = dict(oof)
    for score, cos in _PAIRS:
        if score in oof and cos in oof:
            out[score] = oof[score] + weight * oof[cos]
    if "list_score" in out and "own_score" in out:
        # the caption queries ranked right: those whose photo the new order puts first
        hit = M.ranks_of_correct(out["list_score"], out["list_right"]) == 1
        for part in ("score", "cos", "signals", "caption"):
            out[f"hit_{part}"] = out[f"own_{part}"][hit]
    return out


def list_recall(oof: dict[str, np.ndarray], ks=(1, 5, 10)) -> dict[str, float]:
    """R@k of the caption queries' galleries ranked by their (out-of-fold) scores."""
    ranks = M.ranks_of_correct(oof["list_score"], oof["list_right"])
    return {f"R@{k}": M.recall_at_k(ranks, k) for k in ks}
