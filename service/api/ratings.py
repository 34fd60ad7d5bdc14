"""POST /api/ratings: a live match / no-match vote on a photo and a description or a free query."""
from __future__ import annotations

from flask import Blueprint, jsonify

from service.http.auth import require_write_token
from service.http.errors import ApiError
from service.http.validation import MAX_QUERY_CHARS, int_field, json_body, text_field
from service.photos import uploads
from service.ratings import votes
from service.store.db import get_session, note_write

bp = Blueprint("ratings", __name__, url_prefix="/api")

MAX_CLIENT_CHARS = 200


@bp.post("/ratings")
def rate():
    require_write_token()
    body = json_body()
    if body.get("photo_id") is None:
        raise ApiError("'photo_id' is required", field="photo_id")
    photo_id = int_field(body, "photo_id", default=0, low=1, high=2**63 - 1)
    description_id = (int_field(body, "description_id", default=0, low=1, high=2**63 - 1)
                      if body.get("description_id") is not None else None)
    query = text_field(body, "query", max_chars=MAX_QUERY_CHARS, required=False)
    if (description_id is None) == (query is None):
        raise ApiError("send exactly one of 'description_id' and 'query'", field="description_id")
    match = body.get("match")
    if not isinstance(match, bool):
        raise ApiError("'match' is required: true or false", field="match")
    client = text_field(body, "client", max_chars=MAX_CLIENT_CHARS, required=False)
    session = get_session()
    uploads.require(session=get_session(), photo_id=photo_id)
    if description_id is not None and uploads.get_description(session=session, description_id=description_id) is None:
        raise ApiError(f"description {description_id} does not exist", 404, field="description_id")
    vote_id = votes.add_vote(session=session, photo_id=photo_id, match=match, description_id=description_id,
                               query=query, client=client)
    session.commit()
    note_write()
    return jsonify({"vote_id": vote_id, "photo_id": photo_id, "description_id": description_id,
                    "query": query, "match": match}), 201
