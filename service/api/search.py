"""POST /api/search: a description in, the best photos with scores out.
POST /api/search/similar: a stored photo or an uploaded image in, the nearest photos out."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request, url_for

from service.http import metrics
from service.http.errors import ApiError
from service.http.validation import (
    MAX_QUERY_CHARS,
    bool_field,
    datetime_field,
    form_int,
    int_field,
    json_body,
    number_field,
    text_field,
)
from service.photos import uploads
from service.runtime import get_encoders, get_searcher
from service.search.searcher import Filters
from service.search.similar import similar_to_image, similar_to_photo
from service.store.db import get_session

bp = Blueprint("search", __name__, url_prefix="/api")

MAX_LIMIT = 50
MAX_OFFSET = 1000
MAX_FILTER_CHARS = 200


def _filters(body: dict) -> Filters:
    filters = Filters(
        camera=text_field(body, "camera", max_chars=MAX_FILTER_CHARS, required=False),
        place=text_field(body, "place", max_chars=MAX_FILTER_CHARS, required=False),
        uploader=text_field(body, "uploader", max_chars=MAX_FILTER_CHARS, required=False),
        taken_after=datetime_field(body, "taken_after"),
        taken_before=datetime_field(body, "taken_before"),
    )
    if filters.taken_after and filters.taken_before and filters.taken_after >= filters.taken_before:
        raise ApiError("'taken_after' must be earlier than 'taken_before'", field="taken_after")
    return filters


@bp.post("/search")
def search():
    body = json_body()
    query = text_field(body, "query", max_chars=MAX_QUERY_CHARS)
    limit = int_field(body, "limit", default=5, low=1, high=MAX_LIMIT)
    offset = int_field(body, "offset", default=0, low=0, high=MAX_OFFSET)
    min_score = number_field(body, "min_score", low=0.0, high=1.0)
    explain = bool_field(body, "explain", default=False)
    filters = _filters(body)
    response = get_searcher().search(query, limit=limit, offset=offset, min_score=min_score, filters=filters)
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
            "image_url": url_for("photos.image", photo_id=result.photo_id)}
    if explain:
        item["explain"] = {"shortlist_similarity": result.similarity,
                           "description_match": result.description_match,
                           "scorer_score": result.scorer_score}
    return item


@bp.post("/search/similar")
def similar():
    """JSON {"photo_id", "limit"} for a stored photo, or multipart with `file` (and `limit`) for an image."""
    settings = current_app.config["WITHSENSE"]
    session = get_session()
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError("send the image as the multipart field 'file'", field="file")
        limit = form_int(request.form, "limit", default=5, low=1, high=MAX_LIMIT)
        payload = similar_to_image(session=session, settings=settings, image_encoder=get_encoders().image,
                                   data=upload.read(), limit=limit)
    else:
        body = json_body()
        photo_id = int_field(body, "photo_id", default=None, low=1, high=2**63 - 1) if "photo_id" in body else None
        if photo_id is None:
            raise ApiError("'photo_id' is required (or send a multipart 'file')", field="photo_id")
        limit = int_field(body, "limit", default=5, low=1, high=MAX_LIMIT)
        photo = uploads.require(session=session, photo_id=photo_id, field="photo_id")
        payload = similar_to_photo(session=session, settings=settings, photo=photo, limit=limit)
    for item in payload["results"]:
        item["image_url"] = url_for("photos.image", photo_id=item["photo_id"])
    return jsonify(payload)

