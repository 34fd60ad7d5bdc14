"""The search log, written off the request path: searches are queued in memory and a background
thread inserts them in batches (one multi-row INSERT per batch, in one transaction).

Nothing is lost on a clean stop: ``close()`` drains the queue and is called by gunicorn's
``worker_exit`` hook and, as a backstop for the CLI and tests, by ``atexit``. A batch that fails
(database down) is retried a few times, then dropped with a logged error, so a broken database
never grows a worker's memory without bound.

Each row keeps the query's text-encoder vector (``text_vector``, under ``text_model_id``) and its
``min_score``, so analysts can re-run a logged search in SQL under any ranker
(``ranker_query_vector``, docs/analysts.md). The writer thread, not the request, formats the vector
and applies the content rule to the query (``about_children``): a flagged query's vector is not
kept, and analysts see the notice in place of its text (migration 0010).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, text

from service.policy import is_about_children

log = logging.getLogger(__name__)

# One statement for a whole batch: unnest() turns the parallel arrays into rows.
INSERT_SEARCH_LOG_SQL = text(
    """INSERT INTO search_log (query, blocked, n_results, photo_ids, model_id, took_ms, created_at,
                              min_score, text_model_id, text_vector, about_children)
       SELECT q, b, n, CAST(p AS jsonb), m, t, c, ms, tm, CAST(tv AS vector), ac
       FROM unnest(CAST(:queries AS text[]), CAST(:blocked AS boolean[]), CAST(:n_results AS int[]),
                   CAST(:photo_ids AS text[]), CAST(:model_ids AS bigint[]), CAST(:took_ms AS float8[]),
                   CAST(:created_at AS timestamptz[]), CAST(:min_scores AS float8[]),
                   CAST(:text_model_ids AS bigint[]), CAST(:text_vectors AS text[]),
                   CAST(:about_children AS boolean[])) AS t(q, b, n, p, m, t, c, ms, tm, tv, ac)"""
)

BATCH_SIZE = 500
FLUSH_INTERVAL_S = 0.5  # the longest a search waits in memory before its row is written
MAX_QUEUED = 100_000  # beyond this (database unreachable for long) new entries are dropped, not kept
RETRIES = 3


@dataclass(frozen=True)
class SearchLogEntry:
    query: str
    blocked: bool
    n_results: int
    photo_ids: list[int]
    model_id: int | None
    took_ms: float
    created_at: str  # ISO 8601 with time zone: when the search ran, not when its row was written
    min_score: float | None = None
    text_model_id: int | None = None
    text_vector: np.ndarray | None = None  # the text encoder's (the cached, read-only array: no copy)


class SearchLogWriter:
    """A queue and the thread that empties it into ``search_log``; one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.Queue[SearchLogEntry | None] = queue.Queue(maxsize=MAX_QUEUED)
        self._wake = threading.Event()  # set by flush() and close(): write now, do not wait for a batch
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._closed = False
        self.written = 0
        self.dropped = 0

    def add(self, entry: SearchLogEntry) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every entry queued so far is written (tests, and before shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(_FlushMarker(done))
        self._wake.set()
        done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the thread. Safe to call twice."""
        with self._lock:
            if self._closed or self._thread is None or self._pid != os.getpid():
                self._closed = True
                return
            self._closed = True
        self._queue.put(None)
        self._wake.set()
        self._thread.join(timeout)

    def _ensure_thread(self) -> None:
        # Started lazily and per process: a thread does not survive gunicorn's fork (and a closed
        # writer that is handed more lines starts again rather than dropping them).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._closed = False
            self._thread = threading.Thread(target=self._run, name="search-log-writer", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]  # sleeps until a search is logged
            if isinstance(items[0], SearchLogEntry) and self._queue.qsize() < BATCH_SIZE - 1:
                # Let a batch gather while asleep: waking for every entry (a get() per entry) took the
                # GIL from the request threads once per search. A backlog is written without waiting.
                self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()  # before draining: a flush marker queued by now is drained below
            while len(items) < BATCH_SIZE:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(i is None for i in items)
            if stop:  # drain what is left behind the stop sentinel
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            batch = [i for i in items if isinstance(i, SearchLogEntry)]
            for start in range(0, len(batch), BATCH_SIZE):
                self._write(batch[start:start + BATCH_SIZE])
            for marker in (i for i in items if isinstance(i, _FlushMarker)):
                marker.done.set()

    def _write(self, batch: list[SearchLogEntry]) -> None:
        flagged = [is_about_children(e.query) for e in batch]
        params = {
            "queries": [e.query for e in batch], "blocked": [e.blocked for e in batch],
            "n_results": [e.n_results for e in batch], "photo_ids": [json.dumps(e.photo_ids) for e in batch],
            "model_ids": [e.model_id for e in batch], "took_ms": [e.took_ms for e in batch],
            "created_at": [e.created_at for e in batch], "min_scores": [e.min_score for e in batch],
            "text_model_ids": [e.text_model_id for e in batch], "about_children": flagged,
            "text_vectors": [None if flag or e.text_vector is None else _vector_literal(e.text_vector)
                             for e, flag in zip(batch, flagged, strict=True)],
        }
        for attempt in range(1, RETRIES + 1):
            try:
                with self.engine.begin() as conn:
                    conn.execute(INSERT_SEARCH_LOG_SQL, params)
                self.written += len(batch)
                return
            except Exception:  # noqa: BLE001 - the log must never take the worker down
                log.warning("search log: batch of %d not written (attempt %d of %d)", len(batch), attempt, RETRIES,
                            exc_info=attempt == RETRIES)
                time.sleep(0.5 * attempt)
        self.dropped += len(batch)


def _vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form; float32 values keep their 9 significant digits."""
    return "[" + ",".join(np.char.mod("%.9g", np.asarray(vector, np.float32)).tolist()) + "]"


@dataclass(frozen=True)
class _FlushMarker:
    done: threading.Event
