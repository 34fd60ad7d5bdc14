"""`make demo` in a checkout with no ../shared beside it: the fixture dataset, a notice, a search that answers.

The demo's steps (`withsense demo`: migrate, ingest, train, serve) run in a temporary `git clone` of
this checkout, with the current virtualenv (not reinstalled) and PYTHONPATH pointing at the clone,
and the search goes over real HTTP to the gunicorn the demo starts.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from service.config import REPO_ROOT
from tests.helpers import free_port

pytestmark = [pytest.mark.slow,  # the whole demo in a clone: migrate, ingest, train, gunicorn
              pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(),
                                 reason="needs git and a git checkout to clone")]


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    target = root / "withsense"
    # --no-hardlinks: an independent copy. Uncommitted work is not in a clone: the test checks HEAD.
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(target)], check=True)
    assert not (root / "shared").exists()
    return target


def test_demo_without_shared_loads_the_fixture_says_where_the_data_is_and_answers_a_search(clone):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WITHSENSE_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(clone), WITHSENSE_DATA_DIR=str(clone / "var"), WITHSENSE_EXTRA_DATASET="")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo", "--port", str(port), "--workers", "1"],
        cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            if line is None:
                break
            output.append(line)
            if "With Sense is up" in line:
                break
        text = "".join(output)
        assert "With Sense is up" in text, text[-3000:]
        notice = [line for line in output if line.startswith("no dataset at ../shared/data/photos")]
        assert len(notice) == 1
        assert "WITHSENSE_DATASET" in notice[0] and "Flickr8k" in notice[0]

        reply = requests.post(f"http://127.0.0.1:{port}/api/search", json={"query": "a dog runs on the grass"},
                              timeout=120)
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert len(results) == 5
        assert all(0.0 <= r["score"] <= 1.0 for r in results)
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200
        assert "Traceback" not in text
        # Stopped as Ctrl-C or `docker stop` would: every worker exits cleanly (none killed by a
        # signal of its own, as when ONNX Runtime was inherited from the demo's setup steps).
        os.killpg(process.pid, 15)
        code = process.wait(timeout=60)
        while (line := lines.get(timeout=10)) is not None:
            output.append(line)
        text = "".join(output)
        assert code == 0, text[-3000:]  # the processes' own words on why, if one did not exit cleanly
        assert "Shutting down: Master" in text, text[-3000:]
        assert "was sent SIG" not in text and "terminate called" not in text, text[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        subprocess.run([sys.executable, "-m", "service.cli", "db", "stop"], cwd=clone, env=env,
                       capture_output=True, timeout=120)
