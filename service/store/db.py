"""The one place that builds the database engines and hands out sessions.

pgvector's types are registered on every new connection, so numpy arrays bind as ``vector``
parameters and ``vector`` columns come back as numpy arrays.

Writes, and reads that must see a write just made, use the primary (``get_session``). Reads that
may be a moment old (searches, similar photos, photo details) go through ``run_read``, which uses a
healthy streaming replica when ``WITHSENSE_REPLICA_URLS`` names any (``service.store.replicas``).
A client that wrote in the last ``WITHSENSE_MAX_REPLICA_LAG_S`` seconds reads from the primary
(a cookie set on its write response, the read-your-writes rule Rails' database selector uses), so
the photo page right after an upload shows the upload.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import numpy as np
from flask import Flask, current_app, g, request
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.store import embedded
from service.store.replicas import ReadReplicas, read_with_fallback

T = TypeVar("T")

# Set on the response to a write; its value is the time of the write (epoch seconds).
WROTE_AT_COOKIE = "withsense_wrote_at"


def resolve_url(settings: Settings) -> str:
    """DATABASE_URL when set (normalised to psycopg 3), else the embedded server, started on demand."""
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url
    return embedded.start(settings.pgdata_dir)


def _register_vector(dbapi_connection, _record) -> None:
    from pgvector.psycopg import register_vector

    try:
        register_vector(dbapi_connection)
    except Exception:  # noqa: BLE001 - before the first migration the extension does not exist yet
        dbapi_connection.rollback()


def make_engine(url: str, *, pool_size: int = 5, connect_timeout: int | None = None) -> Engine:
    connect_args = {"connect_timeout": connect_timeout} if connect_timeout else {}
    engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=5, connect_args=connect_args)
    event.listen(engine, "connect", _register_vector)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session for CLI and scripts: commit on success, roll back on error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["withsense.sessionmaker"]()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(resolve_url(settings))
    app.extensions["withsense.engine"] = engine
    app.extensions["withsense.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.extensions["withsense.replicas"] = ReadReplicas(
        settings.replica_url_list, max_lag_s=settings.max_replica_lag_s, engine_factory=make_engine)
    app.teardown_appcontext(close_session)
    app.after_request(_remember_write)


def replicas_of(app: Flask | None = None) -> ReadReplicas:
    return (app or current_app).extensions["withsense.replicas"]


def _wrote_recently() -> bool:
    try:
        wrote_at = float(request.cookies.get(WROTE_AT_COOKIE, "nan"))
    except ValueError:
        return False
    lag = current_app.config["WITHSENSE"].max_replica_lag_s
    return not math.isnan(wrote_at) and 0 <= time.time() - wrote_at <= lag + 1


def _remember_write(response):
    """After a successful write, this client reads from the primary until replicas have caught up."""
    if g.get("wrote") and response.status_code < 300 and replicas_of():
        lag = current_app.config["WITHSENSE"].max_replica_lag_s
        response.set_cookie(WROTE_AT_COOKIE, f"{time.time():.3f}", max_age=math.ceil(lag) + 1,
                            httponly=True, samesite="Lax")
    return response


def note_write() -> None:
    """Called by views that commit: the response tells the client to read from the primary for a while."""
    g.wrote = True


def run_read(read: Callable[[Session], T], *, retry_on_primary: tuple[type[Exception], ...] = ()) -> T:
    """``read(session)`` on a healthy replica, else on the primary (see ``read_with_fallback``).

    On the primary it gets the request's own session; on a replica a short-lived one.
    """
    primary = current_app.extensions["withsense.engine"]

    def on(engine: Engine) -> T:
        if engine is primary:
            return read(get_session())
        with Session(engine) as session:
            return read(session)

    return read_with_fallback(primary, replicas_of(), on, use_primary=_wrote_recently(),
                              retry_on_primary=retry_on_primary)


def as_array(value) -> np.ndarray:
    """A vector column value as float32 numpy (pgvector returns its own Vector type)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def driver_connection(conn):
    """The psycopg connection under a SQLAlchemy one, for COPY and binary-transfer queries."""
    return conn.connection.driver_connection
