"""The activation rule: a newly trained ranker replaces the active one only when its headline number
(CV R@1 + R@5 of its chosen scorer) is higher, or when nothing is active, or when forced."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from service.store.model_rows import ModelRow

# What training reads that may have changed since a ranker was published: votes (a replaced vote
# gets a new created_at), descriptions, photos added or deleted.
ARRIVED_SQL = text(
    """
    SELECT (SELECT count(*) FROM crowd_votes v WHERE v.created_at > m.created_at) AS votes,
           (SELECT count(*) FROM descriptions d WHERE d.created_at > m.created_at) AS descriptions,
           (SELECT count(*) FROM photos p WHERE p.created_at > m.created_at OR p.deleted_at > m.created_at) AS photos
    FROM models m WHERE m.id = :model_id
    """
)


def arrived_since(conn: Connection, model: ModelRow) -> dict[str, int]:
    """How many votes, descriptions and photos arrived (or went) since ``model`` was published."""
    row = conn.execute(ARRIVED_SQL, {"model_id": model.id}).one()
    return {"votes": row.votes, "descriptions": row.descriptions, "photos": row.photos}


def headline(metrics: dict | None) -> float | None:
    """The selection rule's number for a trained model: CV R@1 + R@5 of its chosen scorer (None
    without cross-validation, as after `train --no-cv`)."""
    chosen = (metrics or {}).get("cv", {}).get((metrics or {}).get("chosen"))
    return chosen["R@1"] + chosen["R@5"] if chosen else None


@dataclass(frozen=True)
class Decision:
    activate: bool
    candidate_headline: float | None
    previous_headline: float | None
    previous_version: str | None


def decide(candidate_metrics: dict, current: ModelRow | None, *, force: bool = False) -> Decision:
    """Whether the trained candidate, with ``candidate_metrics``, replaces ``current`` (the active
    ranker, if any)."""
    candidate = headline(candidate_metrics)
    active = headline(current.metrics) if current else None
    activate = force or current is None or (candidate is not None and (active is None or candidate > active))
    return Decision(activate, candidate, active, current.version if current else None)
