"""The schema's migrations (Alembic, ``migrations/``) for a database URL, and scratch databases:
a new database on the same server, migrated to head, dropped when done (`withsense evaluate --ood`
searches a library that must not touch the served one)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from service.config import REPO_ROOT

if TYPE_CHECKING:  # the CLI imports this module at start: SQLAlchemy and the engine only when used
    from sqlalchemy import Engine


def alembic_config(url: str | None = None):
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    if url:
        config.attributes["url"] = url
    return config


@contextmanager
def scratch_database(engine: Engine, prefix: str = "withsense_scratch") -> Iterator[Engine]:
    """An engine on a new database of ``engine``'s server, migrated to head and dropped on exit.
    Needs the CREATEDB privilege (the embedded server's user has it)."""
    from alembic import command
    from sqlalchemy import text

    from service.store.db import make_engine

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")  # CREATE DATABASE runs outside a transaction
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = None
    try:
        url = engine.url.set(database=name).render_as_string(hide_password=False)
        command.upgrade(alembic_config(url), "head")
        scratch = make_engine(url, pool_size=2)
        yield scratch
    finally:
        if scratch is not None:
            scratch.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
