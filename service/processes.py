"""The processes of `withsense serve`, and how they all stop.

`withsense serve` (and so `withsense demo`) is a small supervisor over two children:

- **gunicorn**, forked from it (the master and its web workers, service/server.py): a fork, not a
  second interpreter, so the cold start pays for no second Python start-up;
- **`withsense worker`**, the image embedding process (service/ingest/embedding_worker.py), started
  once a web worker answers (its start-up would slow theirs), at a lower CPU priority (searches come
  first on a small machine), and restarted when it dies, after 1, 2, 4, ... up to 60 s (back to 1 s
  once it has run a minute), each restart logged.

SIGINT (Ctrl-C, which the terminal sends to every process of the group) or SIGTERM (`withsense
stop`, `make stop`) stops both: gunicorn gracefully, the worker after its current batch (a batch
cut short rolls back and stays queued). The supervisor reaps both itself, so it knows how each one
ended: it exits 0 only when both exited 0, and names any that did not. When it started the
embedded PostgreSQL (or was told it owns it, `--stop-database`), it stops it last.

Each running supervisor leaves ``<data dir>/run/serve-<pid>.pid``: `withsense stop` finds them there.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from service.config import Settings

WORKER_NICENESS = 10
STOP_GRACE_S = 30.0  # then SIGKILL: a stuck child must not keep `make stop` waiting forever
MAX_BACKOFF_S = 60.0
WEB_READY_TIMEOUT_S = 120.0
POLL_S = 0.1


def say(message: str) -> None:
    print(f"[withsense serve] {message}", file=sys.stderr, flush=True)


def describe(code: int) -> str:
    """``code`` as subprocess reports it: negative for the signal that killed the process."""
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def run_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "run"


def _fork_gunicorn(settings: Settings) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    # Until gunicorn sets its own handlers (after on_starting's imports and export), a SIGTERM or
    # Ctrl-C ends this child as a clean exit instead of killing it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        from service.server import Server

        Server(settings).run()
        code = 0
    except SystemExit as exc:  # gunicorn's master ends with sys.exit(status)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C before gunicorn set its own handlers: stopped, as asked
        code = 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never return into the supervisor's code in this child


def _worker_preexec() -> None:
    os.nice(WORKER_NICENESS)
    # Its own process group: the terminal's Ctrl-C reaches the supervisor, which stops the worker
    # with one SIGTERM. SIGTERM is blocked until `withsense worker` has set its handler (then it
    # unblocks it): one that arrives while the interpreter starts waits for it instead of killing it.
    os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _spawn_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], preexec_fn=_worker_preexec)


def _wait_for_web(bind: str, ready: threading.Event, timeout: float = WEB_READY_TIMEOUT_S) -> None:
    """Set ``ready`` once a web worker answers /healthz (or after ``timeout``): the image worker
    starts then, so on a small machine its start-up (five networks) does not slow the web workers'
    warm-up and the first search. Uploads made meanwhile wait in the queue."""
    host, _, port = bind.rpartition(":")
    if bind.startswith(("unix:", "fd://")) or not port.isdigit():
        ready.set()  # not an address this can ask
        return
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as response:
                if response.status == 200:
                    break
        except OSError:  # not listening yet (a refused connection), or not answering
            time.sleep(0.2)
    ready.set()


class Supervisor:
    def __init__(self, settings: Settings, *, image_worker: bool = True):
        self.settings = settings
        self.image_worker = image_worker
        self.stopping = False
        self.master = 0
        self.worker: subprocess.Popen | None = None
        self.failures: list[str] = []
        self._signalled: set[int] = set()

    def _on_signal(self, signum, _frame) -> None:
        if not self.stopping:
            say(f"{signal.Signals(signum).name}: stopping")
        self.stopping = True
        self._forward(signal.SIGTERM)

    def _forward(self, signum: int) -> None:
        # Once each: a second SIGTERM could land while the process is already exiting, after Python
        # has put the default handlers back, and kill it.
        for pid in (self.master, self.worker.pid if self.worker and self.worker.returncode is None else 0):
            if pid and pid not in self._signalled:
                self._signalled.add(pid)
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    def _reap_master(self) -> bool:
        """True once gunicorn's master has ended (its status noted)."""
        if not self.master:
            return True
        pid, status = os.waitpid(self.master, os.WNOHANG)
        if not pid:
            return False
        self.master = 0
        if status:
            self.failures.append(f"gunicorn's master {describe(os.waitstatus_to_exitcode(status))}")
        return True

    def run(self) -> int:
        self.master = _fork_gunicorn(self.settings)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        web_ready = threading.Event()
        threading.Thread(target=_wait_for_web, args=(self.settings.bind, web_ready), daemon=True,
                         name="web-ready").start()
        backoff, next_start, started = 1.0, time.monotonic(), 0.0
        while not self._reap_master():
            if self.image_worker and not self.stopping and web_ready.is_set():
                if self.worker is None and time.monotonic() >= next_start:
                    self.worker, started = _spawn_worker(), time.monotonic()
                elif self.worker is not None and self.worker.poll() is not None:
                    ran = time.monotonic() - started
                    backoff = 1.0 if ran > MAX_BACKOFF_S else backoff
                    say(f"image worker (pid {self.worker.pid}) {describe(self.worker.returncode)} after {ran:.0f} s; "
                        f"restarting it in {backoff:.0f} s")
                    self.worker, next_start, backoff = None, time.monotonic() + backoff, min(backoff * 2, MAX_BACKOFF_S)
            time.sleep(POLL_S)
        # gunicorn is gone (stopped, or it could not start): the worker goes with it.
        self.stopping = True
        self._stop_worker()
        return 1 if self.failures else 0

    def _stop_worker(self) -> None:
        if self.worker is None:
            return
        if self.worker.poll() is None:
            self._forward(signal.SIGTERM)  # the worker only: the master is gone
            try:
                self.worker.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        if self.worker.returncode:
            self.failures.append(f"image worker (pid {self.worker.pid}) {describe(self.worker.returncode)}")


def serve(settings: Settings, *, image_worker: bool = True, stop_database: bool = False) -> int:
    """Run gunicorn and the image worker until stopped; 0 when every process exited cleanly."""
    folder = run_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / f"serve-{os.getpid()}.pid"
    record.write_text(f"{os.getpid()}\n")
    supervisor = Supervisor(settings, image_worker=image_worker)
    try:
        code = supervisor.run()
    finally:
        record.unlink(missing_ok=True)
    for failure in supervisor.failures:
        say(failure)
    if stop_database:
        from service.store import embedded

        embedded.stop(settings.pgdata_dir)
        say("embedded PostgreSQL stopped")
    return code


def _is_serve(pid: int) -> bool:
    """Not a pid the system gave to something else since the file was written."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"service.cli" in command or b"withsense" in command
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid file
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Running: not gone, and not a zombie whose parent has not reaped it yet (its work is over)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return not Path("/proc/self").exists()


def stop_servers(settings: Settings, *, timeout: float = 30.0) -> list[int]:
    """SIGTERM every `withsense serve` of this data directory and wait for each to end; their pids."""
    stopped = []
    for record in sorted(run_dir(settings).glob("serve-*.pid")):
        try:
            pid = int(record.read_text().strip())
        except (OSError, ValueError):
            continue
        if not (_alive(pid) and _is_serve(pid)):
            record.unlink(missing_ok=True)  # left by a supervisor that was killed
            continue
        os.kill(pid, signal.SIGTERM)
        stopped.append(pid)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return stopped
