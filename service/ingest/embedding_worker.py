"""Turning queued photos into searchable ones: image features, then the active ranker's vectors.

``process_batch`` claims a batch of jobs (``service.photos.embedding_queue``), encodes the photos
in one batched pass, writes their vectors and deletes the jobs, all in one transaction: a photo is
searchable exactly when its job is gone. ``drain`` repeats it until the queue is empty (the CLI's
`ingest photo|folder` and `withsense worker --once`); ``EmbeddingWorker`` is the background thread
each server process runs, woken by its own uploads and polling for everyone else's.
"""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine
from tqdm import tqdm

from service.config import Settings
from service.ingest.loader import open_photo
from service.photos import embedding_queue
from service.store.model_rows import active_ranker, encoder_model_ids, load_ranker
from service.store.ranker_rows import project_photos
from service.store.vectors import write_vectors

log = logging.getLogger(__name__)


def process_batch(engine: Engine, settings: Settings, image_encoder, *, limit: int, image_model_id: int | None = None) -> int:
    """Embed up to ``limit`` queued photos; returns how many jobs were taken (0: the queue is empty)."""
    if image_model_id is None:
        image_model_id = encoder_model_ids(engine, settings, image_encoder=image_encoder)["image"]
    unreadable: list[tuple[int, str]] = []
    jobs: list[tuple[int, str, int]] = []
    try:
        with engine.begin() as conn:
            jobs = embedding_queue.claim(conn, limit=limit)
            if not jobs:
                return 0
            ids, images = [], []
            for photo_id, storage_key, _attempts in jobs:
                try:
                    images.append(open_photo(settings, storage_key))
                    ids.append(photo_id)
                except Exception as exc:  # noqa: BLE001 - a missing or damaged file fails its own job only
                    unreadable.append((photo_id, f"cannot read the stored photo: {exc}"))
            if ids:
                features = image_encoder.encode(images)
                write_vectors(conn, "photo_embeddings", "photo_id", image_model_id, ids, features)
                model = active_ranker(conn, settings.encoder_key)
                if model is not None:
                    # Everything the reranker reads about the photo, computed once here, never per search.
                    project_photos(conn, model.id, load_ranker(model.artifact_path), ids, features)
                embedding_queue.finish(conn, ids)
            for photo_id, error in unreadable:
                embedding_queue.record_failure(conn, photo_id=photo_id, error=error)
    except Exception as exc:
        if not jobs:  # nothing claimed (the database is away): the caller retries later
            raise
        # The batch rolled back; count an attempt for each job so a photo that always fails ends
        # as 'failed' instead of being retried forever.
        log.exception("embedding %d queued photo(s) failed", len(jobs))
        with engine.begin() as conn:
            for photo_id, _key, _attempts in jobs:
                embedding_queue.record_failure(conn, photo_id=photo_id, error=f"{type(exc).__name__}: {exc}")
    return len(jobs)


def drain(engine: Engine, settings: Settings, image_encoder, *, batch_size: int | None = None,
          progress: bool = False, wait_seconds: float = 300.0) -> int:
    """Process queued jobs until none is left; returns how many this process took.

    Jobs another worker holds (a server's thread may claim this run's photos first) are waited
    for, up to ``wait_seconds``, so the photos are searchable when this returns.
    """
    batch_size = batch_size or settings.embed_batch
    image_model_id = encoder_model_ids(engine, settings, image_encoder=image_encoder)["image"]
    with engine.connect() as conn:
        total = embedding_queue.queued_count(conn)
    bar = tqdm(total=total, desc=f"image vectors ({image_encoder.name})", unit="photo", disable=not progress)
    done = 0
    deadline = time.monotonic() + wait_seconds
    while True:
        taken = process_batch(engine, settings, image_encoder, limit=batch_size, image_model_id=image_model_id)
        if taken:
            done += taken
            bar.update(taken)
            continue
        with engine.connect() as conn:
            held_elsewhere = embedding_queue.queued_count(conn)
        if not held_elsewhere or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    bar.close()
    return done


# Photos per batch in a server process's worker thread. Uploads arrive one by one, so a large batch
# buys little there, and ONNX Runtime keeps the memory of its largest batch: 32 photos with the
# five-crop view (160 network inputs) grew each server worker by about 1 GB in the soak.
SERVER_BATCH = 4


class EmbeddingWorker(threading.Thread):
    """Drains the queue in the background of a server process.

    ``wake()`` (called after an upload commits) starts the next batch at once; otherwise the queue
    is polled every ``poll_seconds``, which picks up jobs left by other processes or by a crash.
    Errors (the database away, a bad batch) are logged and retried at the next poll: the thread
    never dies with a request's data in it, and an unfinished job stays queued.
    """

    def __init__(self, engine: Engine, settings: Settings, image_encoder, *, poll_seconds: float = 2.0):
        super().__init__(name="embedding-worker", daemon=True)
        self.engine, self.settings, self.image_encoder = engine, settings, image_encoder
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        image_model_id, last_error = None, None
        while not self._stopping.is_set():
            taken = 0
            try:
                if image_model_id is None:
                    image_model_id = encoder_model_ids(self.engine, self.settings, image_encoder=self.image_encoder)["image"]
                taken = process_batch(self.engine, self.settings, self.image_encoder,
                                      limit=min(self.settings.embed_batch, SERVER_BATCH),
                                      image_model_id=image_model_id)
                last_error = None
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error:  # once per outage, not once per poll
                    log.warning("embedding worker: %s", error)
                last_error = error
            if not taken:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
