"""The gunicorn server: threads that do not wait on slow clients, shared Prometheus metrics, the URL
printed once up, each worker warmed before its first request.

Everything comes from one ``Settings`` object (WITHSENSE_BIND, WITHSENSE_WORKERS, WITHSENSE_THREADS,
WITHSENSE_READ_TIMEOUT, WITHSENSE_METRICS_DIR), handed in by the entry point that read it:

- `withsense serve` (service/cli.py) reads the environment once, applies its flags and runs
  ``Server(settings)`` in a child it forks (service/processes.py, which supervises the image worker
  beside it); the forked workers build the app from that same object (``create_app``).
- `gunicorn -c service/gunicorn_conf.py` (the Docker image) reads the environment once in that file
  and hands ``gunicorn_options(settings)`` to gunicorn as its configuration.

docs/scaling.md has the measurements behind the defaults.
"""
from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import shutil
import socket
import struct
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from service.config import Settings

# Answers a kept-alive connection gets from a worker with requests waiting before it is closed.
KEEP_ALIVE_TURNS = 4


class BoundedReadWorker(ThreadWorker):
    """gthread, with changes for clients that send slowly and for fairness under load.

    - A receive timeout on every client socket (SO_RCVTIMEO, WITHSENSE_READ_TIMEOUT, read from the
      settings of the app this worker serves): a client that stops sending in the middle of its
      headers or body frees its thread after that many seconds of silence instead of holding it
      until it disconnects: the rule of nginx's client_body_timeout (a limit on the gap between two
      reads). The app sees the cut body as a client disconnect (werkzeug's ClientDisconnected, a 400).
    - A worker whose threads are all busy stops accepting new connections, so they wait in the
      shared listen queue for whichever worker frees a thread first. Plain gthread accepts anyway
      and queues the request behind its busy threads: with slow uploads holding all four threads of
      one worker, a search accepted there waited for them although the other worker was idle.
    - A worker with requests waiting for a thread closes the connections it answers once they
      have had KEEP_ALIVE_TURNS answers ("Connection: close"). A kept-alive client's next request
      skips the listen queue, so while kept-alive clients kept every thread busy a new connection
      waited there until they stopped: at 16 clients over 8 threads, 4.4 s for a search that took
      60 ms once accepted. Closed, they reconnect through the queue in turn, and to whichever
      worker has a thread free.
    """

    _busy = 0  # requests handed to the thread pool and not finished (main thread only)
    _receive_timeout = b""  # SO_RCVTIMEO's struct timeval, set once the app is loaded
    _quitting = False

    def handle_quit(self, sig, frame):
        # Ctrl-C reaches a worker twice: the terminal's SIGINT, then the master's SIGQUIT. gunicorn's
        # handler raises SystemExit each time, and the second one, landing in the exit path, cut it
        # short: the worker_exit hook (the search-log lines still queued) never ran. Once is enough.
        if self._quitting:
            return
        self._quitting = True
        super().handle_quit(sig, frame)

    def load_wsgi(self):
        super().load_wsgi()
        seconds = self.wsgi.config["WITHSENSE"].read_timeout  # the Flask app create_app built
        self._receive_timeout = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))

    def enqueue_req(self, conn):
        if not getattr(conn, "read_bounded", False):
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._receive_timeout)
            conn.read_bounded = True
        self._busy += 1
        super().enqueue_req(conn)
        self._update_accepting()

    def handle_request(self, req, conn):
        # _busy counts this request too; it is the main thread's, read here as a snapshot. Closing
        # only a connection that has had a few answers bounds the wait outside as well and costs
        # fewer reconnections: 16 kept-alive clients got 150 searches/s closing after 4 answers, 136
        # after every one, 146 never (cached queries, 6 runs each, alternating; the longest wait
        # 0.35-0.62 s, 0.24-0.60 s and 1.9-2.2 s).
        conn.answered = getattr(conn, "answered", 0) + 1
        if self._busy > self.cfg.threads and conn.answered >= KEEP_ALIVE_TURNS:
            req.must_close = True
        return super().handle_request(req, conn)

    def finish_request(self, conn, fs):
        self._busy -= 1
        super().finish_request(conn, fs)
        self._update_accepting()

    def _update_accepting(self):
        # What gunicorn's run loop decides each second, decided at once; never while stopping.
        self.set_accept_enabled(self.alive and self.nr_conns < self.worker_connections)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled and self._busy < self.cfg.threads)


class _MetricsFolder:
    """prometheus_client's multiprocess mode: every worker writes its metrics under one folder and
    /metrics sums them (service/http/metrics.py)."""

    def __init__(self, configured: str):
        self.configured = configured
        self.path: Path | None = None

    def prepare(self) -> None:
        # prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is imported, so this runs in the
        # master before anything imports it (and before any worker is forked). The folder is emptied
        # first: files of an earlier run would otherwise be added to this one's counts. The variable
        # is prometheus_client's own interface: there is no argument to hand it the folder instead.
        self.path = Path(self.configured or tempfile.mkdtemp(prefix="withsense-metrics-"))
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.path)

    def remove_own(self) -> None:
        if self.path is not None and not self.configured:
            shutil.rmtree(self.path, ignore_errors=True)


