"""API errors as JSON, decided once: views raise ApiError, the handlers below format every error."""
from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    def __init__(self, message: str, status_code: int = 400, *, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field = field
        self.headers = headers or {}

    def to_dict(self) -> dict:
        body = {"error": self.message, "status": self.status_code}
        if self.field:
            body["field"] = self.field
        return body


def _api_error(err: ApiError):
    return jsonify(err.to_dict()), err.status_code, err.headers


def _http_error(err: HTTPException):
    # Werkzeug's own errors (404 route, 405 method, 413 body too large...) in the same JSON shape.
    return jsonify({"error": err.description or err.name, "status": err.code}), err.code


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
