"""Ctrl-C and `withsense stop` (`make stop`) end every process of `withsense serve`, each cleanly.

`withsense serve` is a supervisor over gunicorn (master and web workers) and the image worker
(service/processes.py). The test starts it, notes every process of the tree, stops it the way a
person does, and asserts each one ended, with no process killed by a signal and every exit code 0
(the supervisor exits 0 only when gunicorn's master and the image worker did; gunicorn logs any
web worker that did not). The deadline is generous on purpose; the time it took is printed and
measured in reports/bench/shutdown.md (scripts/bench_shutdown.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from service.config import REPO_ROOT
from tests.test_gunicorn import WORKERS, server_log, start_gunicorn

pytestmark = pytest.mark.slow


def wait_for_line(tmp_path, line: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in server_log(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert line in server_log(tmp_path), server_log(tmp_path)


def stop_with_make_stop(proc, settings) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DATABASE_URL": settings.database_url,
           "WITHSENSE_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run([sys.executable, "-m", "service.cli", "stop"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"stopped the server (pid {proc.pid})" in done.stdout


@pytest.mark.parametrize("how", ["ctrl-c", "make stop"])
def test_every_process_exits_cleanly(loaded, tmp_path, how):
    proc, _base, _ = start_gunicorn(loaded, tmp_path)
    wait_for_line(tmp_path, "image worker ready")
    supervisor = psutil.Process(proc.pid)
    (master,) = [p for p in supervisor.children() if "service.cli serve" in " ".join(p.cmdline())]
    (image_worker,) = [p for p in supervisor.children() if "service.cli worker" in " ".join(p.cmdline())]
    web_workers = master.children()
    assert len(web_workers) == WORKERS
    tree = [supervisor, master, image_worker, *web_workers]

    start = time.monotonic()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    else:
        stop_with_make_stop(proc, loaded["settings"])
    code = proc.wait(timeout=120)
    _gone, alive = psutil.wait_procs(tree[1:], timeout=120)
    took = time.monotonic() - start
    print(f"{how}: every process ended {took:.2f} s after the signal")

    log = server_log(tmp_path)
    assert not alive, [p.pid for p in alive]
    assert code == 0, log  # the supervisor: gunicorn's master and the image worker both exited 0
    assert "was killed by" not in log and "was sent" not in log, log  # no process ended by a signal
    assert "exited with code" not in log, log  # gunicorn names a web worker that exited non-zero
    for worker in web_workers:
        assert f"Worker exiting (pid: {worker.pid})" in log, log


def test_a_killed_image_worker_is_restarted_and_says_so(loaded, tmp_path):
    proc, _base, _ = start_gunicorn(loaded, tmp_path)
    try:
        wait_for_line(tmp_path, "image worker ready")
        supervisor = psutil.Process(proc.pid)
        (first,) = [p for p in supervisor.children() if "service.cli worker" in " ".join(p.cmdline())]
        first.kill()
        wait_for_line(tmp_path, f"image worker (pid {first.pid}) was killed by SIGKILL")
        assert "restarting it in 1 s" in server_log(tmp_path)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            again = [p for p in supervisor.children() if "service.cli worker" in " ".join(p.cmdline())]
            if again and again[0].pid != first.pid:
                break
            time.sleep(0.2)
        assert again and again[0].pid != first.pid, server_log(tmp_path)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, server_log(tmp_path)  # the worker that was killed was restarted, not a failure
