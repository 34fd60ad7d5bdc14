"""What test modules import: paths of the datasets, builders of databases, apps and servers, and
small probes. The fixtures that use them live in tests/conftest.py, which nothing imports.

Import this module as ``tests.helpers`` only (never bare ``helpers``): one module object, so any
state kept here has one copy. scripts/ import it too (``free_port``), so it keeps its imports light:
nothing heavier than service.config at module level.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from service.config import REPO_ROOT

FIXTURE_DATASET = Path(__file__).parent / "fixtures" / "dataset"
FULL_DATASET = REPO_ROOT.parent / "shared" / "data" / "photos"
FULL_EXTRA = REPO_ROOT.parent / "shared" / "data" / "flickr8k_extra"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of asking (the OS picks it),
    for a server started in another process, which must be told its port up front."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_embedding_workers: dict[str, tuple] = {}  # database URL -> (worker thread, its listener's stop event)


def start_embedding_worker(library: dict, encoders) -> None:
    """What `withsense worker` runs beside every deployment's web workers, as threads of the test
    process, once per library: the worker, woken by each upload's NOTIFY. Web apps run no image
    networks (service/runtime.py), so an app's uploads become searchable through this."""
    from service.ingest.embedding_worker import EmbeddingWorker
    from service.photos import embedding_queue

    url = library["settings"].database_url
    running = _embedding_workers.get(url)
    if running is not None and running[0].is_alive():
        return
    worker = EmbeddingWorker(library["engine"], library["settings"], encoders.image)
    worker.start()
    stopping = threading.Event()
    threading.Thread(target=embedding_queue.listen, args=(library["engine"], worker.wake, stopping),
                     name="embedding-job-listener", daemon=True).start()
    _embedding_workers[url] = (worker, stopping)


def stop_embedding_workers() -> None:
    """Stop every embedding worker thread the tests started, before the database goes."""
    for worker, stopping in _embedding_workers.values():
        stopping.set()
        worker.stop()
    _embedding_workers.clear()


def migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    from alembic import command

    from service.cli import alembic_config

    config = alembic_config(url)
    (command.downgrade if down else command.upgrade)(config, revision)


def load_library(url: str, settings_for, encoders, **overrides) -> dict:
    """A migrated database at ``url`` with the fixture dataset loaded, vectors computed, a ranker
    trained; ``overrides`` go to its settings (``image_precision`` must be that of ``encoders``)."""
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.store.db import make_engine
    from service.store.model_rows import encoder_model_ids
    from service.training.publish import train_and_publish

    settings = settings_for(url, api_token="test-token", **overrides)
    engine = make_engine(settings.database_url)
    dataset = read_dataset(FIXTURE_DATASET)
    report = loader.load_dataset(engine, settings, dataset, progress=False)
    loader.embed_photos(engine, settings, encoders.image, progress=False)
    loader.embed_descriptions(engine, settings, encoders.text, progress=False)
    if encoders.multilingual is not None:
        loader.embed_descriptions(engine, settings, encoders.multilingual, progress=False)
    model = train_and_publish(engine, settings, encoders, run_cv=False, progress=False)
    ids = encoder_model_ids(engine, settings, text_encoder=encoders.text, image_encoder=encoders.image)
    return {"settings": settings, "engine": engine, "dataset": dataset, "report": report, "model": model, **ids}


def app_for(library: dict, encoders, **overrides):
    from service import create_app

    settings = library["settings"]
    # Every test client is 127.0.0.1 and the session's databases are shared, so wrong keys sent by
    # one test would count against the next: the guessing throttle is off unless a test turns it on
    # (tests/test_security_limits.py, with addresses of its own).
    overrides.setdefault("key_failure_limit", 0)
    app = create_app({"database_url": settings.database_url, "data_dir": settings.data_dir,
                      "api_token": settings.api_token, "extra_dataset": "", "captioned_extra": "",
                      "onnx_dir": settings.onnx_dir, **overrides})
    app.config["TESTING"] = True
    app.extensions["withsense.encoders"] = encoders  # share the loaded models with the app
    if "engine" in library:  # a library without one (a database not migrated or not there) has nothing to embed
        start_embedding_worker(library, encoders)
    return app


def serve(app):
    """The app behind a real HTTP server on a free loopback port; returns (base URL, server)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def wait_searchable(base_url: str, photo_id: int, timeout: float = 120.0) -> dict:
    """Poll the photo's details until its queued image vectors have landed; returns its ``search`` state.

    An upload is stored at once and searchable once the server's embedding worker has processed it
    (``service.ingest.embedding_worker``)."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while True:
        state = requests.get(f"{base_url}/api/photos/{photo_id}", timeout=30).json()["search"]
        if state["state"] != "pending" or time.monotonic() > deadline:
            assert state["state"] == "searchable", state
            return state
        time.sleep(0.05)


def metric_value(body: str, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``, read with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == str(v) for k, v in labels.items()))


def new_user(engine, role: str, name: str | None = None) -> dict:
    """A person with a fresh API key in the database behind ``engine``:
    ``{"user_id", "name", "role", "key", "auth"}`` (``auth``: the request header)."""
    import uuid

    from service.accounts import users
    from service.store.db import session_scope

    name = name or f"{role}-{uuid.uuid4().hex[:8]}"
    with session_scope(engine) as session:
        user_id, key = users.add_user(session=session, name=name, role=role)
    return {"user_id": user_id, "name": name, "role": role, "key": key, "auth": {"Authorization": f"Bearer {key}"}}


def analyst_engine(url: str):
    """The read-only ``analyst`` role's connection to the database at ``url`` (pgvector's types
    registered, as on the service's own engines)."""
    from sqlalchemy.engine import make_url

    from service.store.db import make_engine

    return make_engine(make_url(url).set(username="analyst", password=None).render_as_string(hide_password=False))


def wait_for_queued_jobs(engine, timeout: float = 120.0) -> None:
    """Until the embedding worker has taken every queued upload job: it writes in the background, so
    a snapshot of the tables taken earlier would see its rows arrive."""
    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM embedding_jobs WHERE state = 'queued'")).scalar() \
                and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.1)
