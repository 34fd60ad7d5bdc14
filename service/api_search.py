"""POST /api/search: a description in, the best photos with scores out."""
from __future__ import annotations

from flask import Blueprint, jsonify, url_for

from service.errors import ApiError
from service.models_registry import ModelMismatch
from service.runtime import get_searcher
from service.search import NoActiveModel
from service.validation import MAX_QUERY_CHARS, int_field, json_body, text_field

bp = Blueprint("search", __name__, url_prefix="/api")

MAX_LIMIT = 50


@bp.post("/search")
def search():
    body = json_body()
    query = text_field(body, "query", max_chars=MAX_QUERY_CHARS)
    limit = int_field(body, "limit", default=5, low=1, high=MAX_LIMIT)
    try:
        response = get_searcher().search(query, limit=limit)
    except NoActiveModel as exc:
        raise ApiError(str(exc), 503, headers={"Retry-After": "60"}) from None
    except ModelMismatch as exc:
        raise ApiError(str(exc), 409) from None
    payload = response.to_dict()
    payload.pop("stages_ms")
    for item in payload["results"]:
        item["image_url"] = url_for("photos.image", photo_id=item["photo_id"])
        item.pop("similarity")
    return jsonify(payload)
