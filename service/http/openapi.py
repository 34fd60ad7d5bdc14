"""The OpenAPI 3.1 description of every endpoint, written by hand next to the code it describes.

A test walks app.url_map and fails when a route is missing here.
"""
from __future__ import annotations


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(description: str, schema: dict | None = None) -> dict:
    out = {"description": description}
    if schema is not None:
        out.update(_json(schema))
    return out


ERROR = _response("Error", _ref("Error"))
STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
PHOTO_ID = {"name": "photo_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
BEARER = [{"bearerToken": []}]

SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "status"], "properties": {
        "error": STRING, "status": INTEGER, "field": {"type": "string", "description": "the request field at fault"}}},
    "SearchRequest": {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string", "maxLength": 500},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
        "offset": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0},
        "min_score": {"type": "number", "minimum": 0, "maximum": 1},
        "camera": STRING, "place": STRING, "uploader": STRING,
        "taken_after": {"type": "string", "format": "date-time", "description": "inclusive"},
        "taken_before": {"type": "string", "format": "date-time", "description": "exclusive"},
        "explain": {"type": "boolean", "default": False}}},
    "SearchResult": {"type": "object", "required": ["photo_id", "file_name", "score", "image_url"], "properties": {
        "photo_id": INTEGER, "file_name": STRING, "score": NUMBER, "image_url": STRING,
        "explain": {"type": "object", "properties": {
            "shortlist_similarity": NUMBER, "description_match": {"type": ["number", "null"]}, "scorer_score": NUMBER}}}},
    "SearchResponse": {"type": "object", "properties": {
        "query": STRING, "blocked": {"type": "boolean"}, "notice": NULLABLE_STRING,
        "results": {"type": "array", "items": _ref("SearchResult")},
        "offset": INTEGER, "limit": INTEGER,
        "message": {"type": ["string", "null"], "description": "why fewer than `limit` results came back"},
        "model_version": NULLABLE_STRING, "took_ms": NUMBER}},
    "SimilarRequest": {"type": "object", "required": ["photo_id"], "properties": {
        "photo_id": INTEGER, "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5}}},
    "SimilarUpload": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "contentMediaType": "application/octet-stream"}, "limit": INTEGER}},
    "SimilarResponse": {"type": "object", "properties": {
        "photo_id": {"type": ["integer", "null"]}, "model_version": STRING,
        "results": {"type": "array", "items": _ref("SearchResult")}}},
    "PhotoUpload": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "contentMediaType": "application/octet-stream",
                 "description": "JPEG, PNG or WebP; at most WITHSENSE_MAX_UPLOAD_MB and WITHSENSE_MAX_PIXELS"},
        "description": STRING, "place": STRING, "camera": STRING, "uploader": STRING,
        "taken_at": {"type": "string", "format": "date-time"}}},
    "PhotoAdded": {"type": "object", "properties": {
        "photo_id": INTEGER, "duplicate_of": {"type": ["integer", "null"]}, "image_url": STRING,
        "near_duplicates": {"type": "array", "items": {"type": "object", "properties": {
            "photo_id": INTEGER, "file_name": STRING, "distance": NUMBER}}}}},
    "Photo": {"type": "object", "properties": {
        "photo_id": INTEGER, "file_name": STRING, "split": STRING, "sha256": STRING, "bytes": INTEGER,
        "width": INTEGER, "height": INTEGER, "uploader": NULLABLE_STRING, "place": NULLABLE_STRING,
        "camera": NULLABLE_STRING, "taken_at": NULLABLE_STRING, "created_at": STRING,
        "image_url": STRING, "thumbnail_url": STRING,
        "descriptions": {"type": "array", "items": {"type": "object", "properties": {
            "description_id": INTEGER, "text": STRING, "source": STRING, "author": NULLABLE_STRING,
            "created_at": STRING}}},
        "ratings": {"type": "object", "properties": {
            "expert": {"type": "object", "properties": {"pairs": INTEGER, "mean_score": {"type": ["number", "null"]}}},
            "crowd": {"type": "object", "properties": {"pairs": INTEGER, "mean_share": {"type": ["number", "null"]},
                                                       "yes": INTEGER, "no": INTEGER}},
            "live_votes": {"type": "object", "properties": {"yes": INTEGER, "no": INTEGER}}}}}},
    "DescriptionRequest": {"type": "object", "required": ["text"], "properties": {
        "text": {"type": "string", "maxLength": 2000}, "author": STRING}},
    "DescriptionAdded": {"type": "object", "properties": {
        "description_id": INTEGER, "photo_id": INTEGER, "text": STRING, "author": NULLABLE_STRING}},
    "RatingRequest": {"type": "object", "required": ["photo_id", "match"], "properties": {
        "photo_id": INTEGER, "description_id": INTEGER, "query": STRING, "match": {"type": "boolean"},
        "client": STRING}, "description": "exactly one of description_id and query"},
    "RatingAdded": {"type": "object", "properties": {
        "vote_id": INTEGER, "photo_id": INTEGER, "description_id": {"type": ["integer", "null"]},
        "query": NULLABLE_STRING, "match": {"type": "boolean"}}},
    "Status": {"type": "object", "properties": {
        "status": STRING, "database": STRING, "model": NULLABLE_STRING, "error": STRING}},
}

