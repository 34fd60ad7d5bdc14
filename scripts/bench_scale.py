"""Shortlist at scale: synthetic photo vectors in the embedded PostgreSQL, HNSW against exact search.

For each size: bulk load by binary COPY, build an HNSW index (vector and halfvec), then measure
shortlist latency and recall@K against exact numpy search for several ``hnsw.ef_search``, also with
a 10 % filter with and without ``hnsw.iterative_scan``. Writes reports/bench/scale.json and .md.

    python scripts/bench_scale.py                      # 100k and 1M, as in the report
    python scripts/bench_scale.py --sizes 20000 --queries 50   # a quick look

The vectors are shaped like real embeddings (clusters, a decaying variance spectrum, a shared mean
direction); uniform random vectors in 384 dimensions would be an unrealistically hard case for any
graph index. At sizes of 500k and more only the halfvec index is built, to keep the run short.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, load_settings  # noqa: E402
from service.store.db import resolve_url  # noqa: E402

DIM = 384  # the joint space of the production model (MiniLM)
K = 100  # shortlist size in production
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64


def embedding_like_vectors(n: int, rng: np.random.Generator, n_clusters: int = 1000) -> np.ndarray:
    """Unit vectors shaped like real embeddings: clusters, a decaying variance spectrum, a shared mean."""
    seed = np.random.default_rng(12345)  # the same space for the base set and the queries
    basis, _ = np.linalg.qr(seed.standard_normal((DIM, DIM)))
    spectrum = (1.0 + np.arange(DIM)) ** -0.75
    centres = seed.standard_normal((n_clusters, DIM)) * spectrum * 2.0
    mean = seed.standard_normal(DIM) * 0.5
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        z = centres[rng.integers(0, n_clusters, stop - start)] + rng.standard_normal((stop - start, DIM)) * spectrum
        out[start:stop] = (z @ basis.T + mean).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[set]:
    ids = np.arange(len(vectors))
    if mask is not None:
        vectors, ids = vectors[mask], ids[mask]
    truth = []
    for q in queries:
        sims = vectors @ q
        top = np.argpartition(-sims, k)[:k]
        truth.append(set(ids[top].tolist()))
    return truth


def percentile(values: list[float], p: float) -> float:
    return round(float(np.percentile(values, p)), 3)


def measure(conn, sql: str, queries: np.ndarray, truth: list[set], settings: dict[str, str]) -> dict:
    with conn.cursor() as cur:
        for name, value in settings.items():
            cur.execute(f"SET {name} = {value}")
        cur.execute(sql, {"q": queries[0], "k": K})  # warm the cache path
        latencies, recalls = [], []
        for q, expected in zip(queries, truth, strict=True):
            start = time.perf_counter()
            cur.execute(sql, {"q": q, "k": K})
            got = {row[0] for row in cur.fetchall()}
            latencies.append((time.perf_counter() - start) * 1000)
            recalls.append(len(got & expected) / K)
        for name in settings:
            cur.execute(f"RESET {name}")
    return {"p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "recall_at_100": round(float(np.mean(recalls)), 4)}


def relation_mb(conn, name: str) -> float:
    return round(conn.execute("SELECT pg_relation_size(%s)", (name,)).fetchone()[0] / 2**20, 1)


def bench_size(conn, n: int, n_queries: int, ef_values: list[int], rng: np.random.Generator) -> dict:
    print(f"\n== {n:,} vectors ==", flush=True)
    vectors = embedding_like_vectors(n, rng)
    queries = embedding_like_vectors(n_queries, rng)
    category = (np.arange(n) % 10 == 0)  # a 10 % filter, e.g. one photographer's or place's photos

    conn.execute("DROP TABLE IF EXISTS bench_vectors")
    conn.execute(f"CREATE UNLOGGED TABLE bench_vectors (id bigint PRIMARY KEY, in_filter boolean, embedding vector({DIM}))")
    start = time.perf_counter()
    with conn.cursor().copy("COPY bench_vectors (id, in_filter, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "bool", "vector"])
        for i in range(n):
            copy.write_row((i, bool(category[i]), vectors[i]))
    load_s = time.perf_counter() - start
    conn.execute("ANALYZE bench_vectors")
    print(f"COPY: {load_s:.1f} s ({n / load_s:,.0f} rows/s)", flush=True)

    truth = exact_top_k(vectors, queries, K)
    truth_filtered = exact_top_k(vectors, queries, K, mask=category)
    result = {"n": n, "dim": DIM, "copy_s": round(load_s, 2), "copy_rows_per_s": round(n / load_s),
              "table_mb": relation_mb(conn, "bench_vectors"), "indexes": {}}

    exact_sql = "SELECT id FROM bench_vectors ORDER BY embedding <=> %(q)s LIMIT %(k)s"
    result["exact_scan"] = measure(conn, exact_sql, queries[: min(20, n_queries)], truth[:20],
                                   {"enable_indexscan": "off"})
    print(f"exact scan in SQL: {result['exact_scan']}", flush=True)
    start = time.perf_counter()
    for q in queries:
        np.argpartition(-(vectors @ q), K)[:K]
    result["numpy_exact_ms_per_query"] = round((time.perf_counter() - start) * 1000 / n_queries, 3)

    kinds = [("vector", "embedding", "vector_cosine_ops"), ("halfvec", f"(embedding::halfvec({DIM}))", "halfvec_cosine_ops")]
    for kind, column, ops in kinds[1:] if n >= 500_000 else kinds:
        index = f"bench_{kind}_hnsw"
        conn.execute("SET maintenance_work_mem = '4GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")  # two cores: leader + one worker
        start = time.perf_counter()
        conn.execute(f"CREATE INDEX {index} ON bench_vectors USING hnsw ({column} {ops}) "
                     f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
        build_s = time.perf_counter() - start
        info = {"build_s": round(build_s, 1), "size_mb": relation_mb(conn, index), "ef_search": {}, "filtered_10pct": {}}
        print(f"{kind} HNSW build: {build_s:.1f} s, {info['size_mb']} MB", flush=True)
        order = "embedding <=> %(q)s" if kind == "vector" else f"embedding::halfvec({DIM}) <=> %(q)s::halfvec({DIM})"
        sql = f"SELECT id FROM bench_vectors ORDER BY {order} LIMIT %(k)s"
        filtered_sql = f"SELECT id FROM bench_vectors WHERE in_filter ORDER BY {order} LIMIT %(k)s"
        for ef in ef_values:
            info["ef_search"][ef] = measure(conn, sql, queries, truth, {"hnsw.ef_search": str(ef)})
            print(f"  ef_search={ef}: {info['ef_search'][ef]}", flush=True)
        for mode in ("off", "relaxed_order"):
            info["filtered_10pct"][mode] = measure(
                conn, filtered_sql, queries, truth_filtered,
                {"hnsw.ef_search": str(max(ef_values[:2])), "hnsw.iterative_scan": mode})
            print(f"  10% filter, iterative_scan={mode}: {info['filtered_10pct'][mode]}", flush=True)
        result["indexes"][kind] = info
        conn.execute(f"DROP INDEX {index}")
    conn.execute("DROP TABLE bench_vectors")
    return result


def choose_defaults(results: list[dict], target_recall: float = 0.95) -> dict:
    """The smallest ef_search that reaches the recall target at the largest size, per index type."""
    largest = max(results, key=lambda r: r["n"])
    chosen = {}
    for kind, info in largest["indexes"].items():
        for ef, m in sorted(info["ef_search"].items(), key=lambda kv: int(kv[0])):
            if m["recall_at_100"] >= target_recall:
                chosen[kind] = {"ef_search": int(ef), **m}
                break
    return chosen


def write_report(results: list[dict], defaults: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"cpus": 2, "python": platform.python_version()}, "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
               "k": K, "results": results, "chosen_defaults": defaults}
    (out_dir / "scale.json").write_text(json.dumps(payload, indent=2))
    lines = ["# Shortlist at scale (scripts/bench_scale.py)", "",
             f"HNSW m={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION}; shortlist K={K}; {DIM}-d clustered unit vectors; "
             "recall@100 against exact numpy search.", ""]
    for r in results:
        lines += [f"## {r['n']:,} vectors", "",
                  f"COPY {r['copy_s']} s ({r['copy_rows_per_s']:,} rows/s), table {r['table_mb']} MB; "
                  f"exact SQL scan p50 {r['exact_scan']['p50_ms']} ms; exact numpy {r['numpy_exact_ms_per_query']} ms/query.", "",
                  "| index | build s | size MB | ef_search | p50 ms | p95 ms | p99 ms | recall@100 |",
                  "|---|---|---|---|---|---|---|---|"]
        for kind, info in r["indexes"].items():
            for ef, m in info["ef_search"].items():
                lines.append(f"| {kind} | {info['build_s']} | {info['size_mb']} | {ef} | {m['p50_ms']} | {m['p95_ms']} | {m['p99_ms']} | {m['recall_at_100']} |")
            for mode, m in info["filtered_10pct"].items():
                lines.append(f"| {kind}, 10 % filter, iterative_scan={mode} | | | | {m['p50_ms']} | {m['p95_ms']} | {m['p99_ms']} | {m['recall_at_100']} |")
        lines.append("")
    lines += ["## Chosen defaults", "", "```json", json.dumps(defaults, indent=2), "```", ""]
    (out_dir / "scale.md").write_text("\n".join(lines))


@contextmanager
def scratch_vector_database():
    """An autocommit psycopg connection (pgvector registered) to a throwaway database on the
    configured server, dropped afterwards whatever happens."""
    from sqlalchemy.engine import make_url

    base_url = resolve_url(load_settings()).replace("postgresql+psycopg://", "postgresql://")
    db_name = f"withsense_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    try:
        url = make_url(base_url).set(database=db_name).render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            register_vector(conn)
            yield conn
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()

    with scratch_vector_database() as conn:
        rng = np.random.default_rng(0)
        results = [bench_size(conn, n, args.queries, args.ef, rng) for n in args.sizes]
    defaults = choose_defaults(results)
    write_report(results, defaults, args.out)
    print(f"\nwritten: {args.out / 'scale.json'}, {args.out / 'scale.md'}\nchosen: {defaults}")


if __name__ == "__main__":
    main()
