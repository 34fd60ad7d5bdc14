"""Read replicas: which one may serve a read now, and the fall-back to the primary when none may.

Searches, similar photos and photo details only read, so they can go to PostgreSQL streaming
replicas (``WITHSENSE_REPLICA_URLS``). A replica serves only while it is healthy: reachable, in
recovery (a standby, not a promoted copy), streaming from the primary, and at most
``WITHSENSE_MAX_REPLICA_LAG_S`` behind. Health is checked at most once per ``RECHECK_S`` per
replica and process, inside the request that finds the last check stale; a replica that fails or
lags is skipped, and used again as soon as a later check finds it well. A read that fails on a
replica (it died after its last check) is marked down and run again on the primary, so a dead
replica costs one retry, never an error.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

# How stale a replica's last health check may be before the next read checks again. One second
# keeps a dead or lagging replica out within about a second and costs one small query per second.
RECHECK_S = 1.0
# A replica that does not answer a connection within this is down (TCP to a vanished host would
# otherwise hang a request for the OS default of minutes).
CONNECT_TIMEOUT_S = 2

# The standby's own view of its position: WAL received and replayed (as byte offsets) and the commit
# time of the last transaction it replayed.
REPLICA_HEALTH_SQL = text(
    """
    SELECT pg_is_in_recovery() AS in_recovery,
           (SELECT status FROM pg_stat_wal_receiver) AS receiver_status,
           pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0') AS received,
           pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0') AS replayed,
           extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) AS since_last_replayed_commit
    """
)


@dataclass(frozen=True)
class Health:
    healthy: bool
    lag_s: float | None
    reason: str
    received: int | None = None  # for the next check's comparison


def replay_lag_s(row, previous: Health | None, seconds_since_previous: float | None) -> float | None:
    """How many seconds of the primary's work the standby has yet to replay.

    Caught up (everything received is replayed): 0. Otherwise PostgreSQL's usual measure is the age
    of the last replayed commit, which overstates the lag after the primary was idle (the last
    commit is old, yet the new WAL is being replayed right now). So when the standby has replayed
    everything it had received at the previous check, it is at most one check interval behind.
    """
    if row["received"] is None or row["replayed"] is None:
        return None  # not streaming yet: nothing is known
    if row["replayed"] >= row["received"]:
        return 0.0
    if previous is not None and previous.received is not None and row["replayed"] >= previous.received:
        return float(seconds_since_previous or 0.0)
    return None if row["since_last_replayed_commit"] is None else float(row["since_last_replayed_commit"])


@dataclass
class Replica:
    url: str
    engine: Engine
    healthy: bool = False
    lag_s: float | None = None
    reason: str = "not checked yet"
    checked_at: float = field(default=-1e9)
    last: Health | None = None

    def describe(self) -> dict:
        url = make_url(self.url)
        where = url.host or url.query.get("host", "")
        port = url.port or url.query.get("port", "")
        return {"replica": f"{where}:{port}/{url.database}", "healthy": self.healthy,
                "lag_s": None if self.lag_s is None else round(self.lag_s, 3), "reason": self.reason}


def check_health(conn, max_lag_s: float, previous: Health | None = None,
                 seconds_since_previous: float | None = None) -> Health:
    """Health of the server at the other end of ``conn``; ``previous`` is its last check, if any."""
    row = conn.execute(REPLICA_HEALTH_SQL).mappings().one()
    received = None if row["received"] is None else int(row["received"])
    lag = replay_lag_s(row, previous, seconds_since_previous)
    if not row["in_recovery"]:
        return Health(False, lag, "not a standby (promoted, or a primary)", received)
    if row["receiver_status"] != "streaming":
        return Health(False, lag, f"not streaming from the primary (wal receiver: {row['receiver_status'] or 'none'})",
                      received)
    if lag is None or lag > max_lag_s:
        shown = "?" if lag is None else f"{lag:.1f}"
        return Health(False, lag, f"lagging {shown} s behind the primary (limit {max_lag_s} s)", received)
    return Health(True, lag, "ok", received)


class ReadReplicas:
    """The replicas of one process, with their last health check; hands out a healthy one in turn."""

    def __init__(self, urls: list[str], *, max_lag_s: float, engine_factory: Callable[..., Engine]) -> None:
        self.max_lag_s = max_lag_s
        self.replicas = [Replica(url, engine_factory(url, connect_timeout=CONNECT_TIMEOUT_S)) for url in urls]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        # Reads answered by a replica, and reads sent to the primary, for the tests and benchmarks.
        self.served: Counter[str] = Counter()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def _refresh(self, replica: Replica) -> None:
        now = time.monotonic()
        # One thread re-checks a stale replica; the others keep using its last verdict meanwhile.
        if now - replica.checked_at < RECHECK_S or not self._lock.acquire(blocking=False):
            return
        try:
            since = now - replica.checked_at
            replica.checked_at = now
            with replica.engine.connect() as conn:
                replica.last = check_health(conn, self.max_lag_s, replica.last, since)
            replica.healthy, replica.lag_s, replica.reason = replica.last.healthy, replica.last.lag_s, replica.last.reason
        except DBAPIError as exc:
            replica.healthy, replica.lag_s, replica.last = False, None, None
            replica.reason = f"unreachable: {type(exc.orig).__name__}"
            replica.engine.dispose()  # drop pooled connections to a server that went away
        finally:
            self._lock.release()

    def choose(self) -> Replica | None:
        """A healthy replica (in turn, when there are several), or None."""
        for replica in self.replicas:
            self._refresh(replica)
        healthy = [r for r in self.replicas if r.healthy]
        return healthy[next(self._turn) % len(healthy)] if healthy else None

    def mark_down(self, replica: Replica, exc: Exception) -> None:
        replica.healthy, replica.last = False, None
        replica.reason = f"failed a read: {type(getattr(exc, 'orig', exc)).__name__}"
        replica.checked_at = time.monotonic()
        replica.engine.dispose()

    def status(self) -> list[dict]:
        for replica in self.replicas:
            self._refresh(replica)
        return [r.describe() for r in self.replicas]

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()


def read_with_fallback(primary: Engine, replicas: ReadReplicas | None, read: Callable[[Engine], T], *,
                       use_primary: bool = False, retry_on_primary: tuple[type[Exception], ...] = ()) -> T:
    """``read(engine)`` on a healthy replica, else on the primary.

    A database error on the replica marks it down and the read runs again on the primary. So does
    any exception in ``retry_on_primary``: "not found" on a replica may only mean "not replicated
    yet" (a photo uploaded a moment ago), and the primary is the one that knows.
    """
    replica = None if use_primary or not replicas else replicas.choose()
    if replica is not None:
        try:
            result = read(replica.engine)
            replicas.served["replica"] += 1
            return result
        except Exception as exc:  # noqa: BLE001 - sorted below; anything else is raised again
            error = exc.orig if isinstance(exc, DBAPIError) else exc
            # Order matters: psycopg files a replay conflict under OperationalError too.
            if isinstance(error, _retry_elsewhere()) or isinstance(exc, retry_on_primary):
                pass
            elif isinstance(error, _server_gone()):
                replicas.mark_down(replica, exc)
            else:
                raise
    if replicas:
        replicas.served["primary"] += 1
    return read(primary)


def _server_gone() -> tuple[type[Exception], ...]:
    """psycopg errors that say the server is gone or refuses connections: the replica is down."""
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.AdminShutdown,
            psycopg.errors.CannotConnectNow)


def _retry_elsewhere() -> tuple[type[Exception], ...]:
    """Errors of one read on a healthy standby, e.g. a query cancelled by a conflict with WAL replay."""
    import psycopg

    return (psycopg.errors.SerializationFailure, psycopg.errors.ReadOnlySqlTransaction)
