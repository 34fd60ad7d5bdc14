"""Ingestion throughput, upload latency and cold start, written to reports/bench/ingest.json and .md.

Each figure is reported beside its floor measured in the same run (the machine is shared):

* encoder floor: the served image encoder alone (ONNX Runtime, every configured network, each
  photo and its mirror) over N photos already decoded in memory;
* batched: the dataset path (`loader.load_dataset` + `loader.embed_photos`, batches of
  WITHSENSE_EMBED_BATCH) over N dataset photos in a throwaway database;
* folder: `withsense ingest folder` over N other photos (stores photo by photo, then drains the
  queue in batches), with and without its process start and model loading;
* uploads: `POST /api/photos` to `withsense serve` (2 workers) one at a time, p50/p95 answer time,
  and how long until every upload is searchable (the servers' embedding workers);
* cold start: from launching `withsense serve` over WITHSENSE_DATA_DIR (a `make demo` database
  with a trained model) to the first answered search; floor: a fresh Python process that imports
  the search path, opens MiniLM on ONNX Runtime and encodes one query.

    python scripts/bench_ingest.py [--photos 64] [--uploads 30]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, Settings, load_settings  # noqa: E402
from tests.helpers import free_port  # noqa: E402  (the one copy, shared with the tests)

TOKEN = "bench-token"


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: the machine is shared, and CPU
    time is what another engineer's load changes least."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def encoder_floor(settings: Settings, paths: list[Path]) -> dict:
    from PIL import Image

    from service.runtime import encoders_for

    encoder = encoders_for(settings).image
    images = [Image.open(p).convert("RGB") for p in paths]
    encoder.encode(images[:2])  # opens the networks: start-up, not throughput
    start, cpu = time.perf_counter(), time.process_time()
    encoder.encode(images)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"photos": len(images), "seconds": round(seconds, 2), "photos_per_s": round(len(images) / seconds, 1),
            "cpu_s": round(cpu_s, 2), "photos_per_cpu_s": round(len(images) / cpu_s, 2), "encoder": encoder.name}


def batched_throughput(settings: Settings, n: int, dataset_dir: Path, data_dir: Path) -> dict:
    from alembic import command

    from service.cli import alembic_config
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.runtime import encoders_for
    from service.store.db import make_engine, resolve_url

    settings = settings.with_overrides({"data_dir": data_dir, "database_url": "", "extra_dataset": "",
                                        "onnx_dir": str(settings.onnx_path)})  # exported once, not per run
    url = resolve_url(settings)
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    dataset = read_dataset(dataset_dir)
    dataset.photos = dict(sorted(dataset.photos.items())[:n])
    dataset.experts, dataset.crowd, dataset.captions = [], [], {}
    encoders = encoders_for(settings)
    for part in getattr(encoders.image, "parts", [encoders.image]):
        getattr(part, "load", lambda: None)()  # opening the networks is start-up, not throughput
    start, cpu = time.perf_counter(), time.process_time()
    loader.load_dataset(engine, settings, dataset, progress=False)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    count = loader.embed_photos(engine, settings, encoders.image, batch_size=settings.embed_batch, progress=False)
    embed_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    engine.dispose()
    return {"photos": count, "store_and_load_s": round(load_s, 2), "features_s": round(embed_s, 2),
            "photos_per_s": round(count / (load_s + embed_s), 1), "cpu_s": round(cpu_s, 2),
            "photos_per_cpu_s": round(count / cpu_s, 2), "encoder": settings.image_model,
            "batch": settings.embed_batch}


def folder_throughput(settings: Settings, files: list[Path]) -> dict:
    with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f.name)
        env = dict(os.environ, WITHSENSE_DATA_DIR=str(Path(tmp) / "data"), DATABASE_URL="",
                   WITHSENSE_ONNX_DIR=str(settings.onnx_path))
        cli = [sys.executable, "-m", "service.cli"]
        subprocess.run(cli + ["migrate"], env=env, check=True, capture_output=True)
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(cli + ["ingest", "folder", str(folder), "--quiet"], env=env, check=True,
                              capture_output=True, text=True)
        total_s, cpu_s = time.perf_counter() - start, _children_cpu() - cpu
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from service.runtime import encoders_for; from service.config import "
                        "load_settings; encoders_for(load_settings()).image.encode([])"], env=env, check=True)
        startup_s = time.perf_counter() - start  # process start + imports + opening the networks
        subprocess.run(cli + ["db", "stop"], env=env, capture_output=True)
    assert f"added: {len(files)}" in done.stdout, done.stdout
    return {"photos": len(files), "total_s": round(total_s, 2), "photos_per_s": round(len(files) / total_s, 1),
            "cpu_s": round(cpu_s, 2), "process_start_s": round(startup_s, 2),
            "photos_per_s_after_start": round(len(files) / max(total_s - startup_s, 1e-6), 1)}


def _serve(data_dir: Path | None, port: int, **env_overrides):
    env = dict(os.environ, WITHSENSE_RATE_LIMIT="0", **env_overrides)
    if data_dir is not None:
        env.update(WITHSENSE_DATA_DIR=str(data_dir), DATABASE_URL="")
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def _wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "benchboundary7d2f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload_latency(settings: Settings, files: list[Path], data_dir: Path) -> dict:
    port = free_port()
    proc = _serve(data_dir, port, WITHSENSE_API_TOKEN=TOKEN, WITHSENSE_ONNX_DIR=str(settings.onnx_path))
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/healthz")
        times, ids = [], []
        first = time.perf_counter()
        for f in files:
            body, ctype = _multipart(f.name, f.read_bytes())
            request = urllib.request.Request(f"{base}/api/photos", data=body, method="POST",
                                             headers={"content-type": ctype, "authorization": f"Bearer {TOKEN}"})
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                ids.append(json.loads(response.read())["photo_id"])
            times.append((time.perf_counter() - start) * 1000)
        while True:  # every upload's vectors have landed when its job is gone
            states = []
            for photo_id in ids:
                with urllib.request.urlopen(f"{base}/api/photos/{photo_id}", timeout=30) as response:
                    states.append(json.loads(response.read())["search"]["state"])
            if "pending" not in states:
                break
            time.sleep(0.2)
        all_done_s = time.perf_counter() - first
    finally:
        _stop(proc)
    times.sort()
    return {"uploads": len(times), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1), "max_ms": round(times[-1], 1),
            "all_embedded_s": round(all_done_s, 2), "final_states": sorted(set(states))}


COLD_FLOOR = """
import time, sys
t0 = time.perf_counter()
import service.api.search  # noqa: the search path's imports (numpy, scikit-learn, psycopg, flask)
from service.config import load_settings
from service.runtime import encoders_for
t1 = time.perf_counter()
encoders_for(load_settings()).text.encode(["a dog runs through the snow"])
t2 = time.perf_counter()
print(round(t1 - t0, 3), round(t2 - t1, 3))
"""


def cold_start(data_dir: Path | None) -> dict:
    port = free_port()
    body = json.dumps({"query": "a dog runs through the snow"}).encode()
    start = time.perf_counter()
    proc = _serve(data_dir, port)
    try:
        while time.perf_counter() - start < 120:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/search", data=body,
                                                 headers={"content-type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        first = time.perf_counter() - start
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("no answer within 120 s")
    finally:
        _stop(proc)
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run([sys.executable, "-c", COLD_FLOOR], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **({"WITHSENSE_DATA_DIR": str(data_dir)} if data_dir else {})))
    floor, floor_cpu = time.perf_counter() - start, _children_cpu() - cpu
    imports_s, encoder_s = (float(x) for x in out.stdout.split())
    return {"first_search_s": round(first, 2), "floor_s": round(floor, 2), "floor_cpu_s": round(floor_cpu, 2),
            "floor_imports_s": imports_s, "floor_open_and_encode_s": encoder_s, "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    settings = load_settings()
    dataset = Path(settings.dataset)
    extra = Path(settings.extra_dataset) / "images"
    others = sorted((extra if extra.is_dir() else dataset / "test_images").glob("*.jpg"))
    from service.runtime import export_models

    export_models(settings)
    with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
        result = {
            "encoder_floor": encoder_floor(settings, sorted((dataset / "train_images").glob("*.jpg"))[: args.photos]),
            "batched_dataset_ingest": batched_throughput(settings, args.photos, dataset, Path(tmp)),
        }
        # The batched run's database is still up under tmp: uploads go to a server over it.
        result["uploads"] = upload_latency(settings, others[args.photos : args.photos + args.uploads], Path(tmp))
        from service.store import embedded

        embedded.stop(Path(tmp) / "pgdata")
    result["folder_ingest"] = folder_throughput(settings, others[: args.photos])
    result["cold_start"] = cold_start(None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2))
    e, b, f, u, c = (result[k] for k in ("encoder_floor", "batched_dataset_ingest", "folder_ingest", "uploads", "cold_start"))
    (args.out / "ingest.md").write_text("\n".join([
        "# Ingestion, uploads and cold start (scripts/bench_ingest.py)", "",
        f"Image features: {e['encoder']} on ONNX Runtime (2 threads), each photo and its mirror image.", "",
        "| what | photos | seconds | photos/s | CPU s | photos per CPU s |", "|---|---|---|---|---|---|",
        f"| floor: the image encoder alone, photos decoded in memory | {e['photos']} | {e['seconds']} | "
        f"{e['photos_per_s']} | {e['cpu_s']} | {e['photos_per_cpu_s']} |",
        f"| dataset ingest, batched (store + COPY + decode + features, batches of {b['batch']}) | {b['photos']} | "
        f"{b['store_and_load_s'] + b['features_s']:.1f} | {b['photos_per_s']} | {b['cpu_s']} | {b['photos_per_cpu_s']} |",
        f"| `withsense ingest folder` (stored one by one, features in batches), with process start | {f['photos']} | "
        f"{f['total_s']} | {f['photos_per_s']} | {f['cpu_s']} | {f['photos'] / f['cpu_s']:.2f} |",
        f"| the same without its process start and model loading ({f['process_start_s']} s) | {f['photos']} | "
        f"{f['total_s'] - f['process_start_s']:.1f} | {f['photos_per_s_after_start']} | | |",
        "",
        "On an idle 2-core machine, photos/s is about 2 x photos per CPU second (ONNX Runtime keeps both cores "
        "busy); the wall-clock columns depend on what else the shared machine runs "
        f"(load average {c['load_average']:.1f} at the end of this run).",
        "",
        f"Uploads, `POST /api/photos` one at a time to `withsense serve` (2 workers): p50 {u['p50_ms']} ms, "
        f"p95 {u['p95_ms']} ms, max {u['max_ms']} ms over {u['uploads']} photos; all {u['uploads']} searchable "
        f"{u['all_embedded_s']} s after the first was sent (the servers' embedding workers, in the background).",
        "",
        f"Cold start, `withsense serve` launched to the first answered search: {c['first_search_s']} s. "
        f"Floor: a fresh Python process that imports the search path ({c['floor_imports_s']} s), opens MiniLM "
        f"on ONNX Runtime and encodes one query ({c['floor_open_and_encode_s']} s): {c['floor_s']} s in all, "
        f"{c['floor_cpu_s']} CPU s.", ""]))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