def gunicorn_options(settings: Settings) -> dict:
    """gunicorn's settings, by gunicorn's names, for a server that runs with ``settings``."""
    metrics = _MetricsFolder(settings.metrics_dir)

    def on_starting(server):
        metrics.prepare()
        limit_malloc_arenas()
        # Export the networks to ONNX if this data directory has none yet (a child process: the
        # server never imports torch), then import the libraries the workers need once in the
        # master: forked workers inherit them instead of each spending seconds on the same imports
        # (cold start). Not onnxruntime: imported before a fork, it aborts the worker at exit
        # (std::system_error). Nothing here opens a database connection.
        from service.runtime import export_models

        export_models(settings)
        import tokenizers  # noqa: F401

        import service.api.search  # noqa: F401 - the search path: numpy, scikit-learn, psycopg

        warm_up_turns.prepare()

    def on_exit(server):
        metrics.remove_own()
        warm_up_turns.remove()

    return {
        "bind": settings.bind,
        "workers": settings.workers,
        # gthread: the main thread of a worker waits for requests in a poller, so an idle or
        # kept-alive connection costs no thread; a thread is taken only once request bytes arrive
        # (and gunicorn hands a connection that sends nothing for 5 s back to the poller).
        # BoundedReadWorker bounds the silence while a client is sending the rest.
        "worker_class": "service.server.BoundedReadWorker",
        "threads": settings.threads,
        "keepalive": 5,
        "timeout": 30,  # heartbeat of the worker's main loop: only a truly stuck worker is restarted
        "accesslog": "-",
        # gunicorn 27's control socket: one fixed path per user (~/.gunicorn/gunicorn.ctl) shared by
        # every instance on the host, served by an asyncio thread in the master that is stopped and
        # restarted around each fork. Nothing here uses it, and tests run several servers side by side.
        "control_socket_disable": True,
        "on_starting": on_starting,
        "when_ready": when_ready,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
        "on_exit": on_exit,
    }


# glibc's mallopt parameter number for the arena count (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Two malloc arenas for the master and the workers it forks (they inherit the setting). glibc
    gives each thread that allocates an arena of its own, up to 8 per core: a web worker's request
    threads each kept one, partly empty. Measured with `scripts/bench_upload.py` on the demo: a web
    worker 475-492 MB RSS with the default, 445-451 MB with two arenas. Through ctypes because no
    library sets it, and the MALLOC_ARENA_MAX variable would have to be in the environment before
    the server starts; a libc that is not glibc (musl, macOS) is left alone."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def limit_blas_threads() -> None:
    """One BLAS thread in a web worker: its request threads are its parallelism, and a search's
    matrix products are small (the query against the ranker's ~6,600 reference captions, the
    scorer's layers). BLAS's own pool of one thread per core woke for each of them and fought the
    request threads for the two cores: the reference-caption product alone took p50 0.09 ms but p95
    8.0 ms with 2 BLAS threads on a loaded machine, p50 0.18 ms and p95 0.26 ms with one
    (2026-12-02). Called in each worker, after the fork (the pool is per process)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def when_ready(server):
    # The address actually bound (a --bind on gunicorn's command line overrides WITHSENSE_BIND).
    print(f"With Sense is up: {server.LISTENERS[0]}/", flush=True)


class _WarmUpTurns:
    """One worker warms up at a time. A warm-up is CPU work (ONNX sessions, the ranker): workers
    warming side by side on two cores each take as long as all of them in turn, so in turn the first
    one serves sooner (the cold start) and the last no later. A file lock, each worker opening the
    file itself (a lock taken through a descriptor inherited from the master would be shared)."""

    path: str | None = None

    def prepare(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="withsense-warm-up-")
        os.close(handle)

    def remove(self) -> None:
        if self.path:
            Path(self.path).unlink(missing_ok=True)

    @contextlib.contextmanager
    def turn(self):
        if not self.path:  # the hooks ran without on_starting (not gunicorn's master): no turns
            yield
            return
        with open(self.path) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # the lock goes with the file


warm_up_turns = _WarmUpTurns()


def post_worker_init(worker):
    # Load the encoders and the active model now, so no user waits for the first search's imports.
    from service.runtime import warm_up

    limit_blas_threads()
    with warm_up_turns.turn():
        warm_up(worker.wsgi)
    # What is loaded by now (modules, models, the app: ~125k objects) lives as long as the worker:
    # frozen, the collector no longer walks it, and a collection between two searches cannot take
    # 13 ms as one did among 400 (2026-12-02; 0.5 ms at most with it frozen).
    gc.freeze()


def worker_exit(server, worker):
    # Write the search-log lines still queued in this worker before it goes.
    from service.runtime import shut_down

    shut_down(worker.wsgi)


def child_exit(server, worker):
    # The dead worker's live gauges go; its counters and histograms stay in the totals.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class Server(BaseApplication):
    """gunicorn run in this process with ``settings``: no configuration file, no command line of
    its own; the workers' app is built from the same object (forked, so DATABASE_URL as resolved
    by the caller, e.g. the embedded server's, reaches every worker)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__(prog="withsense serve")

    def load_config(self):
        for name, value in gunicorn_options(self.settings).items():
            self.cfg.set(name, value)

    def load(self):
        from service import create_app

        return create_app(settings=self.settings)
