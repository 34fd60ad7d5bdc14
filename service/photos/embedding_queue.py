"""The queue of photos waiting for their image vectors: a table in PostgreSQL (migration 0006).

An upload stores the photo and ``enqueue``s it in its own transaction; a worker
(``service.ingest.embedding_worker``) claims a batch with ``CLAIM_JOBS_SQL`` (``FOR UPDATE SKIP
LOCKED``: concurrent workers take different photos and never wait for each other), writes the
vectors and ``finish``es the jobs before it commits. The claim holds each photo ``FOR SHARE`` too
(skipping one an edit or a deletion holds; the next poll takes it): an edit of its place waits for
the vectors and then rewrites their facets (service/store/facets.py). The row locks last as long as
that transaction, so a worker that dies mid-job (killed, out of memory, connection lost) leaves the
job queued for the next claim. A job that raises counts an attempt (``record_failure``) and is ``failed`` after
``MAX_ATTEMPTS``, so one bad file cannot hold the queue.

Workers run in a process of their own (`withsense worker`), not beside the web workers: ``enqueue``
sends a NOTIFY on ``CHANNEL`` in the upload's transaction (PostgreSQL delivers it at commit, never
for a rolled-back upload), and ``listen`` wakes the worker with it, so an upload does not wait for
the next poll.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
CHANNEL = "embedding_jobs"

ENQUEUE_SQL = text(
    """INSERT INTO embedding_jobs (photo_id) VALUES (:photo_id)
       ON CONFLICT (photo_id) DO UPDATE SET state = 'queued', attempts = 0, last_error = NULL, updated_at = now()"""
)

CLAIM_JOBS_SQL = text(
    """
    SELECT j.photo_id, p.storage_key, j.attempts
    FROM embedding_jobs j JOIN photos p ON p.id = j.photo_id
    WHERE j.state = 'queued'
    ORDER BY j.enqueued_at, j.photo_id
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED FOR SHARE OF p SKIP LOCKED
    """
)

FINISH_JOBS_SQL = text("DELETE FROM embedding_jobs WHERE photo_id = ANY(:photo_ids)")

RECORD_FAILURE_SQL = text(
    """
    UPDATE embedding_jobs
    SET attempts = attempts + 1, last_error = :error, updated_at = now(),
        state = CASE WHEN attempts + 1 >= :max_attempts THEN 'failed' ELSE 'queued' END
    WHERE photo_id = :photo_id
    RETURNING state
    """
)

QUEUED_COUNT_SQL = text("SELECT count(*) FROM embedding_jobs WHERE state = 'queued'")

# What the photo details say about search: the job's state while there is one, then whether the
# photo has a vector under the active ranker of these encoders.
PHOTO_SEARCH_STATE_SQL = text(
    """
    SELECT j.state AS job_state, j.attempts, j.last_error,
           EXISTS (SELECT 1 FROM photo_embeddings e JOIN models m ON m.id = e.model_id
                   WHERE e.photo_id = :photo_id AND m.kind = 'ranker' AND m.active
                     AND m.encoder_key = :encoder_key) AS searchable
    FROM (SELECT 1) one LEFT JOIN embedding_jobs j ON j.photo_id = :photo_id
    """
)


def enqueue(*, session: Session, photo_id: int) -> None:
    session.execute(ENQUEUE_SQL, {"photo_id": photo_id})
    session.execute(text(f"NOTIFY {CHANNEL}"))  # one per transaction however many: PostgreSQL folds equal ones


def listen(engine: Engine, on_job: Callable[[], None], stopping: threading.Event, *, retry_seconds: float = 2.0) -> None:
    """Call ``on_job`` whenever a transaction that enqueued a job commits, until ``stopping`` is set.

    Runs on a connection of its own (LISTEN needs one that stays open outside any transaction). When
    the database goes away it reconnects every ``retry_seconds`` and calls ``on_job`` once back, for
    the jobs enqueued meanwhile; the worker's poll covers them too, this only makes it sooner.
    """
    last_error = None
    while not stopping.is_set():
        try:
            raw = engine.raw_connection()
            try:
                conn = raw.driver_connection
                conn.autocommit = True
                conn.execute(f"LISTEN {CHANNEL}")
                on_job()
                last_error = None
                while not stopping.is_set():
                    # Returns after a notification or a second, to look at ``stopping``.
                    if any(True for _ in conn.notifies(timeout=1.0, stop_after=1)):
                        on_job()
            finally:
                raw.invalidate()  # the session is LISTENing: never hand it back to the pool
        except Exception as exc:  # noqa: BLE001 - the database away: retried, logged once per outage
            error = f"{type(exc).__name__}: {exc}"
            if error != last_error:
                log.warning("listening for embedding jobs: %s", error)
            last_error = error
            stopping.wait(retry_seconds)


def claim(conn: Connection, *, limit: int) -> list[tuple[int, str, int]]:
    """Lock up to ``limit`` queued jobs for this transaction: (photo_id, storage_key, attempts)."""
    return [tuple(row) for row in conn.execute(CLAIM_JOBS_SQL, {"limit": limit}).all()]


def finish(conn: Connection, photo_ids: list[int]) -> None:
    conn.execute(FINISH_JOBS_SQL, {"photo_ids": list(photo_ids)})


def record_failure(conn: Connection, *, photo_id: int, error: str) -> str | None:
    """Count a failed attempt; returns the job's new state ('queued' again, or 'failed')."""
    return conn.execute(RECORD_FAILURE_SQL, {"photo_id": photo_id, "error": error[:2000],
                                             "max_attempts": MAX_ATTEMPTS}).scalar()


def queued_count(conn: Connection) -> int:
    return int(conn.execute(QUEUED_COUNT_SQL).scalar())


@dataclass(frozen=True)
class SearchState:
    """Whether search finds a photo yet. ``attempts`` is set while a job exists (pending, failed);
    ``error`` only for a failed one."""

    state: Literal["pending", "failed", "searchable", "not_indexed"]
    attempts: int | None = None
    error: str | None = None


def search_state(*, session: Session, photo_id: int, encoder_key: str) -> SearchState:
    """The photo's job state while it has one, else whether it has a vector under the active ranker."""
    row = session.execute(PHOTO_SEARCH_STATE_SQL, {"photo_id": photo_id, "encoder_key": encoder_key}).one()
    if row.job_state == "queued":
        return SearchState("pending", attempts=row.attempts)
    if row.job_state == "failed":
        return SearchState("failed", attempts=row.attempts, error=row.last_error)
    # No job: vectors landed. Without an active ranker nothing is searchable until `withsense train`.
    return SearchState("searchable" if row.searchable else "not_indexed")
