"""A photo's facets beside its vectors (migration 0018), kept equal to ``photos`` under concurrent writes.

Each row of ``photo_embeddings`` and ``description_embeddings`` carries ``facets``, its photo's place,
camera and uploader as the SQL function ``photo_facets`` makes them, so that a filtered search tests
them in the row its index scan reads (service/search/shortlist.py). Two triggers keep them: a new
vector row reads its photo's committed facets, and an edit of the photo rewrites the facets of its
committed vector rows. That leaves one gap: a vector row written by a transaction that is still open
when an edit commits keeps the old facets (the edit could not see it, and it read the old ones).
Every writer of vector rows closes it in one of two ways:

- **Few photos, short transaction**: hold the photos ``FOR SHARE`` before writing, so an edit waits
  for the commit and then sees the rows (``uploads.add_description``; the embedding worker's claim,
  ``embedding_queue.CLAIM_JOBS_SQL``; each batch of ``loader.embed_descriptions``, here).
- **Many photos, long transaction** (a ranker's rows for the whole library, written for minutes):
  row locks would hold up every edit and deletion meanwhile, so the writer settles at its end
  instead (``settle_ranker_rows``): it briefly stops writes to ``photos`` (``SHARE`` mode, until
  its commit), rewrites the rows whose facets differ and drops the rows of photos deleted meanwhile
  (the deletion could not see them either).
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

# An edit's row lock (FOR NO KEY UPDATE) waits for these until the commit; ORDER BY id takes them in
# the order every batch takes them.
SHARE_DESCRIBED_PHOTOS_SQL = text(
    """SELECT 1 FROM photos
       WHERE id IN (SELECT photo_id FROM descriptions WHERE id = ANY(:description_ids))
       ORDER BY id FOR SHARE"""
)

# SHARE conflicts with the ROW EXCLUSIVE lock every UPDATE of photos holds: in-flight edits commit
# first (their trigger could not see this transaction's rows), later ones wait for this commit.
LOCK_PHOTOS_SQL = text("LOCK TABLE photos IN SHARE MODE")
DROP_DELETED_SQL = text(
    """DELETE FROM photo_embeddings e USING photos p
       WHERE e.model_id = :model_id AND p.id = e.photo_id AND p.deleted_at IS NOT NULL"""
)
SETTLE_FACETS_SQL = text(
    """UPDATE photo_embeddings e SET facets = photo_facets(p.place, p.camera, p.uploader)
       FROM photos p
       WHERE e.model_id = :model_id AND p.id = e.photo_id
         AND e.facets IS DISTINCT FROM photo_facets(p.place, p.camera, p.uploader)"""
)


def share_described_photos(conn: Connection, description_ids: Sequence[int]) -> None:
    """Hold the photos of these descriptions ``FOR SHARE`` until the transaction ends."""
    conn.execute(SHARE_DESCRIBED_PHOTOS_SQL, {"description_ids": [int(i) for i in description_ids]})


def settle_ranker_rows(conn: Connection, model_id: int) -> tuple[int, int]:
    """The last statements of a transaction that wrote a ranker's rows for many photos: drop the rows
    of photos deleted meanwhile and rewrite the facets edited meanwhile; returns how many rows of
    each. ``photos`` takes no writes from here to the commit (two joins over the ranker's rows)."""
    conn.execute(LOCK_PHOTOS_SQL)
    params = {"model_id": int(model_id)}
    return conn.execute(DROP_DELETED_SQL, params).rowcount, conn.execute(SETTLE_FACETS_SQL, params).rowcount
