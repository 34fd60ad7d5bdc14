"""The activation rule: a newly trained ranker replaces the active one only when its headline number
(CV R@1 + R@5 of its chosen scorer) is higher, or when nothing is active, or when forced."""
from __future__ import annotations

from dataclasses import dataclass

from service.store.model_rows import ModelRow


def headline(metrics: dict | None) -> float | None:
    """The selection rule's number for a trained model: CV R@1 + R@5 of its chosen scorer (None
    without cross-validation, as after `train --no-cv`)."""
    chosen = (metrics or {}).get("cv", {}).get((metrics or {}).get("chosen"))
    return chosen["R@1"] + chosen["R@5"] if chosen else None


@dataclass(frozen=True)
class Decision:
    activate: bool
    new_headline: float | None
    previous_headline: float | None
    previous_version: str | None


def decide(new_metrics: dict, current: ModelRow | None, *, force: bool = False) -> Decision:
    """Whether a ranker with ``new_metrics`` replaces ``current`` (the active ranker, if any)."""
    new = headline(new_metrics)
    old = headline(current.metrics) if current else None
    activate = force or current is None or (new is not None and (old is None or new > old))
    return Decision(activate, new, old, current.version if current else None)
