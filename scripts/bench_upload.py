"""Upload to searchable, memory per process, and Ctrl-C, on `withsense serve` over the demo database.

Starts `withsense serve` (the supervisor, gunicorn's master, WORKERS web workers, the image worker)
over WITHSENSE_DATA_DIR on a spare loopback port, waits until the image worker is ready, then:

1. memory of every process (RSS, and PSS: shared pages divided among the processes sharing them);
2. UPLOADS uploads, one at a time, each a new JPEG: the time from the upload's answer to its
   details saying "searchable" (polled every 20 ms), p50/p95/max;
3. SEARCHES searches of new query texts (English and Russian), then memory again (the plateau);
4. SIGINT to the process group, as Ctrl-C does: the time until every process has ended, and the
   supervisor's exit code (0 only when gunicorn's master and the image worker exited 0).

Writes reports/bench/upload.json and reports/bench/upload.md.

    WITHSENSE_DATA_DIR=... python scripts/bench_upload.py [--uploads 30] [--workers 2]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, load_settings  # noqa: E402
from service.store.db import resolve_url  # noqa: E402
from tests.helpers import free_port  # noqa: E402

TOKEN = "bench-upload-token"

# What a web worker's memory is made of: each piece loaded in turn in a fresh process, as warm-up does.
COMPONENTS_PROBE = r"""
import json, time, psutil
p, steps, t = psutil.Process(), [], time.perf_counter()
def step(name):
    global t
    steps.append([name, p.memory_info().rss / 2**20, time.perf_counter() - t]); t = time.perf_counter()
