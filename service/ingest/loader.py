"""Loading photos, descriptions and ratings into the database, and computing their vectors.

The dataset load is one transaction: it either lands whole or not at all. Unique keys (photo
sha256, caption dataset_key, rating primary keys) absorb repeats, so a second run adds nothing and
says so. Vectors are computed afterwards in committed batches, so an interrupted run resumes
where it stopped.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import Connection, Engine, text
from tqdm import tqdm

from ml.language import ENGLISH
from ml.pipeline import one_ahead
from service.config import Settings
from service.ingest.dataset import Dataset
from service.photos import child_marks
from service.photos.images import decode_image
from service.policy import is_about_children
from service.store import photo_files
from service.store.db import driver_connection
from service.store.facets import share_described_photos
from service.store.model_rows import encoder_model_ids
from service.store.vectors import write_vectors

log = logging.getLogger(__name__)

# A dataset's captions are Flickr8k-format English captions (migration 0016 marks existing ones so
# too). Not detected one by one: lingua read 1 of the demo's 1,000 as Dutch, which put USE back on
# every English search of the library (an English query matches other-language descriptions in USE's
# space, service/search/shortlist.py).
DATASET_LANGUAGE = ENGLISH


@dataclass
class LoadReport:
    added: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.added.values())

    def lines(self) -> list[str]:
        out = [f"{table}: {self.added.get(table, 0)} added, {self.existing.get(table, 0)} already there" for table in self.added]
        if not self.changed:
            out.append("nothing new: the dataset was already loaded")
        return out + self.notes


def _copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    with driver_connection(conn).cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _insert_from_temp(conn: Connection, table: str, create_sql: str, columns: Sequence[str], rows: list, insert_sql: str) -> int:
    """COPY rows into a temporary table, then move them with one INSERT whose ON CONFLICT skips repeats."""
    conn.execute(text(f"CREATE TEMPORARY TABLE {table} ({create_sql}) ON COMMIT DROP"))
    _copy_rows(conn, table, columns, rows)
    return conn.execute(text(insert_sql)).rowcount


def _store_photos(dataset: Dataset, settings: Settings, progress: bool) -> list[tuple]:
    rows = []
    for name, (split, path) in tqdm(sorted(dataset.photos.items()), desc="photos", unit="photo", disable=not progress):
        data = path.read_bytes()
        decoded = decode_image(data, max_pixels=settings.max_pixels)
        sha = photo_files.sha256_hex(data)
        key = photo_files.storage_key(sha, decoded.extension)
        photo_files.put(settings.photo_store_dir, key, data)
        rows.append((name, sha, len(data), decoded.width, decoded.height, key, split))
    return rows


def load_dataset(engine: Engine, settings: Settings, dataset: Dataset, *, progress: bool = True) -> LoadReport:
    """Copy images into the store and load every table row in one transaction."""
    report = LoadReport()
    removed = remove_orphan_files(engine, settings)
    if removed:
        report.notes.append(f"removed {len(removed)} orphan file(s) left in the photo store by an interrupted run")
    photo_rows = _store_photos(dataset, settings, progress)
    captions = list(dataset.captions.values())
    with engine.begin() as conn:
        report.added["photos"] = _insert_from_temp(
            conn, "incoming_photos",
            "file_name text, sha256 text, bytes int, width int, height int, storage_key text, split text",
            ("file_name", "sha256", "bytes", "width", "height", "storage_key", "split"), photo_rows,
            """INSERT INTO photos (file_name, sha256, bytes, width, height, storage_key, split)
               SELECT file_name, sha256, bytes, width, height, storage_key, split FROM incoming_photos
               ON CONFLICT (sha256) DO NOTHING""",
        )
        photo_ids = dict(conn.execute(
            text("SELECT i.file_name, p.id FROM incoming_photos i JOIN photos p USING (sha256)")
        ).all())
        report.added["descriptions"] = _insert_from_temp(
            conn, "incoming_captions", "dataset_key text, text text, source text, photo_id bigint, about_children boolean",
            ("dataset_key", "text", "source", "photo_id", "about_children"),
            [(c.key, c.text, c.source, photo_ids.get(c.photo_file), is_about_children(c.text)) for c in captions],
            f"""INSERT INTO descriptions (dataset_key, text, source, photo_id, author, about_children, language)
               SELECT dataset_key, text, source, photo_id, 'flickr8k', about_children, '{DATASET_LANGUAGE}'
               FROM incoming_captions
               ON CONFLICT (dataset_key) DO NOTHING""",
        )
        child_marks.mark_described(conn, [(photo_ids.get(c.photo_file), c.text) for c in captions])
        report.added["expert_ratings"] = _insert_from_temp(
            conn, "incoming_experts", "photo_id bigint, dataset_key text, expert_no smallint, score smallint",
            ("photo_id", "dataset_key", "expert_no", "score"),
            [(photo_ids[r.photo_file], r.key, n, s) for r in dataset.experts for n, s in enumerate(r.scores, start=1)],
            """INSERT INTO expert_ratings (photo_id, description_id, expert_no, score)
               SELECT i.photo_id, d.id, i.expert_no, i.score
               FROM incoming_experts i JOIN descriptions d USING (dataset_key)
               ON CONFLICT DO NOTHING""",
        )
        report.added["crowd_ratings"] = _insert_from_temp(
            conn, "incoming_crowd", "photo_id bigint, dataset_key text, share float8, yes int, no int",
            ("photo_id", "dataset_key", "share", "yes", "no"),
            [(photo_ids[r.photo_file], r.key, r.share, r.yes, r.no) for r in dataset.crowd],
            """INSERT INTO crowd_ratings (photo_id, description_id, share, yes, no)
               SELECT i.photo_id, d.id, i.share, i.yes, i.no
               FROM incoming_crowd i JOIN descriptions d USING (dataset_key)
               ON CONFLICT DO NOTHING""",
        )
    offered = {
        "photos": len(photo_rows),
        "descriptions": len(captions),
        "expert_ratings": 3 * len(dataset.experts),
        "crowd_ratings": len(dataset.crowd),
    }
    report.existing = {table: offered[table] - report.added[table] for table in offered}
    if dataset.skipped_crowd:
        report.notes.append(
            f"{len(dataset.skipped_crowd)} crowd rows skipped: their caption text is in no table "
            "(set WITHSENSE_EXTRA_DATASET to the flickr8k_extra folder to load them)"
        )
    return report


def open_photo(settings: Settings, storage_key: str) -> Image.Image:
    data = photo_files.path_for(settings.photo_store_dir, storage_key).read_bytes()
    return decode_image(data, max_pixels=settings.max_pixels).image


def embed_photos(engine: Engine, settings: Settings, image_encoder, *, batch_size: int | None = None,
                 progress: bool = True) -> int:
    """Compute image features for every photo that has none under this encoder; returns how many.

    Photos waiting in the upload queue are left to it (a worker may hold them right now).
    """
    model_id = encoder_model_ids(engine, settings, image_encoder=image_encoder)["image"]
    with engine.connect() as conn:
        todo = conn.execute(text(
            """SELECT p.id, p.storage_key FROM photos p
               WHERE p.deleted_at IS NULL  -- a deleted photo's file is gone, and so are its vectors
                 AND NOT EXISTS (SELECT 1 FROM photo_embeddings e WHERE e.photo_id = p.id AND e.model_id = :m)
                 AND NOT EXISTS (SELECT 1 FROM embedding_jobs j WHERE j.photo_id = p.id)
               ORDER BY p.id"""
        ), {"m": model_id}).all()
    batch_size = batch_size or settings.embed_batch
    bar = tqdm(total=len(todo), desc=f"image vectors ({image_encoder.name})", unit="photo", disable=not progress)
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]

    def write(batch, vectors) -> None:
        with engine.begin() as conn:
            write_vectors(conn, "photo_embeddings", "photo_id", model_id, [pid for pid, _ in batch], vectors)
        bar.update(len(batch))

    # The encoder keeps the cores busy; around it, the next batch is read and decoded and the last
    # one's vectors are written (PostgreSQL's work: ~5 ms a photo) in threads of their own.
    decoded = one_ahead(lambda batch: [open_photo(settings, key) for _id, key in batch], batches, name="photo-decode")
    with ThreadPoolExecutor(1, thread_name_prefix="vector-write") as writer:
        written = None
        for batch, images in zip(batches, decoded, strict=True):
            vectors = image_encoder.encode(images)
            if written is not None:
                written.result()  # in order, one batch at a time; a failed write stops the run here
            written = writer.submit(write, batch, vectors)
        if written is not None:
            written.result()
    bar.close()
    return len(todo)


def embed_descriptions(engine: Engine, settings: Settings, text_encoder, *, batch_size: int = 256, progress: bool = True) -> int:
    """Compute text vectors for every description that has none under this encoder; returns how many."""
    model_id = encoder_model_ids(engine, settings, text_encoder=text_encoder)["text"]
    with engine.connect() as conn:
        todo = conn.execute(text(
            """SELECT d.id, d.text FROM descriptions d
               WHERE NOT EXISTS (SELECT 1 FROM description_embeddings e
                                 WHERE e.description_id = d.id AND e.model_id = :m)
                 -- a deleted photo's descriptions keep no vectors (uploads.delete_photo)
                 AND NOT EXISTS (SELECT 1 FROM photos p WHERE p.id = d.photo_id AND p.deleted_at IS NOT NULL)
               ORDER BY d.id"""
        ), {"m": model_id}).all()
    bar = tqdm(total=len(todo), desc=f"text vectors ({text_encoder.name})", unit="text", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = text_encoder.encode([t for _id, t in batch])
        with engine.begin() as conn:
            share_described_photos(conn, [i for i, _ in batch])  # an edit of their place waits for this commit
            write_vectors(conn, "description_embeddings", "description_id", model_id, [i for i, _ in batch], vectors)
        bar.update(len(batch))
    bar.close()
    return len(todo)


def photo_store_orphans(engine: Engine, settings: Settings) -> list[Path]:
    with engine.connect() as conn:
        keys = set(conn.execute(text("SELECT storage_key FROM photos WHERE deleted_at IS NULL")).scalars())
    return photo_files.orphans(settings.photo_store_dir, keys)


def remove_orphan_files(engine: Engine, settings: Settings, *, grace_seconds: float | None = None) -> list[Path]:
    """Delete store files no live photo row points at, older than the grace period (settings.orphan_grace_seconds).

    A crash (kill -9, power loss) between writing a photo's file and committing its row leaves such
    a file, and so does one between a deletion's commit and the removal of its file; every ingest run calls this first, so they do not pile up. The keys are read before the
    files are listed, so a row committed meanwhile can only make a file look orphaned if it is
    younger than the grace period, and those are kept.
    """
    grace = settings.orphan_grace_seconds if grace_seconds is None else grace_seconds
    with engine.connect() as conn:
        keys = set(conn.execute(text("SELECT storage_key FROM photos WHERE deleted_at IS NULL")).scalars())
    removed = photo_files.remove_orphans(settings.photo_store_dir, keys, grace_seconds=grace)
    if removed:
        log.warning("removed %d orphan file(s) from the photo store", len(removed))
    return removed
