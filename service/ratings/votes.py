"""Live match / no-match votes on (photo, description) or (photo, free query) pairs."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.policy import is_about_children

INSERT_VOTE_SQL = text(
    """INSERT INTO crowd_votes (photo_id, description_id, query, match, client, about_children)
       VALUES (:photo_id, :description_id, :query, :match, :client, :about_children) RETURNING id"""
)


def add_vote(*, session: Session, photo_id: int, match: bool, description_id: int | None = None,
             query: str | None = None, client: str | None = None) -> int:
    """Store one vote; votes about a description show in the analyst view analyst_rated_pairs."""
    return session.execute(INSERT_VOTE_SQL, {
        "photo_id": photo_id, "description_id": description_id, "query": query, "match": match, "client": client,
        # The content rule on the free query, for the analyst views (migration 0010).
        "about_children": None if query is None else is_about_children(query),
    }).scalar_one()
