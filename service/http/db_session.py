"""The database seen from a request: the app's engines, the request's session and read-your-writes.

``init_app`` builds the primary's engine (``service.store.db.make_engine``) and the read replicas
and keeps them on the app. Writes, and reads that must see a write just made, use the request's
session on the primary (``get_session``: opened on first use, closed at teardown). Reads that may be
a moment old (searches, similar photos, photo details) go through ``run_read``, which uses a
healthy streaming replica when ``WITHSENSE_REPLICA_URLS`` names any (``service.store.replicas``).
A client that wrote in the last ``WITHSENSE_MAX_REPLICA_LAG_S`` seconds reads from the primary
(a cookie set on its write response, the read-your-writes rule Rails' database selector uses), so
the photo page right after an upload shows the upload.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.search import shortlist
from service.store.db import make_autocommit_engine, make_engine, resolve_url
from service.store.replicas import ReadReplicas, read_with_fallback

T = TypeVar("T")

# Set on the response to a write; its value is the time of the write (epoch seconds).
WROTE_AT_COOKIE = "withsense_wrote_at"


def init_app(app: Flask, settings: Settings) -> None:
    url = resolve_url(settings)
    engine = make_engine(url)
    app.extensions["withsense.engine"] = engine
    # Searches' shortlists and the rate counters: one statement each, no transaction, no ping.
    # Their sessions start with what an unfiltered index search needs (``fetch_shortlist``).
    search_ef = shortlist.search_ef(settings.hnsw_ef_search, settings.shortlist)
    app.extensions["withsense.autocommit_engine"] = make_autocommit_engine(
        url, pool_size=settings.threads, session_settings=shortlist.session_settings(search_ef))
    app.extensions["withsense.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["withsense.replicas"] = ReadReplicas(
        settings.replica_url_list, max_lag_s=settings.max_replica_lag_s, engine_factory=make_engine)
    app.teardown_appcontext(close_session)
    app.after_request(_remember_write)


def get_session() -> Session:
    """The request's session on the primary, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["withsense.sessionmaker"]()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def replicas_of(app: Flask | None = None) -> ReadReplicas:
    return (app or current_app).extensions["withsense.replicas"]


def note_write() -> None:
    """Called by views that commit: the response tells the client to read from the primary for a while."""
    g.wrote = True


def _remember_write(response):
    """After a successful write, this client reads from the primary until replicas have caught up."""
    if g.get("wrote") and response.status_code < 300 and replicas_of():
        lag = current_app.config["WITHSENSE"].max_replica_lag_s
        response.set_cookie(WROTE_AT_COOKIE, f"{time.time():.3f}", max_age=math.ceil(lag) + 1,
                            httponly=True, samesite="Lax")
    return response


def _wrote_recently() -> bool:
    try:
        wrote_at = float(request.cookies.get(WROTE_AT_COOKIE, "nan"))
    except ValueError:
        return False
    lag = current_app.config["WITHSENSE"].max_replica_lag_s
    return not math.isnan(wrote_at) and 0 <= time.time() - wrote_at <= lag + 1


def run_read(read: Callable[[Session], T], *, retry_on_primary: tuple[type[Exception], ...] = ()) -> T:
    """``read(session)`` on a healthy replica, else on the primary (see ``read_with_fallback``).

    On the primary it gets the request's own session; on a replica a short-lived one. A client
    that wrote a moment ago reads from the primary.
    """
    primary = current_app.extensions["withsense.engine"]

    def on(engine: Engine) -> T:
        if engine is primary:
            return read(get_session())
        with Session(engine) as session:
            return read(session)

    return read_with_fallback(primary, replicas_of(), on, use_primary=_wrote_recently(),
                              retry_on_primary=retry_on_primary)
