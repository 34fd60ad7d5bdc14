"""Per-client rate limit on search: a sliding window over the last 60 s, kept in this process.

``WITHSENSE_RATE_LIMIT`` searches per minute per client address (``request.remote_addr``); ``0``
turns it off (benchmarks, the soak test). The window lives in memory of each worker process, so
under gunicorn with N workers a client can get up to N times the limit in the worst case, and the
count starts over when a worker restarts. Behind a reverse proxy every client has the proxy's
address: put the limit in the proxy then, or trust X-Forwarded-For with werkzeug's ProxyFix.
Applies to POST /api/search and POST /api/search/similar; over the limit the answer is 429 JSON
with ``Retry-After`` (whole seconds until the oldest request in the window leaves it).

Writes are limited per person instead (``WITHSENSE_WRITE_RATE_LIMIT``, keyed by the user id of the
request's key, the same window and per-process rule): an address says nothing about who writes, and
a person writing from many addresses is still one person. ``service.http.auth.require_write``
counts the write once the key is known; admins are not limited.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque

from flask import Flask, request

from service.http.errors import ApiError

LIMITED_ENDPOINTS = frozenset({"search.search", "search.similar"})
WINDOW_S = 60.0
MAX_CLIENTS = 10_000  # bounded memory: the idlest clients are forgotten first


class SlidingWindowLimiter:
    """At most ``limit`` hits per ``window`` seconds per key; ``hit`` returns seconds to wait (0 = allowed)."""

    def __init__(self, limit: int, window: float = WINDOW_S, clock=time.monotonic, max_keys: int = MAX_CLIENTS):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        now = self.clock()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            self._hits[key] = hits  # re-inserted last: dict order is least recently seen first
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            if len(self._hits) > self.max_keys:
                del self._hits[next(iter(self._hits))]
            return 0.0


def init_app(app: Flask, limit_per_minute: int, writes_per_minute: int = 0) -> None:
    if writes_per_minute > 0:
        app.extensions["withsense.write_ratelimit"] = SlidingWindowLimiter(writes_per_minute)
    if limit_per_minute <= 0:
        return
    limiter = SlidingWindowLimiter(limit_per_minute)
    app.extensions["withsense.ratelimit"] = limiter

    @app.before_request
    def _limit_search():
        if request.endpoint not in LIMITED_ENDPOINTS:
            return None
        wait = limiter.hit(request.remote_addr or "unknown")
        if wait > 0:
            raise ApiError(f"too many searches: at most {limiter.limit} per minute per client; "
                           f"retry in {math.ceil(wait)} s", 429, headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return None
