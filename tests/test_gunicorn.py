"""The product under a real multi-worker gunicorn (gthread): metrics summed over workers, slow
clients that do not stall searches, a body read that is cut after WITHSENSE_READ_TIMEOUT of
silence, and search-log lines written before the workers exit."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from service.config import REPO_ROOT
from tests.helpers import free_port, metric_value

pytestmark = pytest.mark.slow  # multi-worker gunicorn servers, each worker loading the models

WORKERS, THREADS, READ_TIMEOUT = 2, 4, 3


def server_log(tmp_path: Path) -> str:
    """The end of the server's log (access lines and errors), for failure messages."""
    return (tmp_path / "gunicorn.log").read_text()[-4000:]


def start_gunicorn(library: dict, tmp_path: Path, **env_overrides: str) -> tuple[subprocess.Popen, str, Path]:
    """``withsense serve`` over ``library`` with WORKERS workers, ready and warmed; ``env_overrides``
    replace settings (WITHSENSE_* variables)."""
    settings = library["settings"]
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DATABASE_URL": settings.database_url,
           "WITHSENSE_DATA_DIR": str(settings.data_dir), "WITHSENSE_EXTRA_DATASET": "",
           "WITHSENSE_RATE_LIMIT": "0", "WITHSENSE_API_TOKEN": settings.api_token,
           "WITHSENSE_READ_TIMEOUT": str(READ_TIMEOUT), "WITHSENSE_METRICS_DIR": str(metrics_dir), **env_overrides}
    log = open(tmp_path / "gunicorn.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                             "--workers", str(WORKERS), "--threads", str(THREADS)],
                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, server_log(tmp_path)
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    else:
        stop_gunicorn(proc)
        pytest.fail("gunicorn did not become ready within 180 s")
    # Warm the first worker ready; the other may still be in its post_worker_init (a worker does not
    # accept before that is done), so tests that need every worker wait for it themselves.
    for _ in range(2 * WORKERS):
        requests.post(f"{base}/api/search", json={"query": "warm up"}, timeout=60)
    return proc, base, metrics_dir


def stop_gunicorn(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # graceful: workers finish, run worker_exit, then exit
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def gunicorn_server(writable, tmp_path_factory):
    proc, base, metrics_dir = start_gunicorn(writable, tmp_path_factory.mktemp("gunicorn"))
    yield base, proc, metrics_dir
    stop_gunicorn(proc)


def _children(pid: int) -> set[int]:
    pids = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def _worker_pids(proc: subprocess.Popen) -> set[int]:
    """The web workers: `withsense serve` supervises gunicorn's master (whose children they are)
    and the image worker (service/processes.py)."""
    masters = [pid for pid in _children(proc.pid) if b"service.cli\0worker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return {worker for master in masters for worker in _children(master)}


def test_metrics_answer_for_every_worker(gunicorn_server):
    base, proc, metrics_dir = gunicorn_server
    ok = dict(endpoint="search.search", method="POST", status="200")
    before = requests.get(f"{base}/metrics", timeout=10).text

    def search_many(n):
        for i in range(n):
            # A new connection per request, from 4 threads at once, so both workers take some.
            assert requests.post(f"{base}/api/search", json={"query": f"a dog runs {i}"}, timeout=60).status_code == 200

    def writers() -> set[int]:
        # Each process keeps its own files in the shared folder, named by its pid (the master too).
        return {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("counter_*.db")}

    # Which worker accepts a connection is the kernel's choice, and a worker still warming up
    # accepts none: send rounds of 40 until every worker has answered some.
    sent, deadline = 0, time.monotonic() + 120
    while True:
        threads = [threading.Thread(target=search_many, args=(10,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent += 40
        if writers() >= _worker_pids(proc) or time.monotonic() > deadline:
            break
    assert len(_worker_pids(proc)) == WORKERS, server_log(metrics_dir.parent)
    assert writers() >= _worker_pids(proc), server_log(metrics_dir.parent)
    # Whichever worker answers the scrape, it counts every search (and every scrape agrees).
    scrapes = [requests.get(f"{base}/metrics", timeout=10) for _ in range(6)]
    for r in scrapes:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        after = r.text
        counted = metric_value(after, "withsense_http_requests_total", **ok) - metric_value(before, "withsense_http_requests_total", **ok)
        assert counted == sent, server_log(metrics_dir.parent)
        for stage in ("encode", "shortlist", "rerank", "total"):
            delta = (metric_value(after, "withsense_search_stage_seconds_count", stage=stage)
                     - metric_value(before, "withsense_search_stage_seconds_count", stage=stage))
            assert delta == sent, stage
    assert "# TYPE withsense_search_stage_seconds histogram" in scrapes[0].text


class SlowClient:
    """A connection that sends its headers, then its body one byte every ``gap`` seconds."""

    def __init__(self, base: str, gap: float, body_length: int = 2000) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall((f"POST /api/search HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {body_length}\r\n\r\n{{").encode())
        self.gap, self.stop = gap, threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(self.gap):
            try:
                self.sock.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_slow_clients_do_not_stall_searches(gunicorn_server):
    """More slow uploads than a sync server has workers (3 stalled every search for 120 s before):
    each holds a thread, the other threads keep answering."""
    base, _, metrics_dir = gunicorn_server
    slow = [SlowClient(base, gap=0.5) for _ in range(WORKERS * THREADS - 2)]
    try:
        time.sleep(1.0)  # they are now mid-body, each holding a thread
        for query in ("a dog runs through the snow", "two people on a beach", "a red car"):
            try:
                r = requests.post(f"{base}/api/search", json={"query": query}, timeout=30)
            except requests.RequestException as exc:
                pytest.fail(f"{exc}\n{server_log(metrics_dir.parent)}")
            assert r.status_code == 200 and len(r.json()["results"]) == 5
        assert all(c.thread.is_alive() for c in slow)  # still connected and sending
    finally:
        for c in slow:
            c.close()


def test_a_saturated_worker_sends_kept_alive_clients_back_to_the_listen_queue(gunicorn_server):
    """A worker with requests waiting for a thread answers "Connection: close" on a connection that
    has had KEEP_ALIVE_TURNS answers: a kept-alive client's next request skips the listen queue, and
    new connections waited there as long as kept-alive clients kept the threads busy (4.4 s at 16
    clients). A client alone keeps its connection."""
    from concurrent.futures import ThreadPoolExecutor

    from service.server import KEEP_ALIVE_TURNS

    base, _, _ = gunicorn_server
    with requests.Session() as alone:
        for _ in range(KEEP_ALIVE_TURNS + 2):
            r = alone.post(f"{base}/api/search", json={"query": "a dog runs on the grass"}, timeout=60)
            assert r.status_code == 200 and r.headers.get("Connection", "").lower() != "close", r.headers
    clients = 4 * WORKERS * THREADS
    sessions = [requests.Session() for _ in range(clients)]
    try:
        for s in sessions:  # each connected and kept alive, one at a time, up to its last turn
            for _ in range(KEEP_ALIVE_TURNS - 1):
                assert s.post(f"{base}/api/search", json={"query": "a red car"}, timeout=60).status_code == 200
        start = threading.Barrier(clients)

        def search(session):
            start.wait()
            r = session.post(f"{base}/api/search", json={"query": "two people on a beach"}, timeout=60)
            return r.status_code, r.headers.get("Connection", "").lower()

        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(search, sessions))
    finally:
        for s in sessions:
            s.close()
    assert [code for code, _ in answers] == [200] * clients
    closed = sum(connection == "close" for _, connection in answers)
    assert 0 < closed < clients, answers  # the requests that waited for a thread, not the first ones


def test_a_client_that_goes_silent_mid_body_is_cut_off(gunicorn_server):
    base, _, _ = gunicorn_server
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=READ_TIMEOUT * 10) as sock:
        sock.sendall(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"query\": ")
        answer = b""
        while True:  # the server answers (400: the body never came) and closes, or just closes
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert requests.post(f"{base}/api/search", json={"query": "a dog"}, timeout=30).status_code == 200


def test_search_log_lines_are_written_before_workers_exit(writable, tmp_path):
    """Searches are logged in the background; a graceful stop (SIGTERM) writes every queued line."""
    proc, base, _ = start_gunicorn(writable, tmp_path)
    marker = uuid.uuid4().hex[:8]
    queries = [f"a dog runs {marker} {i}" for i in range(30)]
    try:
        for q in queries:
            assert requests.post(f"{base}/api/search", json={"query": q}, timeout=60).status_code == 200
    finally:
        assert stop_gunicorn(proc) == 0
    with writable["engine"].connect() as conn:
        rows = conn.execute(text("SELECT query, blocked, n_results, model_id FROM search_log WHERE query LIKE :m"),
                            {"m": f"%{marker}%"}).all()
    assert sorted(r.query for r in rows) == sorted(queries)
    assert {(r.blocked, r.n_results) for r in rows} == {(False, 5)}
    assert {r.model_id for r in rows} == {writable["model"]["id"]}


def test_a_web_worker_runs_blas_on_one_thread():
    """post_worker_init limits BLAS to one thread (service.server.limit_blas_threads): its pool would
    otherwise fight the request threads for the cores. Run in a fresh process, as a worker would."""
    code = ("import numpy, json; from threadpoolctl import threadpool_info; "
            "from service.server import limit_blas_threads; "
            "before = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']; "
            "limit_blas_threads(); "
            "after = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']; "
            "print(json.dumps([before, after]))")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}  # as on any machine with two cores or more
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before and all(n == 2 for n in before), before
    assert after == [1] * len(before), after


def test_a_web_worker_is_warm_and_frozen_before_it_serves(loaded, encoders):
    """post_worker_init, as gunicorn calls it in each worker: BLAS on one thread, the models loaded
    by a warm-up search, then everything loaded so far frozen out of the collector's walks."""
    import gc
    from types import SimpleNamespace

    from threadpoolctl import threadpool_info, threadpool_limits

    from service.server import post_worker_init
    from tests.helpers import app_for

    app = app_for(loaded, encoders, rate_limit=0)
    blas = threadpool_limits(limits=None)  # what to give back: this process goes on running tests
    try:
        post_worker_init(SimpleNamespace(wsgi=app))
        frozen = gc.get_freeze_count()
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    finally:
        gc.unfreeze()
        blas.restore_original_limits()
    assert frozen > 50_000, frozen  # the app, its models and the modules they import
    assert "withsense.searcher" in app.extensions  # warmed: its searcher built and its ranker loaded
    r = app.test_client().post("/api/search", json={"query": "a dog runs on the grass"})
    assert r.status_code == 200 and r.json["results"]