PATHS = {
    "/api/search": {"post": {
        "summary": "Photos that fit a description (hybrid: photo content + descriptions people wrote)",
        "requestBody": {"required": True, **_json(_ref("SearchRequest"))},
        "responses": {"200": _response("Results, or blocked with a notice", _ref("SearchResponse")),
                      "400": ERROR, "409": ERROR, "415": ERROR, "503": ERROR}}},
    "/api/search/similar": {"post": {
        "summary": "Photos nearest to a stored photo or to an uploaded image (not stored)",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("SimilarRequest")},
            "multipart/form-data": {"schema": _ref("SimilarUpload")}}},
        "responses": {"200": _response("Nearest photos", _ref("SimilarResponse")),
                      "400": ERROR, "404": ERROR, "409": ERROR, "413": ERROR, "415": ERROR, "422": ERROR, "503": ERROR}}},
    "/api/photos": {"post": {
        "summary": "Upload a photo", "security": BEARER,
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _ref("PhotoUpload")}}},
        "responses": {"201": _response("Stored", _ref("PhotoAdded")),
                      "200": _response("The same bytes are already stored: duplicate_of names them", _ref("PhotoAdded")),
                      "400": ERROR, "401": ERROR, "403": ERROR, "413": ERROR, "422": ERROR}}},
    "/api/photos/{photo_id}": {"get": {
        "summary": "A photo's metadata, descriptions and ratings summary", "parameters": [PHOTO_ID],
        "responses": {"200": _response("The photo", _ref("Photo")), "404": ERROR}}},
    "/api/photos/{photo_id}/descriptions": {"post": {
        "summary": "Describe a photo (embedded at once, used by search)", "security": BEARER,
        "parameters": [PHOTO_ID], "requestBody": {"required": True, **_json(_ref("DescriptionRequest"))},
        "responses": {"201": _response("Stored", _ref("DescriptionAdded")),
                      "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "415": ERROR}}},
    "/api/ratings": {"post": {
        "summary": "Vote whether a description or query matches a photo", "security": BEARER,
        "requestBody": {"required": True, **_json(_ref("RatingRequest"))},
        "responses": {"201": _response("Stored", _ref("RatingAdded")),
                      "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "415": ERROR}}},
    "/photos/{photo_id}/image": {"get": {
        "summary": "The photo file as stored", "parameters": [PHOTO_ID],
        "responses": {"200": {"description": "The image", "content": {m: {} for m in ("image/jpeg", "image/png", "image/webp")}},
                      "404": ERROR}}},
    "/photos/{photo_id}/thumbnail": {"get": {
        "summary": "At most 256 px JPEG, upright", "parameters": [PHOTO_ID],
        "responses": {"200": {"description": "The thumbnail", "content": {"image/jpeg": {}}}, "404": ERROR}}},
    # The web pages (service/web.py): HTML for people, listed so the spec covers every route.
    "/": {"get": {"summary": "Web page: search", "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
    "/photos/{photo_id}": {"get": {"summary": "Web page: one photo", "parameters": [PHOTO_ID],
                                   "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}, "404": ERROR}}},
    "/upload": {"get": {"summary": "Web page: upload form",
                        "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
    "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _response("Alive", _ref("Status"))}}},
    "/readyz": {"get": {"summary": "Readiness: database reachable and a model active",
                        "responses": {"200": _response("Ready", _ref("Status")),
                                      "503": _response("Not ready", _ref("Status"))}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (per process)",
                         "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}}}},
    "/api/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
}


# Answers any endpoint may give for reasons outside its own inputs, added to every operation they
# apply to rather than repeated in each: the per-client rate limit (searches), the request-size cap
# (any POST), and the database being unreachable (anything that reads it).
RATE_LIMITED = ("/api/search", "/api/search/similar")
NO_DATABASE_NEEDED = ("/healthz", "/metrics", "/api/openapi.json", "/", "/upload")


def _add_common_responses(paths: dict) -> dict:
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path in RATE_LIMITED:
                responses.setdefault("429", ERROR)
            if method == "post":
                responses.setdefault("413", ERROR)
            if path not in NO_DATABASE_NEEDED:
                responses.setdefault("503", ERROR)
    return paths


_add_common_responses(PATHS)


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "With Sense", "version": "1.0.0",
                 "description": "Photo search by description. Errors are JSON: {\"error\", \"status\", \"field\"?}."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer"}}},
    }
