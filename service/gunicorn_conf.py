"""gunicorn settings for `withsense serve`: threads that do not wait on slow clients, shared
Prometheus metrics, the URL printed once up, each worker warmed before its first request.

Settings come from service/config.py (WITHSENSE_BIND, WITHSENSE_WORKERS, WITHSENSE_THREADS,
WITHSENSE_READ_TIMEOUT, WITHSENSE_METRICS_DIR); docs/scaling.md has the measurements behind the
defaults.
"""
import os
import shutil
import socket
import struct
import tempfile
from pathlib import Path

from gunicorn.workers.gthread import ThreadWorker

from service.config import load_settings

_settings = load_settings()

bind = _settings.bind
workers = _settings.workers
# gthread: the main thread of a worker waits for requests in a poller, so an idle or kept-alive
# connection costs no thread; a thread is taken only once request bytes arrive (and gunicorn
# hands a connection that sends nothing for 5 s back to the poller). BoundedReadWorker below
# bounds the silence while a client is sending the rest.
worker_class = "service.gunicorn_conf.BoundedReadWorker"
threads = _settings.threads
keepalive = 5
timeout = 30  # heartbeat of the worker's main loop: only a truly stuck worker is restarted
accesslog = "-"
# gunicorn 27's control socket: one fixed path per user (~/.gunicorn/gunicorn.ctl) shared by every
# instance on the host, served by an asyncio thread in the master that is stopped and restarted
# around each fork. Nothing here uses it, and tests run several servers side by side.
control_socket_disable = True
wsgi_app = "service:create_app()"

# prometheus_client's multiprocess mode: every worker writes its metrics under this folder and
# /metrics sums them (service/http/metrics.py). Set before any worker imports prometheus_client,
# and emptied first: files of an earlier run would otherwise be added to this one's counts.
_own_metrics_dir = not _settings.metrics_dir
_metrics_dir = Path(_settings.metrics_dir or tempfile.mkdtemp(prefix="withsense-metrics-"))
_metrics_dir.mkdir(parents=True, exist_ok=True)
for _stale in _metrics_dir.glob("*.db"):
    _stale.unlink()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


class BoundedReadWorker(ThreadWorker):
    """gthread, with two changes for clients that send slowly.

    - A receive timeout on every client socket (SO_RCVTIMEO, WITHSENSE_READ_TIMEOUT): a client that
      stops sending in the middle of its headers or body frees its thread after that many seconds
      of silence instead of holding it until it disconnects: the rule of nginx's
      client_body_timeout (a limit on the gap between two reads). The app sees the cut body as a
      client disconnect (werkzeug's ClientDisconnected, a 400).
    - A worker whose threads are all busy stops accepting new connections, so they wait in the
      shared listen queue for whichever worker frees a thread first. Plain gthread accepts anyway
      and queues the request behind its busy threads: with slow uploads holding all four threads of
      one worker, a search accepted there waited for them although the other worker was idle.
    """

    _busy = 0  # requests handed to the thread pool and not finished (main thread only)

    def enqueue_req(self, conn):
        if not getattr(conn, "read_bounded", False):
            seconds = _settings.read_timeout_seconds
            timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            conn.read_bounded = True
        self._busy += 1
        super().enqueue_req(conn)
        self._update_accepting()

    def finish_request(self, conn, fs):
        self._busy -= 1
        super().finish_request(conn, fs)
        self._update_accepting()

    def _update_accepting(self):
        # What gunicorn's run loop decides each second, decided at once; never while stopping.
        self.set_accept_enabled(self.alive and self.nr_conns < self.worker_connections)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled and self._busy < self.cfg.threads)


def on_starting(server):
    # Export the networks to ONNX if this data directory has none yet (a child process: the server
    # never imports torch), then import the libraries the workers need once in the master: forked
    # workers inherit them instead of each spending seconds on the same imports (cold start). Not
    # onnxruntime: imported before a fork, it aborts the worker at exit (std::system_error).
    # Nothing here opens a database connection.
    from service.config import load_settings
    from service.runtime import export_models

    export_models(load_settings())
    import tokenizers  # noqa: F401

    import service.api.search  # noqa: F401 - the search path: numpy, scikit-learn, psycopg


def when_ready(server):
    # The address actually bound (a --bind on gunicorn's command line overrides `bind` above).
    print(f"With Sense is up: {server.LISTENERS[0]}/", flush=True)


def post_worker_init(worker):
    # Load the encoders and the active model now, so no user waits for the first search's imports.
    from service.runtime import warm_up

    warm_up(worker.wsgi)


def worker_exit(server, worker):
    # Write the search-log lines still queued in this worker before it goes.
    from service.runtime import shut_down

    shut_down(worker.wsgi)


def child_exit(server, worker):
    # The dead worker's live gauges go; its counters and histograms stay in the totals.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
