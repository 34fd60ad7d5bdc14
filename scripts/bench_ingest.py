"""Ingestion throughput, upload latency and cold start, written to reports/bench/ingest.json and .md.

Each figure is reported beside its floor measured in the same run (the machine is shared):

* encoder floor: the image encoder alone (ONNX Runtime, every configured network, each photo and
  its mirror) over N photos already decoded in memory, for each precision (fp32, int8);
* batched: the dataset path (`loader.load_dataset` + `loader.embed_photos`, batches of
  WITHSENSE_EMBED_BATCH) over N dataset photos in a throwaway database, for each precision;
* stages: the CPU time of each stage run one after another (read + decode, mirror, each network
  input's resizing and inference, the DB write) and its share;
* folder: `withsense ingest folder` over N other photos (stores photo by photo, then drains the
  queue in batches), with and without its process start and model loading;
* uploads: `POST /api/photos` to `withsense serve` (2 workers) one at a time, p50/p95 answer time,
  and how long until every upload is searchable (the servers' embedding workers);
* cold start: from launching `withsense serve` over WITHSENSE_DATA_DIR (a `make demo` database
  with a trained model) to the first answered search; floor: a fresh Python process that imports
  the search path, opens MiniLM on ONNX Runtime and encodes one query.

    python scripts/bench_ingest.py [--photos 64] [--uploads 30] [--precisions fp32 int8] [--skip-serve]
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


def _image_encoder(settings: Settings, precision: str):
    from ml.encoders import load_encoders

    return load_encoders(settings.encoder, image_model=settings.image_model, runtime=settings.encoder_runtime,
                         onnx_dir=settings.onnx_path, image_precision=precision).image


def encoder_floor(settings: Settings, paths: list[Path], precision: str) -> dict:
    from PIL import Image

    encoder = _image_encoder(settings, precision)
    images = [Image.open(p).convert("RGB") for p in paths]
    encoder.encode(images[:2])  # opens the networks: start-up, not throughput
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(images), settings.embed_batch):
        encoder.encode(images[i : i + settings.embed_batch])
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"photos": len(images), "seconds": round(seconds, 2), "photos_per_s": round(len(images) / seconds, 1),
            "cpu_s": round(cpu_s, 2), "photos_per_cpu_s": round(len(images) / cpu_s, 2), "encoder": encoder.name,
            "precision": precision, "load_average": round(os.getloadavg()[0], 1)}


def stage_profile(settings: Settings, paths: list[Path], precision: str) -> dict:
    """CPU seconds of each stage, run one after another in this thread (ONNX Runtime's own threads
    count too): read + decode, then per network input (part and view) its resizing and its
    inference. In the product the resizing and decoding overlap the inference (ml/pipeline.py)."""
    from PIL import ImageOps

    from service.photos.images import decode_image

    encoder = _image_encoder(settings, precision)
    encoder.encode([decode_image(paths[0].read_bytes(), max_pixels=settings.max_pixels).image])  # opens the networks
    stages: dict[str, float] = {}

    def timed(stage: str, fn, *args):
        cpu = time.process_time()
        out = fn(*args)
        stages[stage] = stages.get(stage, 0.0) + time.process_time() - cpu
        return out

    for i in range(0, len(paths), settings.embed_batch):
        batch = paths[i : i + settings.embed_batch]
        images = timed("read + decode", lambda b: [decode_image(p.read_bytes(), max_pixels=settings.max_pixels).image
                                                   for p in b], batch)
        mirrored = timed("mirror", lambda ims: [ImageOps.mirror(im) for im in ims], images)
        for part, flip in zip(encoder.parts, encoder.part_flips(), strict=True):
            for view, ims in [("photo", images), ("mirror", mirrored)][: 2 if flip else 1]:
                prepared = timed(f"resize: {part.name} ({view})", part.prepare, ims)
                timed(f"inference: {part.name} ({view})", part.run, prepared)
    return {"photos": len(paths), "precision": precision, "cpu_s": {k: round(v, 3) for k, v in stages.items()}}


def db_write_cpu(engine, image_model_id: int) -> dict:
    """The DB write stage alone: the batched run's vectors written again by binary COPY (this
    process's CPU, and the wall time including PostgreSQL's), then rolled back."""
    import numpy as np
    from sqlalchemy import text

    from service.store.db import as_array
    from service.store.vectors import write_vectors

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT photo_id, embedding FROM photo_embeddings WHERE model_id = :m"),
                            {"m": image_model_id}).all()
    ids, vectors = [r[0] for r in rows], np.stack([as_array(r[1]) for r in rows])
    with engine.connect() as conn:
        conn.execute(text("DELETE FROM photo_embeddings WHERE model_id = :m"), {"m": image_model_id})
        start, cpu = time.perf_counter(), time.process_time()
        write_vectors(conn, "photo_embeddings", "photo_id", image_model_id, ids, vectors)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        conn.rollback()
    return {"photos": len(ids), "seconds": round(seconds, 3), "cpu_s": round(cpu_s, 3)}


def batched_throughput(settings: Settings, n: int, dataset_dir: Path, data_dir: Path, precision: str) -> dict:
    from alembic import command

    from service.cli import alembic_config
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.runtime import encoders_for
    from service.store.db import make_engine, resolve_url

    settings = settings.with_overrides({"data_dir": data_dir, "database_url": "", "extra_dataset": "",
                                        "onnx_dir": str(settings.onnx_path),  # exported once, not per run
                                        "image_precision": precision})
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
    from service.store.model_rows import encoder_model_ids

    db_write = db_write_cpu(engine, encoder_model_ids(engine, settings, image_encoder=encoders.image)["image"])
    engine.dispose()
    return {"photos": count, "store_and_load_s": round(load_s, 2), "features_s": round(embed_s, 2),
            "photos_per_s": round(count / (load_s + embed_s), 1), "features_photos_per_s": round(count / embed_s, 1),
            "cpu_s": round(cpu_s, 2), "photos_per_cpu_s": round(count / cpu_s, 2), "encoder": encoders.image.name,
            "batch": settings.embed_batch, "db_write": db_write, "load_average": round(os.getloadavg()[0], 1)}


def folder_throughput(settings: Settings, files: list[Path]) -> dict:
    with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f.name)
        env = dict(os.environ, WITHSENSE_DATA_DIR=str(Path(tmp) / "data"), DATABASE_URL="",
                   WITHSENSE_ONNX_DIR=str(settings.onnx_path),
                   WITHSENSE_IMAGE_PRECISION=settings.image_precision or settings.new_library_precision)
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
    from service.store.library_precision import resolved_settings

    env = dict(os.environ, **({"WITHSENSE_DATA_DIR": str(data_dir)} if data_dir else {}))
    # The library's precision, as the server's workers were handed it (the floor opens no database).
    env["WITHSENSE_IMAGE_PRECISION"] = resolved_settings(load_settings(**({"data_dir": data_dir} if data_dir else {}))
                                                         ).image_precision
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run([sys.executable, "-c", COLD_FLOOR], capture_output=True, text=True, check=True, env=env)
    floor, floor_cpu = time.perf_counter() - start, _children_cpu() - cpu
    imports_s, encoder_s = (float(x) for x in out.stdout.split())
    return {"first_search_s": round(first, 2), "floor_s": round(floor, 2), "floor_cpu_s": round(floor_cpu, 2),
            "floor_imports_s": imports_s, "floor_open_and_encode_s": encoder_s, "load_average": os.getloadavg()[0]}


def _stage_rows(profile: dict, db_write: dict) -> list[str]:
    """Stages grouped (decode, resize, inference per network, DB write) with their share of the CPU."""
    groups: dict[str, float] = {}
    for stage, cpu_s in profile["cpu_s"].items():
        kind, _, part = stage.partition(": ")
        key = "inference: " + part.split(" (")[0] if kind == "inference" else kind
        groups[key] = groups.get(key, 0.0) + cpu_s
    n = profile["photos"]
    groups[f"DB write (binary COPY; this process, PostgreSQL's wall time {1000 * db_write['seconds'] / max(db_write['photos'], 1):.1f} ms per photo)"] = (
        db_write["cpu_s"] * n / max(db_write["photos"], 1))
    total = sum(groups.values())
    rows = [f"| {k} | {1000 * v / n:.1f} | {100 * v / total:.1f} % |" for k, v in groups.items()]
    return rows + [f"| all | {1000 * total / n:.1f} | 100 % |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "int8"], default=["fp32", "int8"])
    parser.add_argument("--skip-serve", action="store_true", help="ingestion only: no uploads, folder, cold start")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    settings = load_settings()
    dataset = Path(settings.dataset)
    extra = Path(settings.extra_dataset) / "images"
    others = sorted((extra if extra.is_dir() else dataset / "test_images").glob("*.jpg"))
    train = sorted((dataset / "train_images").glob("*.jpg"))
    from service.runtime import export_models

    for precision in args.precisions:
        export_models(settings.with_overrides({"image_precision": precision}))
    served = settings.image_precision or settings.new_library_precision  # each run here is a new library
    result: dict = {"served_precision": served, "cores": len(os.sched_getaffinity(0)), "ingest": {}}
    for precision in args.precisions:
        with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
            run = {"encoder_floor": encoder_floor(settings, train[: args.photos], precision),
                   "batched_dataset_ingest": batched_throughput(settings, args.photos, dataset, Path(tmp), precision),
                   "stages": stage_profile(settings, train[: args.photos], precision)}
            result["ingest"][precision] = run
            if precision == served and not args.skip_serve:
                # The batched run's database is still up under tmp: uploads go to a server over it.
                result["uploads"] = upload_latency(settings, others[args.photos : args.photos + args.uploads], Path(tmp))
            from service.store import embedded

            embedded.stop(Path(tmp) / "pgdata")
    if not args.skip_serve:
        result["folder_ingest"] = folder_throughput(settings, others[: args.photos])
        result["cold_start"] = cold_start(None)
    elif (args.out / "ingest.json").is_file():  # kept from the last full run, and said so
        previous = json.loads((args.out / "ingest.json").read_text())
        result["not_measured_in_this_run"] = [k for k in ("uploads", "folder_ingest", "cold_start") if k in previous]
        result.update({k: previous[k] for k in result["not_measured_in_this_run"]})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2))
    (args.out / "ingest.md").write_text("\n".join(_markdown(result)))
    print(json.dumps(result, indent=2))


def _markdown(result: dict) -> list[str]:
    lines = ["# Ingestion, uploads and cold start (scripts/bench_ingest.py)", "",
             f"Served image precision: {result['served_precision']} (WITHSENSE_IMAGE_PRECISION). "
             f"Each photo and its mirror image; {result['cores']} encoding threads (one per core), each resizing "
             "and running the networks for its share of the batch on ONNX Runtime sessions of one intra-op thread "
             "(idle threads sleep); the next batch is read and decoded in a thread while this one is encoded "
             "(ml/pipeline.py).", "",
             "| what | photos | seconds | photos/s | CPU s | photos per CPU s | load average |", "|---|---|---|---|---|---|---|"]
    for precision, run in result["ingest"].items():
        e, b = run["encoder_floor"], run["batched_dataset_ingest"]
        lines += [
            f"| {precision} floor: the image encoder alone, photos decoded in memory | {e['photos']} | {e['seconds']} | "
            f"{e['photos_per_s']} | {e['cpu_s']} | {e['photos_per_cpu_s']} | {e['load_average']} |",
            f"| {precision} dataset ingest, batched (store + COPY + decode + features, batches of {b['batch']}) | "
            f"{b['photos']} | {b['store_and_load_s'] + b['features_s']:.1f} | {b['photos_per_s']} | {b['cpu_s']} | "
            f"{b['photos_per_cpu_s']} | {b['load_average']} |",
            f"| {precision} its features stage alone (decode + resize + inference + DB write) | {b['photos']} | "
            f"{b['features_s']} | {b['features_photos_per_s']} | | | |"]
    f = result.get("folder_ingest")
    if f:
        lines += [
            f"| `withsense ingest folder` (stored one by one, features in batches), with process start | {f['photos']} | "
            f"{f['total_s']} | {f['photos_per_s']} | {f['cpu_s']} | {f['photos'] / f['cpu_s']:.2f} | |",
            f"| the same without its process start and model loading ({f['process_start_s']} s) | {f['photos']} | "
            f"{f['total_s'] - f['process_start_s']:.1f} | {f['photos_per_s_after_start']} | | | |"]
    lines += ["", "On an idle machine photos/s is about cores x photos per CPU second (one busy encoding thread "
              "per core); the wall-clock columns depend on what else the shared machine runs, hence the load "
              "average beside each.", ""]
    for precision, run in result["ingest"].items():
        lines += [f"Stages, {precision}, CPU per photo when run one after another "
                  f"({run['stages']['photos']} photos; DB write from the batched run):", "",
                  "| stage | CPU ms per photo | share |", "|---|---|---|",
                  *_stage_rows(run["stages"], run["batched_dataset_ingest"]["db_write"]), ""]
    if result.get("not_measured_in_this_run"):
        lines += ["Not measured in this run (`--skip-serve`), kept from the previous one: "
                  f"{', '.join(result['not_measured_in_this_run'])}.", ""]
    u, c = result.get("uploads"), result.get("cold_start")
    if u:
        lines += [f"Uploads, `POST /api/photos` one at a time to `withsense serve` (2 workers): p50 {u['p50_ms']} ms, "
                  f"p95 {u['p95_ms']} ms, max {u['max_ms']} ms over {u['uploads']} photos; all {u['uploads']} searchable "
                  f"{u['all_embedded_s']} s after the first was sent (the servers' embedding workers, in the background).", ""]
    if c:
        lines += [f"Cold start, `withsense serve` launched to the first answered search: {c['first_search_s']} s. "
                  f"Floor: a fresh Python process that imports the search path ({c['floor_imports_s']} s), opens MiniLM "
                  f"on ONNX Runtime and encodes one query ({c['floor_open_and_encode_s']} s): {c['floor_s']} s in all, "
                  f"{c['floor_cpu_s']} CPU s.", ""]
    return lines


if __name__ == "__main__":
    main()