step("Python")
from service.config import load_settings
settings = load_settings(); step("settings")
import service.api.search; step("the search path's imports (numpy, scikit-learn, SQLAlchemy, Flask, pydantic)")
from service import create_app
app = create_app(settings=settings); step("the Flask app")
from service.runtime import get_searcher
searcher = get_searcher(app)
searcher.text_encoder.encode(["warm up"]); step("MiniLM (ONNX Runtime session)")
searcher.multilingual.encode(["warm up"]); step("USE multilingual (ONNX Runtime session)")
searcher.router.load(); step("the query router: lingua's low-accuracy models and the word-frequency tables")
searcher.router.language.detect("ein Hund im Schnee"); step("the first German query (its second opinion from the word tables)")
searcher.active_state(); step("the active ranker")
import sys
print(json.dumps({"steps": steps, "heavy": [m for m in ("torch", "tensorflow") if m in sys.modules]}))
"""


def components() -> dict:
    done = subprocess.run([sys.executable, "-c", COMPONENTS_PROBE], capture_output=True, text=True, check=True,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows, last = [], 0.0
    for name, rss, seconds in result["steps"]:
        rows.append({"component": name, "added_mb": round(rss - last, 1), "rss_mb": round(rss, 1),
                     "seconds": round(seconds, 2)})
        last = rss
    return {"rows": rows, "heavy_imports": result["heavy"]}


def jpeg(rng: np.random.Generator) -> bytes:
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((640, 480), Image.BILINEAR).save(out, "JPEG", quality=90)
    return out.getvalue()


def memory(proc: psutil.Process) -> dict:
    """RSS and PSS in MB of each process of the tree, by role."""
    out = {}
    for p in [proc, *proc.children(recursive=True)]:
        command = " ".join(p.cmdline())
        role = ("image worker" if "service.cli worker" in command
                else "supervisor" if p.pid == proc.pid
                else "gunicorn master" if p.ppid() == proc.pid else "web worker")
        try:
            pss = p.memory_full_info().pss / 2**20
        except (psutil.AccessDenied, AttributeError):
            pss = float("nan")
        out.setdefault(role, []).append({"pid": p.pid, "rss_mb": round(p.memory_info().rss / 2**20, 1),
                                         "pss_mb": round(pss, 1)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    settings = load_settings()
    resolve_url(settings)  # the embedded server up before the clock starts: a second server's case
    parts = components()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / f"withsense-bench-upload-{port}.log"  # the server's log
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WITHSENSE_RATE_LIMIT": "0", "WITHSENSE_WRITE_RATE_LIMIT": "0",
           "WITHSENSE_API_TOKEN": TOKEN}
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                                   "--workers", str(args.workers)], env=env, cwd=REPO_ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    tree = psutil.Process(server.pid)
    try:
        deadline = time.monotonic() + 300
        while "image worker ready" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        while time.monotonic() < deadline:
            try:
                if requests.post(f"{base}/api/search", json={"query": "warm up"}, timeout=30).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        for _ in range(4 * args.workers):
            requests.post(f"{base}/api/search", json={"query": "warm up"}, timeout=30)
        time.sleep(2)
        at_start = memory(tree)

        rng = np.random.default_rng(int(time.time()))
        session = requests.Session()
        latencies = []
        for _ in range(args.uploads):
            r = session.post(f"{base}/api/photos", files={"file": ("bench.jpg", jpeg(rng), "image/jpeg")},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            answered = time.monotonic()
            assert r.status_code == 201, r.text
            photo_id = r.json()["photo_id"]
            while session.get(f"{base}/api/photos/{photo_id}", timeout=30).json()["search"]["state"] == "pending":
                time.sleep(0.02)
            latencies.append(time.monotonic() - answered)

        queries = [f"photo number {i} of a {w}" for i, w in enumerate(["dog", "beach", "city", "bike"] * 100)]
        russian = [f"фото {i}: собака на пляже" for i in range(args.searches // 4)]
        for q in queries[: args.searches] + russian:
            session.post(f"{base}/api/search", json={"query": q}, timeout=30)
        at_plateau = memory(tree)

        processes = [tree, *tree.children(recursive=True)]
        start = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)
        code = server.wait(timeout=120)
        psutil.wait_procs(processes[1:], timeout=120)
        shutdown_s = time.monotonic() - start
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    server_log = log_path.read_text()
    payload = {
        "uploads": len(latencies), "workers": args.workers,
        "upload_to_searchable_s": {"p50": round(float(np.percentile(latencies, 50)), 3),
                                   "p95": round(float(np.percentile(latencies, 95)), 3),
                                   "max": round(max(latencies), 3)},
        "memory_after_warm_up": at_start, "memory_after_traffic": at_plateau, "web_worker_components": parts,
        "ctrl_c": {"seconds_until_every_process_ended": round(shutdown_s, 2), "supervisor_exit_code": code,
                   "killed_by_a_signal": "was killed by" in server_log or "was sent" in server_log},
    }
    (args.out / "upload.json").write_text(json.dumps(payload, indent=2))
    lines = ["# Uploads, memory and Ctrl-C on `withsense serve` (scripts/bench_upload.py)", "",
             f"{args.workers} web workers and the image worker over the demo database, on the shared 2-core machine.", "",
             f"**Upload to searchable** ({len(latencies)} uploads, one at a time, the image worker woken by the "
             f"upload's NOTIFY): p50 {payload['upload_to_searchable_s']['p50']} s, "
             f"p95 {payload['upload_to_searchable_s']['p95']} s, max {payload['upload_to_searchable_s']['max']} s.", "",
             "**Memory** (MB; PSS divides pages shared between processes among them):", "",
             "| process | after warm-up RSS / PSS | after uploads and searches RSS / PSS |", "|---|---|---|"]
    for role, rows in at_plateau.items():
        before = {r["pid"]: r for r in at_start.get(role, [])}
        for row in rows:
            b = before.get(row["pid"], {})
            lines.append(f"| {role} (pid {row['pid']}) | {b.get('rss_mb', '')} / {b.get('pss_mb', '')} | "
                         f"{row['rss_mb']} / {row['pss_mb']} |")
    lines += ["", "**A web worker's memory, piece by piece** (a fresh process loading what warm-up loads, in turn; "
              f"torch/TensorFlow imported: {parts['heavy_imports'] or 'none'}):", "",
              "| component | + MB RSS | RSS MB | s |", "|---|---|---|---|"]
    lines += [f"| {r['component']} | {r['added_mb']} | {r['rss_mb']} | {r['seconds']} |" for r in parts["rows"]]
    c = payload["ctrl_c"]
    lines += ["", f"**Ctrl-C** (SIGINT to the process group): every process ended "
              f"{c['seconds_until_every_process_ended']} s after the signal; supervisor exit code "
              f"{c['supervisor_exit_code']} (0: gunicorn's master and the image worker exited 0); "
              f"{'a process was' if c['killed_by_a_signal'] else 'no process was'} killed by a signal.", ""]
    (args.out / "upload.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
