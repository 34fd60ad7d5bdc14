"""Rate limits shared by every worker and every server: counters in PostgreSQL (migration 0013).

Three limits, each counted per client in fixed 60 s windows of the database's clock:

- ``WITHSENSE_RATE_LIMIT``: searches per minute per client address (POST /api/search and
  POST /api/search/similar); ``0`` turns it off (benchmarks, the soak test).
- ``WITHSENSE_WRITE_RATE_LIMIT``: writes per minute per person (the user id of the request's key):
  an address says nothing about who writes, and a person writing from many addresses is still one
  person. ``service.http.auth.require_write`` counts the write once the key is known; admins are
  not limited.
- ``WITHSENSE_KEY_FAILURE_LIMIT``: wrong, unknown or revoked keys per minute per client address,
  independent of the other two. Past it, every request that carries a key from that address is
  answered 429 until the window ends, without the key being checked (``service.http.auth``).

Over a limit the answer is 429 JSON with ``Retry-After`` (whole seconds until the window ends).
The counters are on the primary: while it is unreachable, searches (which replicas can serve) are
let through uncounted, and writes and key checks fail with 503 as they would anyway.

One statement per limited request, on its own autocommit connection (so a count sticks even when
the request itself fails and rolls back): ``INSERT ... ON CONFLICT DO UPDATE SET n = n + 1 WHERE
n < limit RETURNING n``; no row back means the client is over the limit. A refused request is not
counted, so a client that keeps knocking is let in again when the window turns. A fixed window
lets a client spend up to twice the limit across a window boundary (the end of one window and
the start of the next); the limit is a guard against floods, not an exact quota. Each process
deletes windows older than two minutes once a minute (one indexed DELETE).

The client's address is ``request.remote_addr``, unless that address is one of
``WITHSENSE_TRUSTED_PROXIES`` (nginx in front, docs/deploy.md): then it is the last address in
``X-Forwarded-For`` that is not itself a trusted proxy, else ``X-Real-IP``. werkzeug's ProxyFix is
not used because it believes the header from whoever sends it (it trusts a number of hops, not
addresses): a client talking to the service directly could name any address and escape its limit.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time

from flask import Flask, current_app, g, request
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from service.config import Settings
from service.http.errors import ApiError

LIMITED_ENDPOINTS = frozenset({"search.search", "search.similar"})
WINDOW_S = 60
PURGE_EVERY_S = 60.0
EXTENSION = "withsense.limits"

log = logging.getLogger(__name__)

HIT_SQL = text(
    """WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / :window) * :window) AS start),
       hit AS (
           INSERT INTO rate_counters AS c (bucket, client, window_start)
           SELECT :bucket, :client, start FROM w
           ON CONFLICT (bucket, client, window_start) DO UPDATE SET n = c.n + 1 WHERE c.n < :limit
           RETURNING c.n)
       SELECT (SELECT n FROM hit) AS n,
              extract(epoch FROM (SELECT start FROM w) + make_interval(secs => :window) - now()) AS wait"""
)
COUNT_SQL = text(
    """WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / :window) * :window) AS start)
       SELECT coalesce((SELECT n FROM rate_counters c, w
                        WHERE c.bucket = :bucket AND c.client = :client AND c.window_start = w.start), 0) AS n,
              extract(epoch FROM (SELECT start FROM w) + make_interval(secs => :window) - now()) AS wait"""
)
PURGE_SQL = text("DELETE FROM rate_counters WHERE window_start < now() - make_interval(secs => 2 * :window)")


class SharedLimits:
    """Counters in the ``rate_counters`` table, on the app's autocommit engine (no pre-ping: one round
    trip per hit; a dropped connection fails that request with 503 and is replaced)."""

    def __init__(self, engine: Engine, window: int = WINDOW_S):
        self.engine = engine
        self.window = window
        self._purged_at = time.monotonic()
        self._lock = threading.Lock()

    def hit(self, bucket: str, client: str, limit: int) -> float:
        """Count one request; returns 0 when allowed, else seconds until the window ends (not counted)."""
        n, wait = self.hit_count(bucket, client, limit)
        return 0.0 if n is not None else wait

    def hit_count(self, bucket: str, client: str, limit: int) -> tuple[int | None, float]:
        """Count one request: (its number in the window, or None when over ``limit``; seconds left)."""
        with self.engine.connect() as conn:
            row = conn.execute(HIT_SQL, {"window": self.window, "bucket": bucket, "client": client,
                                         "limit": limit}).one()
            self._maybe_purge(conn)
        return row.n, max(float(row.wait), 0.001)

    def count(self, bucket: str, client: str) -> tuple[int, float]:
        """(hits in the current window, seconds until it ends), without counting."""
        with self.engine.connect() as conn:
            row = conn.execute(COUNT_SQL, {"window": self.window, "bucket": bucket, "client": client}).one()
        return int(row.n), max(float(row.wait), 0.001)

    def _maybe_purge(self, conn) -> None:
        with self._lock:
            if time.monotonic() - self._purged_at < PURGE_EVERY_S:
                return
            self._purged_at = time.monotonic()
        conn.execute(PURGE_SQL, {"window": self.window})


def limits() -> SharedLimits:
    return current_app.extensions[EXTENSION]


def too_many(message: str, wait: float) -> ApiError:
    seconds = max(1, math.ceil(wait))
    return ApiError(f"{message}; retry in {seconds} s", 429, headers={"Retry-After": str(seconds)})


def _networks(value: str) -> tuple:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


def _trusted(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_address() -> str:
    """The client's address: the peer, or what a trusted proxy says it is (cached in ``g``)."""
    if "client_address" in g:
        return g.client_address
    peer = request.remote_addr or "unknown"
    networks = current_app.extensions.get("withsense.trusted_proxies", ())
    address = peer
    if networks and _trusted(peer, networks):
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        # From the right: the nearest hop first; skip our own proxies, the first other one is the client.
        for hop in reversed(forwarded):
            if not _trusted(hop, networks):
                address = _valid(hop) or peer
                break
        else:
            address = _valid(request.headers.get("X-Real-IP", "")) or (
                _valid(forwarded[0]) if forwarded else None) or peer
    g.client_address = address
    return address


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["withsense.trusted_proxies"] = _networks(settings.trusted_proxies)
    app.extensions[EXTENSION] = SharedLimits(app.extensions["withsense.autocommit_engine"])
    if settings.write_rate_limit > 0:
        app.extensions["withsense.write_ratelimit"] = settings.write_rate_limit  # counted in auth.require_write
    limit = settings.rate_limit
    if limit <= 0:
        return
    app.extensions["withsense.ratelimit"] = limit

    @app.before_request
    def _limit_search():
        if request.endpoint not in LIMITED_ENDPOINTS:
            return None
        try:
            wait = limits().hit("search", client_address(), limit)
        except DBAPIError as exc:
            # The counters live on the primary; searches may be served by replicas while it is
            # down. Availability of reads beats the limit for that while: let the search through.
            log.warning("search limit not counted, the primary is unreachable: %s", type(exc).__name__)
            return None
        if wait > 0:
            raise too_many(f"too many searches: at most {limit} per minute per client", wait)
        return None
