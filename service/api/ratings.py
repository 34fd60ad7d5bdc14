"""POST /api/ratings: a live match / no-match vote on a photo and a description or a free query."""
from __future__ import annotations

from flask import Blueprint, request

from service.accounts import audit
from service.accounts.roles import check_photo
from service.http import schemas
from service.http.auth import authenticate
from service.http.contract import BODY_ERRORS, DATABASE_ERRORS, RATE_LIMITED, endpoint, reply, responses
from service.http.db_session import get_session, note_write
from service.http.errors import ApiError
from service.photos import uploads
from service.ratings import votes

bp = Blueprint("ratings", __name__, url_prefix="/api")


@bp.post("/ratings")
@endpoint(json=schemas.RatingRequest, write="vote",
          resp=responses({201: schemas.RatingAdded, 200: schemas.RatingAdded},
                         (401, 403, 404, *RATE_LIMITED, *BODY_ERRORS, *DATABASE_ERRORS)))
def rate():
    """Vote whether a description or a query matches a photo; a person's later vote on the same
    pair replaces their earlier one (200 then, 201 for a first vote)."""
    body: schemas.RatingRequest = request.context.json  # exactly one of description_id and query: checked there
    session = get_session()
    principal = authenticate()
    photo = uploads.require(session=session, photo_id=body.photo_id, field="photo_id")
    check_photo(principal, "vote", photo_id=body.photo_id, owner_id=photo.owner_id)
    if body.description_id is not None and uploads.get_description(session=session, description_id=body.description_id) is None:
        raise ApiError(f"description {body.description_id} does not exist", 404, field="description_id")
    vote = votes.add_vote(session=session, photo_id=body.photo_id, match=body.match, voter_id=principal.user_id,
                          description_id=body.description_id, query=body.query, client=body.client)
    # The query's text stays in crowd_votes (where the content rule's views apply), not in the trail.
    audit.record(session, actor_id=principal.user_id, action="vote", photo_id=body.photo_id,
                 details={"vote_id": vote.vote_id, "description_id": body.description_id, "match": body.match,
                          "replaced": vote.replaced})
    session.commit()
    note_write()
    query = None if body.query is None else votes.normal_query(body.query)
    return reply(schemas.RatingAdded(vote_id=vote.vote_id, photo_id=body.photo_id, description_id=body.description_id,
                                     query=query, match=body.match, replaced=vote.replaced),
                 200 if vote.replaced else 201)
