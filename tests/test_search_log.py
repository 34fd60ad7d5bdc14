"""The search log's writer thread (service/search/search_log.py): searches are written in batches
off the request path, within FLUSH_INTERVAL_S without being asked, and a backlog is written whole."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from service.search.search_log import BATCH_SIZE, FLUSH_INTERVAL_S, SearchLogEntry, SearchLogWriter


class _CountingWriter(SearchLogWriter):
    """The real writer, recording the size of each batch it writes."""

    def __init__(self, engine):
        super().__init__(engine)
        self.batches: list[int] = []

    def _write(self, batch):
        self.batches.append(len(batch))
        super()._write(batch)


def _entries(marker: str, n: int) -> list[SearchLogEntry]:
    now = datetime.now(UTC).isoformat()
    return [SearchLogEntry(f"log test {marker} {i}", False, 0, [], None, 1.0, now) for i in range(n)]


def _logged(engine, marker: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM search_log WHERE query LIKE :m"), {"m": f"%{marker}%"}).scalar_one()


def test_searches_are_written_in_one_batch_soon_after_without_a_flush(writable):
    writer, marker = _CountingWriter(writable["engine"]), uuid.uuid4().hex[:8]
    try:
        for entry in _entries(marker, 40):
            writer.add(entry)
        deadline = time.monotonic() + FLUSH_INTERVAL_S + 5
        while _logged(writable["engine"], marker) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _logged(writable["engine"], marker) == 40
        assert writer.batches == [40]  # gathered while the writer slept, not one statement per search
    finally:
        writer.close()


def test_a_backlog_larger_than_a_batch_is_written_whole_by_close(writable):
    writer, marker = _CountingWriter(writable["engine"]), uuid.uuid4().hex[:8]
    n = BATCH_SIZE * 2 + 7
    for entry in _entries(marker, n):
        writer.add(entry)
    writer.close()
    assert _logged(writable["engine"], marker) == n
    assert sum(writer.batches) == n and max(writer.batches) <= BATCH_SIZE
    assert writer.written == n and writer.dropped == 0
