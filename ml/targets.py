"""The match target in [0, 1] for a rated (photo, text) pair, from expert scores and crowd share.

How they are combined
---------------------
* expert part ``e = (mean of the available expert scores - 1) / 3``: the 1..4 scale mapped onto
  0..1 (1 = "does not match at all" -> 0, 4 = "matches exactly" -> 1);
* crowd part ``c = share of "yes" votes`` (already 0..1);
* both present: ``target = w * e + (1 - w) * c`` with ``w = expert_weight = 0.75``;
  only one present: that one; neither: NaN (the pair is not used).

Why
---
Measured on this dataset (``../shared/data/photos``; 5,822 expert pairs, 47,830 crowd pairs,
2,329 pairs with both):

* Expert mean vs crowd share on the 2,329 shared pairs: Spearman 0.715, Pearson 0.791,
  Kendall tau-b 0.620, tau-c 0.447. They agree on order, so both measure the same thing.
* The experts agree with each other more than with the crowd: each expert against the mean of the
  other two, tau-c 0.56 / 0.71 / 0.67, against 0.45 for the crowd share. The experts also grade on
  4 levels while the crowd answers yes/no (3 votes per pair for 46,780 of 47,830 pairs, so the
  share is nearly always 0, 1/3, 2/3 or 1).
* On the scale: crowd share 0 goes with expert mean 1.77 on average, share 1 with 3.83
  (0 < share < .5: 2.67; .5 <= share < 1: 3.23). The expert pairs were picked as plausible
  candidates, so "nobody said yes" there still earns some partial credit from the experts.

So where the experts have rated a pair their graded score leads (weight 0.75, three trained raters
against about three yes/no votes) and the crowd breaks ties within an expert level. The 45,000
crowd-only pairs, most of them random (photo, caption) pairs with share 0, enter with their share
as is: for a random pair, "nobody said yes" is a match of 0, which is what the scorer must learn.
The model's agreement is measured against the expert mean (Kendall tau-c), the quantity the
combination favours.

Pairs whose text is about children are excluded from training (the content rule;
:func:`training_mask`).
"""
from __future__ import annotations

import numpy as np

EXPERT_WEIGHT = 0.75


def expert_mean(expert_scores: np.ndarray) -> np.ndarray:
    """Mean of the available (non-NaN) expert scores per pair, NaN when there are none."""
    e = np.asarray(expert_scores, dtype=np.float64).reshape(len(expert_scores), -1)
    counts = np.sum(~np.isnan(e), axis=1)
    sums = np.nansum(e, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def match_target(expert_scores: np.ndarray, crowd_share: np.ndarray, expert_weight: float = EXPERT_WEIGHT) -> np.ndarray:
    """Target in [0, 1] per pair (see the module docstring); NaN for pairs with no rating."""
    e = (expert_mean(expert_scores) - 1.0) / 3.0
    c = np.asarray(crowd_share, dtype=np.float64)
    has_e, has_c = ~np.isnan(e), ~np.isnan(c)
    out = np.full(len(e), np.nan)
    both = has_e & has_c
    out[both] = expert_weight * e[both] + (1.0 - expert_weight) * c[both]
    out[has_e & ~has_c] = e[has_e & ~has_c]
    out[has_c & ~has_e] = c[has_c & ~has_e]
    return np.clip(out, 0.0, 1.0)


def training_mask(target: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """Pairs usable for training: rated and not about children."""
    return ~np.isnan(np.asarray(target, dtype=np.float64)) & ~np.asarray(blocked, dtype=bool)
