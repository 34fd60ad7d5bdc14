"""Checks of request input: each failure raises ApiError naming the field and what was wrong."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import request

from service.http.errors import ApiError

MAX_QUERY_CHARS = 500


def json_body() -> dict:
    if not request.is_json:
        raise ApiError("send a JSON body with Content-Type: application/json", 415)
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # JSON nested thousands of levels deep: the parser gives up, and so do we
        raise ApiError("the body is not a JSON object (nested too deeply)") from None
    if not isinstance(body, dict):
        raise ApiError("the body is not a JSON object")
    return body


def text_field(body: dict, name: str, *, max_chars: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(f"'{name}' is required", field=name)
        return None
    if not isinstance(value, str):
        raise ApiError(f"'{name}' must be a string", field=name)
    cleaned = "".join(ch for ch in value if ch.isprintable() or ch in " \t\n").strip()
    if not cleaned:
        raise ApiError(f"'{name}' is empty", field=name)
    if len(cleaned) > max_chars:
        raise ApiError(f"'{name}' is {len(cleaned)} characters; at most {max_chars}", field=name)
    return cleaned


def int_field(body: dict, name: str, *, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(f"'{name}' must be an integer", field=name)
    if not low <= value <= high:
        raise ApiError(f"'{name}' must be between {low} and {high}", field=name)
    return value


def number_field(body: dict, name: str, *, low: float, high: float) -> float | None:
    """An optional number in [low, high]; None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(f"'{name}' must be a number", field=name)
    if not low <= value <= high:
        raise ApiError(f"'{name}' must be between {low} and {high}", field=name)
    return float(value)


def bool_field(body: dict, name: str, *, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(f"'{name}' must be true or false", field=name)
    return value


def datetime_field(body: dict, name: str) -> datetime | None:
    """An optional ISO 8601 date or date-time; without a time zone it is taken as UTC."""

    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(f"'{name}' must be an ISO 8601 date-time string", field=name)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError(f"'{name}' is not an ISO 8601 date-time (e.g. 2024-05-01T12:00:00Z)", field=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def form_int(form, name: str, *, default: int, low: int, high: int) -> int:
    """An integer from a multipart/urlencoded form field (where every value arrives as a string)."""
    raw = form.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"'{name}' must be an integer", field=name) from None
    return int_field({name: value}, name, default=default, low=low, high=high)
