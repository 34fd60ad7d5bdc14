"""Uploads answer before their image vectors exist; a queue in PostgreSQL makes them searchable.

Real database, real ONNX encoders, real HTTP; a real process killed mid-job.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest
import requests
from PIL import Image
from sqlalchemy import text

from service.config import REPO_ROOT
from tests.helpers import FIXTURE_DATASET, wait_searchable

AUTH = {"Authorization": "Bearer test-token"}
COFFEE = FIXTURE_DATASET.parent / "uploads" / "coffee.jpg"


def _jpeg(seed: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((160, 120)).save(out, "JPEG")
    return out.getvalue()


def _scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_upload_answers_then_becomes_searchable(writable_server, writable):
    data = COFFEE.read_bytes()
    rotated = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.FLIP_LEFT_RIGHT).save(rotated, "JPEG", quality=90)
    r = requests.post(f"{writable_server}/api/photos", files={"file": ("cup.jpg", rotated.getvalue())},
                      headers=AUTH, timeout=60)
    assert r.status_code == 201, r.text
    photo_id = r.json()["photo_id"]
    assert r.json()["search"]["state"] in ("pending", "searchable")
    assert wait_searchable(writable_server, photo_id) == {"state": "searchable"}
    engine = writable["engine"]
    assert _scalar(engine, "SELECT count(*) FROM embedding_jobs WHERE photo_id = :p", p=photo_id) == 0
    # image features, fingerprint, joint vector under the active ranker
    assert _scalar(engine, "SELECT count(*) FROM photo_embeddings WHERE photo_id = :p", p=photo_id) == 3
    ids = [x["photo_id"] for x in requests.post(f"{writable_server}/api/search", json={"query": "a cup of coffee"},
                                                timeout=60).json()["results"]]
    assert photo_id in ids[:2], ids


@pytest.fixture()
def queue_library(make_database, settings_for):
    """A fresh database with the fixture dataset's rows (no vectors, no ranker): nothing else drains it."""
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.store.db import make_engine

    settings = settings_for(make_database())
    engine = make_engine(settings.database_url)
    loader.load_dataset(engine, settings, read_dataset(FIXTURE_DATASET), progress=False)
    yield settings, engine
    engine.dispose()


def _add(settings, engine, encoders, data: bytes, **metadata) -> int:
    from service.photos import uploads
    from service.store.db import session_scope

    with session_scope(engine) as session:
        added = uploads.add_photo(data, session=session, settings=settings, encoders=encoders, **metadata)
    assert added.queued and added.duplicate_of is None
    return added.photo_id


def _state(settings, engine, photo_id) -> dict:
    """The photo's search state with the keys the API shows (those that apply)."""
    from dataclasses import asdict

    from service.photos import embedding_queue
    from service.store.db import session_scope

    with session_scope(engine) as session:
        state = embedding_queue.search_state(session=session, photo_id=photo_id, encoder_key=settings.encoder_key)
    return {key: value for key, value in asdict(state).items() if value is not None}


def test_queued_photo_is_pending_until_a_batch_embeds_it(queue_library, encoders):
    from service.ingest.embedding_worker import process_batch

    settings, engine = queue_library
    ids = [_add(settings, engine, encoders, _jpeg(seed), description=f"pattern {seed}") for seed in (1, 2, 3)]
    assert [_state(settings, engine, i)["state"] for i in ids] == ["pending"] * 3
    # the owner's description is searchable text at once; the image side is not there yet
    assert _scalar(engine, "SELECT count(*) FROM description_embeddings de JOIN descriptions d ON d.id = de.description_id "
                           "WHERE d.photo_id = ANY(:ids)", ids=ids) == 6  # MiniLM's and USE's vectors
    assert process_batch(engine, settings, encoders.image, limit=2) == 2  # oldest first, batched
    assert process_batch(engine, settings, encoders.image, limit=2) == 1
    assert process_batch(engine, settings, encoders.image, limit=2) == 0
    # no ranker in this database: features are there, the photo waits for `withsense train`
    assert [_state(settings, engine, i)["state"] for i in ids] == ["not_indexed"] * 3
    vectors = _scalar(engine, "SELECT count(*) FROM photo_embeddings e JOIN models m ON m.id = e.model_id "
                              "WHERE e.photo_id = ANY(:ids) AND m.name = :n", ids=ids, n=f"image:{encoders.image.name}")
    assert vectors == 3
    # the queue's vectors equal a direct encoding of the stored photo
    from service.ingest.loader import open_photo
    from service.store.db import as_array

    with engine.connect() as conn:
        key, stored = conn.execute(text(
            "SELECT p.storage_key, e.embedding FROM photos p JOIN photo_embeddings e ON e.photo_id = p.id "
            "JOIN models m ON m.id = e.model_id WHERE p.id = :p AND m.name = :n"),
            {"p": ids[0], "n": f"image:{encoders.image.name}"}).one()
    direct = encoders.image.encode([open_photo(settings, key)])[0]
    assert float(abs(as_array(stored) - direct).max()) < 1e-4


