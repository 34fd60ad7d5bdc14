"""Read replicas with a real primary (the test server) and a real streaming replica of it.

The replica is made by ``pg_basebackup -R`` from the embedded server's own binaries
(service/store/embedded_replica.py), runs on its own socket and port, and is crash-stopped and
restarted here to show that reads leave it and come back.
"""
from __future__ import annotations

import io
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from service.store import embedded_replica
from service.store.db import make_engine
from service.store.replicas import Health, ReadReplicas, check_health, read_with_fallback, replay_lag_s
from tests.helpers import app_for, serve

pytestmark = pytest.mark.slow  # PostgreSQL servers of its own: a streaming replica, killed and restarted

AUTH = {"Authorization": "Bearer test-token"}
MAX_LAG_S = 5.0
DESCRIPTION = "a bright orange kayak drifting on a glassy mountain lake"


def _poll(check, timeout_s: float = 30.0, interval_s: float = 0.01):
    """Call ``check`` until it returns something truthy; that value, or None after ``timeout_s``."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    return None


@pytest.fixture(scope="module")
def replica(server_url):
    """A streaming replica of the whole test cluster; yields its folder, port and URL per database."""
    host = make_url(server_url).query.get("host")
    primary_pgdata = Path(host) if host else None
    if primary_pgdata is None or not (primary_pgdata / "PG_VERSION").is_file():
        pytest.skip("replicas are made of the embedded server; DATABASE_URL points elsewhere")
    folder = Path("/tmp") / f"ws-replica-{uuid.uuid4().hex[:8]}"  # short: Unix socket paths max 107 bytes
    port = 5433 + int(uuid.uuid4().int % 500)
    started = time.perf_counter()
    embedded_replica.start(primary_pgdata, folder, port)
    print(f"replica created and started in {time.perf_counter() - started:.1f} s")

    def url(database: str, user: str = "postgres") -> str:
        return (make_url(embedded_replica.url_for(folder, port, database))
                .set(username=user).render_as_string(hide_password=False))

    yield {"folder": folder, "port": port, "url": url, "primary_pgdata": primary_pgdata}
    embedded_replica.remove(primary_pgdata, folder, port)


@pytest.fixture(scope="module")
def routed(writable, encoders, replica):
    """The app over the ``writable`` library with the replica configured, behind a real HTTP server."""
    database = make_url(writable["settings"].database_url).database
    replica_url = replica["url"](database)
    app = app_for(writable, encoders, replica_urls=replica_url, max_replica_lag_s=MAX_LAG_S)
    base, server = serve(app)
    yield {"base": base, "app": app, "replicas": app.extensions["withsense.replicas"],
           "replica_engine": make_engine(replica_url), "database": database}
    server.shutdown()


def _new_photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)).resize((120, 90), Image.NEAREST)
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def _search(base: str, query: str = DESCRIPTION, **extra) -> requests.Response:
    # A fresh request each time: no read-your-writes cookie, so the router may use the replica.
    return requests.post(f"{base}/api/search", json={"query": query, "limit": 50, **extra}, timeout=60)


def _position(received, replayed, since_commit=30.0):
    return {"received": received, "replayed": replayed, "since_last_replayed_commit": since_commit}


def test_replay_lag_is_not_the_age_of_the_last_commit_when_the_primary_was_idle():
    caught_up = _position(1000, 1000)
    assert replay_lag_s(caught_up, None, None) == 0.0
    # Replaying a burst after an idle minute: the last replayed commit is old, the standby is not.
    previous = Health(True, 0.0, "ok", received=1000)
    assert replay_lag_s(_position(5000, 1200), previous, 1.0) == 1.0
    # Still short of what it had a check ago: really behind, by the age of its last replayed commit.
    assert replay_lag_s(_position(9000, 800), previous, 1.0) == 30.0
    assert replay_lag_s(_position(5000, 1200), None, None) == 30.0  # one look alone cannot tell
    assert replay_lag_s(_position(None, 1200), previous, 1.0) is None  # not streaming yet


def test_the_replica_streams_and_is_read_only(routed):
    # Other tests' libraries keep writing to the shared cluster (their embedding workers claim jobs),
    # so a first check can land mid-replay before any commit was replayed ("lagging ? s"): poll.
    def healthy():
        with routed["replica_engine"].connect() as conn:
            health = check_health(conn, MAX_LAG_S)
        return health if health.healthy else None

    with routed["replica_engine"].connect() as conn:
        health = _poll(healthy) or check_health(conn, MAX_LAG_S)
        assert (health.healthy, health.reason) == (True, "ok")
        assert 0.0 <= health.lag_s <= MAX_LAG_S
        with pytest.raises(DBAPIError, match="read-only transaction"):
            conn.execute(text("INSERT INTO search_log (query, blocked, n_results, took_ms) VALUES ('x', false, 0, 1)"))


def test_an_upload_to_the_primary_becomes_searchable_through_the_replica(routed):
    replicas = routed["replicas"]
    session = requests.Session()
    reply = session.post(f"{routed['base']}/api/photos", files={"file": ("kayak.jpg", _new_photo(1010))},
                         data={"description": DESCRIPTION}, headers=AUTH, timeout=120)
    assert reply.status_code == 201, reply.text
    written = time.perf_counter()
    photo_id = reply.json()["photo_id"]

    # The photo page right after the upload: this client just wrote, so it reads from the primary.
    before = replicas.served.copy()
    details = session.get(f"{routed['base']}/api/photos/{photo_id}", timeout=30)
    assert details.status_code == 200
    assert [d["text"] for d in details.json()["descriptions"]] == [DESCRIPTION]
    assert replicas.served["primary"] == before["primary"] + 1
    assert replicas.served["replica"] == before["replica"]

    # Lag: from the upload's commit until the photo's joint vector is on the replica.
    def on_replica():
        with routed["replica_engine"].connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM photo_embeddings e JOIN models m ON m.id = e.model_id "
                "WHERE e.photo_id = :p AND m.kind = 'ranker' AND m.active"), {"p": photo_id}).scalar()

    assert _poll(on_replica, timeout_s=MAX_LAG_S)
    lag_s = time.perf_counter() - written
    print(f"upload visible on the replica {lag_s * 1000:.0f} ms after the upload response")
    assert lag_s < MAX_LAG_S

    # And a search from another client (no cookie) is answered by the replica and finds it.
    before = replicas.served.copy()
    reply = _search(routed["base"])
    assert reply.status_code == 200
    assert photo_id in [r["photo_id"] for r in reply.json()["results"]]
    assert replicas.served["replica"] == before["replica"] + 1
    assert replicas.served["primary"] == before["primary"]

    # Photo details and similar photos from a client that did not write go to the replica too.
    before = replicas.served.copy()
    assert requests.get(f"{routed['base']}/api/photos/{photo_id}", timeout=30).status_code == 200
    similar = requests.post(f"{routed['base']}/api/search/similar", json={"photo_id": photo_id}, timeout=30)
    assert similar.status_code == 200 and len(similar.json()["results"]) == 5
    assert replicas.served["replica"] == before["replica"] + 2


def test_a_deleted_photo_leaves_search_on_the_replica_once_it_has_caught_up(routed):
    """Deleted on the primary: the client that deleted reads from the primary (404 at once); others
    read from the replica, which stops finding the photo as soon as it has replayed the deletion."""
    replicas, base = routed["replicas"], routed["base"]
    description = "a green tram crossing a stone bridge in the fog at night"
    uploaded = requests.post(f"{base}/api/photos", files={"file": ("tram.jpg", _new_photo(2020))},
                             data={"description": description}, headers=AUTH, timeout=120)
    assert uploaded.status_code == 201, uploaded.text
    photo_id = uploaded.json()["photo_id"]

    def on_replica(sql):
        with routed["replica_engine"].connect() as conn:
            return conn.execute(text(sql), {"p": photo_id}).scalar()

    ranker_rows = ("SELECT count(*) FROM photo_embeddings e JOIN models m ON m.id = e.model_id "
                   "WHERE e.photo_id = :p AND m.kind = 'ranker' AND m.active")
    assert _poll(lambda: on_replica(ranker_rows), timeout_s=60)
    assert photo_id in [r["photo_id"] for r in _search(base, description).json()["results"]]

    deleter = requests.Session()
    r = deleter.delete(f"{base}/api/photos/{photo_id}", headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    deleted = time.perf_counter()
    before = replicas.served.copy()
    assert deleter.get(f"{base}/api/photos/{photo_id}", timeout=30).status_code == 404  # its own write: primary
    assert replicas.served["primary"] > before["primary"]

    assert _poll(lambda: on_replica("SELECT deleted_at IS NOT NULL FROM photos WHERE id = :p")
                 and on_replica(ranker_rows) == 0, timeout_s=MAX_LAG_S)
    print(f"deletion replayed on the replica {(time.perf_counter() - deleted) * 1000:.0f} ms after the answer")
    before = replicas.served.copy()
    found = _search(base, description)
    assert found.status_code == 200 and photo_id not in [r["photo_id"] for r in found.json()["results"]]
    similar = requests.post(f"{base}/api/search/similar", json={"photo_id": 1, "limit": 50}, timeout=30)
    assert similar.status_code == 200 and photo_id not in [r["photo_id"] for r in similar.json()["results"]]
    assert replicas.served["replica"] == before["replica"] + 2
    assert requests.get(f"{base}/api/photos/{photo_id}", timeout=30).status_code == 404
    assert requests.get(f"{base}/photos/{photo_id}/image", timeout=30).status_code == 404


def test_an_unknown_photo_on_the_replica_is_asked_of_the_primary_before_404(routed):
    before = routed["replicas"].served.copy()
    assert requests.get(f"{routed['base']}/api/photos/987654321", timeout=30).status_code == 404
    # Tried on the replica, then on the primary: "not there yet" is only the primary's to say.
    assert routed["replicas"].served["primary"] == before["primary"] + 1


def test_with_the_replica_killed_searches_answer_from_the_primary_and_it_is_used_again_once_restarted(
        routed, replica):
    replicas = routed["replicas"]
    assert _search(routed["base"]).status_code == 200
    # A crash stop (SIGQUIT to the postmaster, no shutdown checkpoint), as a killed server leaves it.
    assert embedded_replica.stop(replica["folder"], mode="immediate")
    before = replicas.served.copy()
    for _ in range(5):
        reply = _search(routed["base"])
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["results"]) > 5
    assert replicas.served["primary"] == before["primary"] + 5
    assert replicas.served["replica"] == before["replica"]
    assert replicas.status()[0]["healthy"] is False
    ready = requests.get(f"{routed['base']}/readyz", timeout=30)
    assert ready.status_code == 200  # a replica down makes the service slower, not unready
    assert ready.json()["replicas"][0]["healthy"] is False

    started = time.perf_counter()
    embedded_replica.start(replica["primary_pgdata"], replica["folder"], replica["port"])

    def served_by_replica():
        count = replicas.served["replica"]
        assert _search(routed["base"]).status_code == 200
        return replicas.served["replica"] > count

    assert _poll(served_by_replica, timeout_s=60, interval_s=0.2)
    print(f"replica serving searches again {time.perf_counter() - started:.1f} s after its restart")
    assert requests.get(f"{routed['base']}/readyz", timeout=30).json()["replicas"][0]["healthy"] is True


def test_a_replica_lagging_beyond_the_limit_is_skipped_until_it_catches_up(routed, writable, replica):
    # Replay paused on the replica while the primary keeps writing: the standard way to make real lag.
    replica_admin = routed["replica_engine"]
    replicas = ReadReplicas([replica["url"](routed["database"])], max_lag_s=0.5, engine_factory=make_engine)
    primary = writable["engine"]
    try:
        with replica_admin.connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_pause()"))
        with primary.begin() as conn:
            conn.execute(text("INSERT INTO search_log (query, blocked, n_results, took_ms) VALUES ('lag', false, 0, 1)"))
        time.sleep(1.0)
        assert replicas.choose() is None
        assert "lagging" in replicas.status()[0]["reason"]
        assert read_with_fallback(primary, replicas, lambda e: e) is primary
    finally:
        with replica_admin.connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_resume()"))
    time.sleep(1.1)  # past the recheck interval
    assert _poll(lambda: replicas.choose() is not None, timeout_s=10)
    replicas.dispose()


def test_an_unreachable_replica_url_is_skipped(writable):
    replicas = ReadReplicas(["postgresql+psycopg://postgres:@/postgres?host=/tmp/ws-no-such-replica&port=5999"],
                            max_lag_s=MAX_LAG_S, engine_factory=make_engine)
    assert replicas.choose() is None
    assert replicas.status()[0]["reason"].startswith("unreachable")
    primary = writable["engine"]
    assert read_with_fallback(primary, replicas, lambda e: e) is primary
    assert replicas.served["primary"] == 1


def test_the_analyst_role_works_on_the_replica(routed, replica):
    analyst = create_engine(replica["url"](routed["database"], user="analyst"))
    try:
        with analyst.connect() as conn:
            pairs = conn.execute(text("SELECT count(*) FROM analyst_rated_pairs")).scalar()
            kinds = dict(conn.execute(text(
                "SELECT model_kind, count(*) > 0 FROM analyst_photo_embeddings GROUP BY model_kind")).all())
        assert pairs > 0
        assert kinds == {"encoder": True, "ranker": True}
        with pytest.raises(DBAPIError, match="permission denied"):  # the primary's grants (migration 0010)
            with analyst.connect() as conn:
                conn.execute(text("SELECT text FROM descriptions"))
        with pytest.raises(DBAPIError, match="read-only|permission denied"):
            with analyst.begin() as conn:
                conn.execute(text("DELETE FROM search_log"))
    finally:
        analyst.dispose()


def test_the_replica_commands(tmp_path_factory, monkeypatch, capsys, server_url):
    """`withsense db replica start|status|url|stop|remove` on a primary of their own (a fresh data dir)."""
    if not make_url(server_url).query.get("host"):
        pytest.skip("replicas are made of the embedded server; DATABASE_URL points elsewhere")
    from service.cli import main
    from service.store import embedded

    data_dir = Path("/tmp") / f"ws-cli-{uuid.uuid4().hex[:8]}"  # short: Unix socket paths
    monkeypatch.setenv("WITHSENSE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    port = str(5433 + int(uuid.uuid4().int % 500))
    try:
        assert main(["db", "replica", "status", "--port", port]) == 3  # nothing yet
        assert main(["db", "replica", "start", "--port", port]) == 0
        url = capsys.readouterr().out.strip().splitlines()[-1]
        assert url == embedded_replica.url_for(data_dir / "replicas" / port, int(port))
        assert main(["db", "replica", "status", "--port", port]) == 0
        assert capsys.readouterr().out.startswith("healthy: ok; lag 0.0 s")
        assert main(["db", "replica", "stop", "--port", port]) == 0
        assert capsys.readouterr().out.strip() == "stopped"
        assert main(["db", "replica", "start", "--port", port]) == 0  # the copy is kept: starts again
        assert main(["db", "replica", "remove", "--port", port]) == 0
        assert not (data_dir / "replicas" / port).exists()
        with create_engine(embedded.running_url(data_dir / "pgdata")).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_replication_slots")).scalar() == 0
        assert main(["db", "replica"]) == 2  # which action? says so
    finally:
        embedded_replica.stop(data_dir / "replicas" / port, mode="immediate")
        embedded.stop(data_dir / "pgdata")
        shutil.rmtree(data_dir, ignore_errors=True)
