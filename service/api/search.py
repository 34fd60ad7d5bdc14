"""POST /api/search: a description in, the best photos with scores out.
POST /api/search/similar: a stored photo or an uploaded image in, the nearest photos out."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from service.http import metrics, schemas
from service.http.contract import DATABASE_ERRORS, RATE_LIMITED, endpoint, responses
from service.http.db_session import run_read
from service.http.pictures import picture
from service.photos import uploads
from service.runtime import get_encoders, get_searcher
from service.search.searcher import Filters
from service.search.similar import NoVector, similar_to_image, similar_to_photo

bp = Blueprint("search", __name__, url_prefix="/api")


def _filters(body: schemas.SearchRequest) -> Filters:
    return Filters(camera=body.camera, place=body.place, uploader=body.uploader,
                   taken_after=body.taken_after, taken_before=body.taken_before)


@bp.post("/search")
@endpoint(json=schemas.SearchRequest,
          resp=responses({200: schemas.SearchResponse}, (409, *RATE_LIMITED, *DATABASE_ERRORS, 415, 413)))
def search():
    """Photos that fit a description, best first, each with a score from 0 to 1."""
    body: schemas.SearchRequest = request.context.json
    explain = body.explain
    response = get_searcher().search(body.query, limit=body.limit, offset=body.offset, min_score=body.min_score,
                                     filters=_filters(body))
    metrics.observe_search(response.stages_ms, response.took_ms, blocked=response.blocked)
    payload = {
        "query": response.query, "blocked": response.blocked, "notice": response.notice,
        "results": [_result(r, explain) for r in response.results],
        "offset": response.offset, "limit": response.limit, "message": response.message,
        "model_version": response.model_version, "took_ms": response.took_ms,
    }
    started = time.perf_counter()
    reply = jsonify(payload)
    stages = {**response.stages_ms, "serialisation": round((time.perf_counter() - started) * 1000, 3)}
    # Per-stage timings for benchmarks and browser dev tools (the standard Server-Timing header).
    reply.headers["Server-Timing"] = ", ".join(f"{name};dur={ms}" for name, ms in stages.items())
    return reply


def _result(result, explain: bool) -> dict:
    item = {"photo_id": result.photo_id, "file_name": result.file_name, "score": result.score,
            **picture(result.photo_id, result.shows_child)}
    if explain:
        item["explain"] = {"shortlist_similarity": result.similarity,
                           "description_match": result.description_match,
                           "scorer_score": result.scorer_score}
    return item


@bp.post("/search/similar")
@endpoint(json=schemas.SimilarRequest, form=schemas.SimilarUpload,
          resp=responses({200: schemas.SimilarResponse}, (404, 409, 413, 415, 422, *RATE_LIMITED, *DATABASE_ERRORS)))
def similar():
    """JSON {"photo_id", "limit"} for a stored photo, or multipart with `file` (and `limit`) for an image.

    Reads from a healthy replica; a photo or vector not found there (uploaded a moment ago, not
    replicated yet) is looked up again on the primary.
    """
    settings = current_app.config["WITHSENSE"]
    if request.context.form is not None:
        form: schemas.SimilarUpload = request.context.form
        data, limit, image_encoder = form.file.read(), form.limit, get_encoders().image
        payload = run_read(lambda session: similar_to_image(session=session, settings=settings,
                                                            image_encoder=image_encoder, data=data, limit=limit))
    else:
        body: schemas.SimilarRequest = request.context.json

        def nearest(session):
            photo = uploads.require(session=session, photo_id=body.photo_id, field="photo_id")
            return similar_to_photo(session=session, settings=settings, photo=photo, limit=body.limit)

        payload = run_read(nearest, retry_on_primary=(uploads.PhotoNotFound, NoVector))
    for item in payload["results"]:
        item.update(picture(item["photo_id"], item.pop("shows_child")))
    return jsonify(payload)
