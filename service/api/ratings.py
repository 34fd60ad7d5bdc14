"""POST /api/ratings: a live match / no-match vote on a photo and a description or a free query."""
from __future__ import annotations

from flask import Blueprint, request

from service.http import schemas
from service.http.contract import BODY_ERRORS, DATABASE_ERRORS, endpoint, reply, responses
from service.http.db_session import get_session, note_write
from service.http.errors import ApiError
from service.photos import uploads
from service.ratings import votes

bp = Blueprint("ratings", __name__, url_prefix="/api")


@bp.post("/ratings")
@endpoint(json=schemas.RatingRequest, write=True,
          resp=responses({201: schemas.RatingAdded}, (401, 403, 404, *BODY_ERRORS, *DATABASE_ERRORS)))
def rate():
    """Vote whether a description or a query matches a photo."""
    body: schemas.RatingRequest = request.context.json  # exactly one of description_id and query: checked there
    session = get_session()
    uploads.require(session=session, photo_id=body.photo_id, field="photo_id")
    if body.description_id is not None and uploads.get_description(session=session, description_id=body.description_id) is None:
        raise ApiError(f"description {body.description_id} does not exist", 404, field="description_id")
    vote_id = votes.add_vote(session=session, photo_id=body.photo_id, match=body.match,
                             description_id=body.description_id, query=body.query, client=body.client)
    session.commit()
    note_write()
    return reply(schemas.RatingAdded(vote_id=vote_id, photo_id=body.photo_id, description_id=body.description_id,
                                     query=body.query, match=body.match), 201)
