"""Live match / no-match votes on (photo, description) or (photo, free query) pairs.

One vote per person per pair: the voter comes from the request's key, and a later vote on the same
pair replaces the earlier one (the partial unique indexes of migration 0011, with ``INSERT ... ON
CONFLICT DO UPDATE``), so training can read one answer per person per pair. A free query is
compared as written after its runs of whitespace are collapsed; votes from before accounts (no
voter) stay as they were.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.policy import is_about_children

_RETURNING = "RETURNING id, (xmax = 0) AS inserted"  # xmax 0: a new row; else the conflict's update

INSERT_DESCRIPTION_VOTE_SQL = text(
    f"""INSERT INTO crowd_votes (photo_id, description_id, query, match, client, voter_id, about_children)
        VALUES (:photo_id, :description_id, NULL, :match, :client, :voter_id, NULL)
        ON CONFLICT (voter_id, photo_id, description_id) WHERE voter_id IS NOT NULL AND description_id IS NOT NULL
        DO UPDATE SET match = EXCLUDED.match, client = EXCLUDED.client, created_at = now()
        {_RETURNING}"""
)

INSERT_QUERY_VOTE_SQL = text(
    f"""INSERT INTO crowd_votes (photo_id, description_id, query, match, client, voter_id, about_children)
        VALUES (:photo_id, NULL, :query, :match, :client, :voter_id, :about_children)
        ON CONFLICT (voter_id, photo_id, query) WHERE voter_id IS NOT NULL AND description_id IS NULL
        DO UPDATE SET match = EXCLUDED.match, client = EXCLUDED.client, created_at = now()
        {_RETURNING}"""
)


@dataclass(frozen=True)
class Vote:
    vote_id: int
    replaced: bool  # the person had voted on this pair before; this vote took its place


def normal_query(query: str) -> str:
    return " ".join(query.split())


def add_vote(*, session: Session, photo_id: int, match: bool, voter_id: int, description_id: int | None = None,
             query: str | None = None, client: str | None = None) -> Vote:
    """Store the person's vote on the pair, replacing their earlier one; votes about a description
    show in the analyst view analyst_rated_pairs."""
    if (description_id is None) == (query is None):
        raise ValueError("a vote is about exactly one of a description and a query")
    params = {"photo_id": photo_id, "match": match, "client": client, "voter_id": voter_id}
    if description_id is not None:
        row = session.execute(INSERT_DESCRIPTION_VOTE_SQL, {**params, "description_id": description_id}).one()
    else:
        query = normal_query(query)
        # The content rule on the free query, for the analyst views (migration 0010).
        row = session.execute(INSERT_QUERY_VOTE_SQL, {**params, "query": query,
                                                      "about_children": is_about_children(query)}).one()
    return Vote(row.id, replaced=not row.inserted)
