"""POST /api/search: a description in, the best photos with scores out.
POST /api/search/similar: a stored photo or an uploaded image in, the nearest photos out."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, request

from service.http import metrics, schemas
from service.http.contract import DATABASE_ERRORS, RATE_LIMITED, endpoint, reply, responses
from service.http.db_session import run_read
from service.http.pictures import picture
from service.photos import uploads
from service.runtime import get_encoders, get_searcher
from service.search.searcher import Filters, Result, SearchOutcome
from service.search.similar import Neighbours, NoVector, similar_to_image, similar_to_photo

bp = Blueprint("search", __name__, url_prefix="/api")


@bp.post("/search")
@endpoint(json=schemas.SearchRequest,
          resp=responses({200: schemas.SearchResponse}, (409, *RATE_LIMITED, *DATABASE_ERRORS, 415, 413)))
def search():
    """Photos that fit a description, best first, each with a score from 0 to 1."""
    body: schemas.SearchRequest = request.context.json
    filters = Filters(camera=body.camera, place=body.place, uploader=body.uploader,
                      taken_after=body.taken_after, taken_before=body.taken_before)
    outcome = get_searcher().search(body.query, limit=body.limit, offset=body.offset, min_score=body.min_score,
                                    filters=filters)
    metrics.observe_search(outcome.stages_ms, outcome.took_ms, blocked=outcome.blocked)
    started = time.perf_counter()
    answer = reply(_search_response(outcome, explain=body.explain))
    stages = {**outcome.stages_ms, "serialisation": round((time.perf_counter() - started) * 1000, 3)}
    # Per-stage timings for benchmarks and browser dev tools (the standard Server-Timing header).
    answer.headers["Server-Timing"] = ", ".join(f"{name};dur={ms}" for name, ms in stages.items())
    return answer


def _search_response(outcome: SearchOutcome, *, explain: bool) -> schemas.SearchResponse:
    return schemas.SearchResponse(
        query=outcome.query, blocked=outcome.blocked, notice=outcome.notice,
        results=[_search_result(r, explain) for r in outcome.results],
        offset=outcome.offset, limit=outcome.limit, message=outcome.message,
        model_version=outcome.model_version, took_ms=outcome.took_ms,
        query_language=outcome.query_language, text_encoder=outcome.text_encoder,
    )


def _search_result(result: Result, explain: bool) -> schemas.SearchResult:
    extra = {"explain": schemas.Explain(shortlist_similarity=result.similarity,
                                        description_match=result.description_match,
                                        scorer_score=result.scorer_score)} if explain else {}
    return schemas.SearchResult(photo_id=result.photo_id, file_name=result.file_name, score=result.score,
                                **picture(result.photo_id, result.shows_child), **extra)


@bp.post("/search/similar")
@endpoint(json=schemas.SimilarRequest, form=schemas.SimilarUpload,
          resp=responses({200: schemas.SimilarResponse}, (404, 409, 413, 415, 422, *RATE_LIMITED, *DATABASE_ERRORS)))
def similar():
    """JSON {"photo_id", "limit"} for a stored photo, or multipart with `file` (and `limit`) for an image.

    Reads from a healthy replica; a photo or vector not found there (uploaded a moment ago, not
    replicated yet) is looked up again on the primary.
    """
    settings = current_app.config["WITHSENSE"]
    indexed = get_searcher().index_model_id()
    if request.context.form is not None:
        form: schemas.SimilarUpload = request.context.form
        data, limit, image_encoder = form.file.read(), form.limit, get_encoders().image
        neighbours = run_read(lambda session: similar_to_image(
            session=session, settings=settings, image_encoder=image_encoder, data=data, limit=limit,
            indexed_model_id=indexed))
    else:
        body: schemas.SimilarRequest = request.context.json

        def nearest(session):
            photo = uploads.require(session=session, photo_id=body.photo_id, field="photo_id")
            return similar_to_photo(session=session, settings=settings, photo=photo, limit=body.limit,
                                    indexed_model_id=indexed)

        neighbours = run_read(nearest, retry_on_primary=(uploads.PhotoNotFound, NoVector))
    return reply(_similar_response(neighbours))


def _similar_response(neighbours: Neighbours) -> schemas.SimilarResponse:
    return schemas.SimilarResponse(
        photo_id=neighbours.photo_id, model_version=neighbours.model_version,
        results=[schemas.SimilarResult(photo_id=n.photo_id, file_name=n.file_name, score=n.score,
                                       **picture(n.photo_id, n.shows_child)) for n in neighbours.results],
    )
