"""API errors as JSON, decided once: views raise ApiError, domain code raises its own exceptions,
and the handlers below turn every one of them into a JSON body with the right status."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from service.accounts.roles import Forbidden
from service.photos.child_marks import PhotoWithheld
from service.photos.images import ImageRejected
from service.photos.uploads import DeletedBefore, KeptMark, PhotoNotFound
from service.search.searcher import NoActiveModel
from service.search.similar import NoVector
from service.store.model_rows import ModelMismatch

log = logging.getLogger(__name__)

# How long a client should wait before retrying when the database is unreachable.
DATABASE_RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error for the client; ``to_dict`` is the body (``service.http.schemas.ErrorBody``)."""

    def __init__(self, message: str, status_code: int = 400, *, field: str | None = None,
                 headers: dict | None = None, problems: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field = field
        self.headers = headers or {}
        self.problems = problems

    def to_dict(self) -> dict:
        body = {"error": self.message, "status": self.status_code}
        if self.field:
            body["field"] = self.field
        if self.problems:
            body["problems"] = self.problems
        return body


# The one table of domain exceptions: status, the request field to blame (if any), extra headers.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str | None, dict]] = {
    PhotoNotFound: (404, None, {}),
    Forbidden: (403, None, {}),  # the key's person may not do this to this photo (service/accounts/roles.py)
    DeletedBefore: (409, "file", {}),  # the bytes of a deleted photo, uploaded again
    KeptMark: (409, "shows_child", {}),  # unmarking a photo that a description marks
    PhotoWithheld: (451, None, {}),  # Unavailable For Legal Reasons: the content rule
    ImageRejected: (422, "file", {}),
    NoVector: (409, None, {}),
    ModelMismatch: (409, None, {}),
    NoActiveModel: (503, None, {"Retry-After": "60"}),
}


def _domain_error(err: Exception):
    status, field, headers = next(v for k, v in DOMAIN_ERRORS.items() if isinstance(err, k))
    return _api_error(ApiError(str(err), status, field=getattr(err, "field", None) or field, headers=headers))


def _api_error(err: ApiError):
    return jsonify(err.to_dict()), err.status_code, err.headers


def _http_error(err: HTTPException):
    # Werkzeug's own errors (404 route, 405 method, 413 body too large...) in the same JSON shape.
    # Keep the headers werkzeug adds (Allow on 405, Retry-After), not its HTML content type.
    headers = {k: v for k, v in err.get_headers() if k.lower() != "content-type"}
    message = err.description or err.name
    if err.code == 413:  # werkzeug's text does not name the limit (checked against Content-Length, body unread)
        limit = current_app.config["WITHSENSE"].max_upload_mb
        message = f"the request body is too large: the limit is {limit} MB (WITHSENSE_MAX_UPLOAD_MB)"
    return jsonify({"error": message, "status": err.code}), err.code, headers


def is_connection_failure(err: DBAPIError) -> bool:
    """True when the database could not be reached or the connection broke (not a bad statement)."""
    return isinstance(err, (OperationalError, InterfaceError)) or bool(err.connection_invalidated)


def database_error(err: DBAPIError) -> ApiError:
    """The one mapping of database exceptions to API errors.

    Unreachable database, a dropped connection, or another transient failure psycopg reports as
    OperationalError (deadlock, statement timeout): 503 with Retry-After (the primary's pool pings
    before each checkout, and a search's shortlist, read without a ping, is read once more on a
    dropped connection: the first request after the database is back reconnects by itself).
    A value the database refuses (e.g. an integer out of bigint range): 400. Anything else is a
    bug: 500, logged with its traceback.
    """
    if is_connection_failure(err):
        log.warning("database unavailable: %s", type(err.orig).__name__ if err.orig else type(err).__name__)
        return ApiError("the database is unavailable; try again shortly", 503,
                        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})
    if isinstance(err, DataError):
        return ApiError("a value in the request is out of range or malformed", 400)
    log.error("database error", exc_info=err)
    return ApiError("internal error", 500)


def _database_error(err: DBAPIError):
    return _api_error(database_error(err))


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DBAPIError, _database_error)
    for exc_type in DOMAIN_ERRORS:
        app.register_error_handler(exc_type, _domain_error)