def test_a_claimed_job_is_skipped_by_other_workers(queue_library, encoders):
    from service.ingest.embedding_worker import process_batch
    from service.photos import embedding_queue

    settings, engine = queue_library
    photo_id = _add(settings, engine, encoders, _jpeg(10))
    with engine.connect() as holder:
        with holder.begin():
            assert [j[0] for j in embedding_queue.claim(holder, limit=10)] == [photo_id]
            # SKIP LOCKED: another worker neither waits nor takes it
            assert process_batch(engine, settings, encoders.image, limit=10) == 0
    assert process_batch(engine, settings, encoders.image, limit=10) == 1
    assert _state(settings, engine, photo_id)["state"] == "not_indexed"


def test_a_claimed_photo_holds_its_edits_and_an_edited_photo_waits_for_the_next_claim(queue_library, encoders):
    """The claim holds each photo FOR SHARE (service/store/facets.py): an edit of its place waits for
    the worker's commit, and a photo an edit holds is skipped now and embedded by a later claim."""
    import threading

    from service.ingest.embedding_worker import process_batch
    from service.photos import embedding_queue

    settings, engine = queue_library
    photo_id = _add(settings, engine, encoders, _jpeg(11), place="Hamar")
    edited = threading.Event()

    def edit() -> None:
        with engine.begin() as conn:
            conn.execute(text("UPDATE photos SET place = 'Gjøvik' WHERE id = :p"), {"p": photo_id})
        edited.set()

    with engine.connect() as worker, worker.begin():
        assert [j[0] for j in embedding_queue.claim(worker, limit=10)] == [photo_id]
        editor = threading.Thread(target=edit)
        editor.start()
        assert not edited.wait(1.0)  # waits for the worker's commit
    editor.join(30)
    assert edited.is_set()
    with engine.connect() as editor_conn, editor_conn.begin():
        editor_conn.execute(text("SELECT 1 FROM photos WHERE id = :p FOR NO KEY UPDATE"), {"p": photo_id})
        assert process_batch(engine, settings, encoders.image, limit=10) == 0  # skipped, not waited for
    assert process_batch(engine, settings, encoders.image, limit=10) == 1
    assert _scalar(engine, "SELECT DISTINCT facets FROM photo_embeddings WHERE photo_id = :p", p=photo_id) == [
        "place:gjøvik"]


CRASHING_WORKER = textwrap.dedent("""
    import json, os, sys
    from ml.encoders import load_encoders
    from service.config import load_settings
    from service.ingest.embedding_worker import process_batch
    from service.store.db import make_engine

    settings = load_settings(**json.loads(sys.argv[1]))
    real = load_encoders("minilm", image_model=settings.image_model, runtime="onnx", onnx_dir=settings.onnx_path,
                         image_precision=settings.image_precision).image

    class DiesAfterEncoding:
        # The real encoder; the process is killed after the work, before the transaction commits.
        name, dim = real.name, real.dim

        def encode(self, images):
            real.encode(images)
            os._exit(9)

    process_batch(make_engine(settings.database_url), settings, DiesAfterEncoding(), limit=8)
""")


@pytest.mark.slow  # a worker process of its own, loading the models, killed
def test_a_worker_killed_mid_job_leaves_the_job_to_be_retried(queue_library, encoders):
    from service.ingest.embedding_worker import process_batch

    settings, engine = queue_library
    photo_id = _add(settings, engine, encoders, _jpeg(20))
    overrides = {"database_url": settings.database_url, "data_dir": str(settings.data_dir),
                 "onnx_dir": settings.onnx_dir, "extra_dataset": "", "image_precision": settings.image_precision}
    done = subprocess.run([sys.executable, "-c", CRASHING_WORKER, json.dumps(overrides)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HOME": "/tmp"})
    assert done.returncode == 9, done.stderr[-2000:]
    assert _state(settings, engine, photo_id) == {"state": "pending", "attempts": 0}
    assert _scalar(engine, "SELECT count(*) FROM photo_embeddings e JOIN models m ON m.id = e.model_id "
                           "WHERE e.photo_id = :p AND m.name LIKE 'image:efficientnet%%'", p=photo_id) == 0
    assert process_batch(engine, settings, encoders.image, limit=8) == 1  # the next worker takes it
    assert _state(settings, engine, photo_id)["state"] == "not_indexed"
    assert _scalar(engine, "SELECT count(*) FROM embedding_jobs") == 0


def test_a_job_that_keeps_failing_ends_failed_and_the_rest_go_on(queue_library, encoders):
    from service.ingest.embedding_worker import process_batch
    from service.photos import embedding_queue
    from service.store import photo_files

    settings, engine = queue_library
    lost = _add(settings, engine, encoders, _jpeg(30))
    fine = _add(settings, engine, encoders, _jpeg(31))
    key = _scalar(engine, "SELECT storage_key FROM photos WHERE id = :p", p=lost)
    photo_files.path_for(settings.photo_store_dir, key).unlink()  # the stored file is gone
    assert process_batch(engine, settings, encoders.image, limit=8) == 2
    assert _state(settings, engine, fine)["state"] == "not_indexed"
    for _attempt in range(2, embedding_queue.MAX_ATTEMPTS + 1):
        assert process_batch(engine, settings, encoders.image, limit=8) == 1
    state = _state(settings, engine, lost)
    assert state["state"] == "failed" and state["attempts"] == embedding_queue.MAX_ATTEMPTS
    assert "cannot read the stored photo" in state["error"]
    assert process_batch(engine, settings, encoders.image, limit=8) == 0  # failed jobs are not retried
