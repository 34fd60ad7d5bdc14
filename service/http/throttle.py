"""Throttled guessing: wrong keys counted per client address in PostgreSQL (``rate_counters``,
bucket ``key_failure``), shared by every worker and server; ``WITHSENSE_KEY_FAILURE_LIMIT`` per
minute, independent of the search and write limits (service/http/ratelimit.py).

``check`` runs before a key is looked at: an address over the limit gets 429 with ``Retry-After``
until the window ends, whatever key it sends (so guessing costs the guesser the minute, not us an
argon2 check). ``failed_attempt`` counts a refused key; the attempt that reaches the limit is
itself answered 429, every earlier one 403.
"""
from __future__ import annotations

from flask import current_app

from service.http.errors import ApiError
from service.http.ratelimit import client_address, limits, too_many

BUCKET = "key_failure"


def _limit() -> int:
    return current_app.config["WITHSENSE"].key_failure_limit


def _refusal(limit: int, wait: float) -> ApiError:
    return too_many(f"too many wrong keys from this address: at most {limit} per minute", wait)


def check() -> None:
    """429 when this address has used up its wrong keys for the current minute."""
    limit = _limit()
    if limit <= 0:
        return
    failures, wait = limits().count(BUCKET, client_address())
    if failures >= limit:
        raise _refusal(limit, wait)


def failed_attempt(error: ApiError) -> ApiError:
    """Count a refused key; returns the error to raise (``error``, or 429 once the limit is reached)."""
    limit = _limit()
    if limit <= 0:
        return error
    failures, wait = limits().hit_count(BUCKET, client_address(), limit)
    return _refusal(limit, wait) if failures is None or failures >= limit else error
