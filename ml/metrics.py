"""Evaluation measures: retrieval (recall@k, MRR, median rank) and agreement with ratings
(Kendall tau-c, ROC-AUC of "expert mean >= 3")."""
from __future__ import annotations

import numpy as np


def ranks_of_correct(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """1-based rank of each query's correct item in its row of ``scores`` (higher = better).

    Ties count against the correct item (it ranks after every item scoring at least as high),
    so a constant scorer gets no credit.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.int64)
    own = scores[np.arange(len(correct)), correct][:, None]
    others = np.ones_like(scores, dtype=bool)
    others[np.arange(len(correct)), correct] = False
    return 1 + ((scores >= own) & others).sum(axis=1)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    return float(np.mean(ranks <= k)) if len(ranks) else float("nan")


def mrr(ranks: np.ndarray) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / ranks)) if len(ranks) else float("nan")


def median_rank(ranks: np.ndarray) -> float:
    return float(np.median(ranks)) if len(ranks) else float("nan")


def kendall_tau_c(pred: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(np.asarray(truth), np.asarray(pred), variant="c").statistic)


def roc_auc_relevant(pred: np.ndarray, expert_mean: np.ndarray, threshold: float = 3.0) -> float:
    """ROC-AUC of ``pred`` for telling pairs with expert mean >= ``threshold`` (on 1..4) apart."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(expert_mean) >= threshold
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(pred)))
