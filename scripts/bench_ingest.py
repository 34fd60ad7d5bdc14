"""Ingestion throughput and cold start, written to reports/bench/ingest.json and .md.

* batched: the dataset path (`loader.embed_photos`, batches of 32, torch on both cores) over
  N dataset photos in a throwaway database;
* one by one: `withsense ingest folder` (the upload path: decode, features, fingerprint, joint
  vector, commit per photo) over N other photos;
* cold start: from launching `withsense serve` (gunicorn, 2 workers, over the `make demo`
  database in WITHSENSE_DATA_DIR) to the first answered search.

    python scripts/bench_ingest.py [--photos 64]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, load_settings  # noqa: E402


def batched_throughput(n: int, dataset_dir: Path) -> dict:
    from alembic import command

    from service.cli import alembic_config
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.runtime import encoders_for
    from service.store.db import make_engine, resolve_url

    with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
        settings = load_settings(data_dir=tmp, database_url="", extra_dataset_dir="")
        url = resolve_url(settings)
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url)
        dataset = read_dataset(dataset_dir)
        keep = dict(sorted(dataset.photos.items())[:n])
        dataset.photos, dataset.experts, dataset.crowd = keep, [], []
        dataset.captions = {}
        start = time.perf_counter()
        loader.load_dataset(engine, settings, dataset, progress=False)
        load_s = time.perf_counter() - start
        encoders = encoders_for(settings)
        encoders.image.encode([])  # loads the networks: start-up, not throughput
        start = time.perf_counter()
        count = loader.embed_photos(engine, settings, encoders.image, progress=False)
        embed_s = time.perf_counter() - start
        engine.dispose()
        from service.store import embedded

        embedded.stop(settings.pgdata_dir)
    return {"photos": count, "store_and_load_s": round(load_s, 2), "features_s": round(embed_s, 2),
            "photos_per_s": round(count / (load_s + embed_s), 2), "encoder": settings.image_model}


def folder_throughput(n: int, source: Path) -> dict:
    files = sorted(source.glob("*.jpg"))[:n]
    with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f.name)
        env = dict(os.environ, WITHSENSE_DATA_DIR=str(Path(tmp) / "data"), DATABASE_URL="")
        cli = [sys.executable, "-m", "service.cli"]
        subprocess.run(cli + ["migrate"], env=env, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(cli + ["ingest", "folder", str(folder)], env=env, check=True, capture_output=True)
        total_s = time.perf_counter() - start
        subprocess.run(cli + ["db", "stop"], env=env, capture_output=True)
    return {"photos": len(files), "total_s": round(total_s, 2), "photos_per_s": round(len(files) / total_s, 2),
            "note": "includes process start and model loading"}


def cold_start(port: int) -> dict:
    body = json.dumps({"query": "a dog runs through the snow"}).encode()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                            env=dict(os.environ, WITHSENSE_RATE_LIMIT="0"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - start < 120:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/search", data=body,
                                                 headers={"content-type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        return {"first_search_s": round(time.perf_counter() - start, 2)}
            except OSError:
                time.sleep(0.1)
        raise SystemExit("no answer within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    settings = load_settings()
    dataset = Path(settings.dataset_dir)
    extra_images = Path(settings.extra_dataset_dir) / "images"
    result = {
        "batched_dataset_ingest": batched_throughput(args.photos, dataset),
        "folder_ingest_one_by_one": folder_throughput(args.photos, extra_images if extra_images.is_dir() else dataset / "test_images"),
        "cold_start": cold_start(args.port),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2))
    b, f, c = result["batched_dataset_ingest"], result["folder_ingest_one_by_one"], result["cold_start"]
    (args.out / "ingest.md").write_text("\n".join([
        "# Ingestion and cold start (scripts/bench_ingest.py)", "",
        "| what | photos | seconds | photos/s |", "|---|---|---|---|",
        f"| dataset ingest, batched (store + COPY + features, {b['encoder']}) | {b['photos']} | "
        f"{b['store_and_load_s'] + b['features_s']:.1f} | {b['photos_per_s']} |",
        f"| `withsense ingest folder`, one by one (with process start) | {f['photos']} | {f['total_s']} | {f['photos_per_s']} |",
        "", f"Cold start, `withsense serve` launched to first answered search: {c['first_search_s']} s.", ""]))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
