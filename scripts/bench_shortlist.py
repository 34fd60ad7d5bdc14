"""Exact scan against the HNSW index, measured on the product's own shortlist statement
(service/search/shortlist.py, run by ``fetch_shortlist`` as a search runs it).

- 1,100 photos: the real library in WITHSENSE_DATA_DIR (the `make demo` database), its active
  ranker and that ranker's index, the 500 test queries encoded by the product's text encoder.
- Larger sizes: a throwaway database migrated to head, N synthetic photos under one ranker
  (vectors shaped like embeddings, as in scripts/bench_scale.py; 10 % of photos share a place for
  the filtered case), its index built by ``service.store.hnsw.build_index`` as `withsense train`
  builds it. No descriptions, so the description side of the statement is empty there.

Per size: p50/p95 of the shortlist stage (query, binary transfer of ~100 rows with two vectors
each) by exact scan and by the index, without and with a 10 % filter (iterative scan), and the
recall of the index's candidates against the exact ones. Writes reports/bench/shortlist.{json,md}.

    python scripts/bench_shortlist.py                       # 1,100 (real) + 10k + 100k
    python scripts/bench_shortlist.py --sizes 20000 --queries 50
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_scale import DIM, embedding_like_vectors  # noqa: E402

from service.config import REPO_ROOT, Settings, load_settings  # noqa: E402
from service.search.shortlist import fetch_shortlist  # noqa: E402
from service.store.db import make_engine, resolve_url  # noqa: E402
from service.store.hnsw import build_index  # noqa: E402
from service.store.vectors import write_vectors  # noqa: E402

K = 100


def params_for(query_vector, model_id, text_model_id, place=None) -> dict:
    return {"query_vector": query_vector, "text_vector": query_vector, "model_id": model_id,
            "text_model_id": text_model_id, "splits": None, "shortlist_size": K, "camera": None, "place": place,
            "uploader": None, "taken_after": None, "taken_before": None,
            "multilingual_vector": None, "multilingual_model_id": None}


def measure(engine, queries, model_id, text_model_id, *, use_index: bool, place=None, ef_search=100) -> dict:
    latencies, candidates = [], []
    with engine.connect() as conn:  # one pooled connection, as a worker thread holds one per search
        fetch_shortlist(conn, params_for(queries[0], model_id, text_model_id, place), use_index=use_index,
                        dims=DIM, ef_search=ef_search, filtered=place is not None)
        conn.rollback()
        for q in queries:
            start = time.perf_counter()
            rows = fetch_shortlist(conn, params_for(q, model_id, text_model_id, place), use_index=use_index,
                                   dims=DIM, ef_search=ef_search, filtered=place is not None)
            conn.rollback()  # as the pool does when a search hands its connection back
            latencies.append((time.perf_counter() - start) * 1000)
            candidates.append({r.photo_id for r in rows})
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 3), "p95_ms": round(float(np.percentile(latencies, 95)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3), "candidates": candidates}


def compare(engine, queries, model_id, text_model_id, place=None) -> dict:
    exact = measure(engine, queries, model_id, text_model_id, use_index=False, place=place)
    indexed = measure(engine, queries, model_id, text_model_id, use_index=True, place=place)
    recall = np.mean([len(a & b) / max(1, len(a)) for a, b in zip(exact.pop("candidates"), indexed.pop("candidates"), strict=True)])
    return {"exact": exact, "index": indexed, "index_recall": round(float(recall), 4)}


def real_library(settings: Settings, n_queries: int) -> dict:
    from service.policy import is_about_children
    from service.runtime import encoders_for
    from service.search.active_model import ActiveModelCache

    engine = make_engine(resolve_url(settings))
    encoder = encoders_for(settings).text
    state = ActiveModelCache(engine, encoder_key=settings.encoder_key, text_encoder_name=encoder.name,
                             load=lambda model: None, refresh_seconds=0).get()
    if state.model is None or not state.has_index:
        raise SystemExit("the library needs an active ranker with its HNSW index: run `withsense train` (or migrate to 0007)")
    with engine.connect() as conn:
        texts = conn.execute(text("SELECT text FROM descriptions WHERE source = 'test' ORDER BY id")).scalars().all()
    texts = [t for t in texts if not is_about_children(t)][:n_queries]
    queries = encoder.encode(texts)
    result = {"n": state.n_photos, "source": f"library {settings.data_dir} (ranker {state.model.version})",
              "queries": len(texts), "unfiltered": compare(engine, queries, state.model.id, state.text_model_id)}
    engine.dispose()
    return result


def synthetic_library(settings: Settings, n: int, n_queries: int, rng: np.random.Generator) -> dict:
    from sqlalchemy.engine import make_url

    from service.cli import alembic_config

    base_url = resolve_url(settings)
    name = f"withsense_bench_{uuid.uuid4().hex[:6]}"
    admin_url = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    engine = None
    try:
        from alembic import command

        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=1)
        vectors = embedding_like_vectors(n, rng)
        queries = embedding_like_vectors(n_queries, rng)
        start = time.perf_counter()
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor().copy("COPY photos (id, file_name, sha256, bytes, width, height, storage_key, split, place) "
                                   "FROM STDIN") as copy:
                for i in range(1, n + 1):
                    copy.write_row((i, f"synthetic-{i}.jpg", f"{i:064x}", 1, 1, 1, f"{i:064x}.jpg", "train", f"place-{i % 10}"))
            model_id = conn.execute(text(
                "INSERT INTO models (kind, name, version, encoder_key, dims) VALUES ('ranker', 'bench', 'bench-1', 'bench', :d) "
                "RETURNING id"), {"d": DIM}).scalar_one()
            write_vectors(conn, "photo_embeddings", "photo_id", model_id, np.arange(1, n + 1), vectors, vectors)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        build_index(engine, model_id, DIM)
        build_s = time.perf_counter() - start
        print(f"  {n:,} photos loaded in {load_s:.1f} s, index built in {build_s:.1f} s", flush=True)
        return {"n": n, "source": "synthetic", "queries": n_queries, "load_s": round(load_s, 1), "index_build_s": round(build_s, 1),
                "unfiltered": compare(engine, queries, model_id, None),
                "filtered_10pct": compare(engine, queries, model_id, None, place="place-3")}
    finally:
        if engine is not None:
            engine.dispose()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_report(payload: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "shortlist.json").write_text(json.dumps(payload, indent=2))
    lines = ["# Shortlist: exact scan against the HNSW index (scripts/bench_shortlist.py)", "",
             "The product's own statement (`fetch_shortlist`), K=100, `hnsw.ef_search` 100, halfvec HNSW m=16 "
             "ef_construction=64; the recall is the share of the exact scan's candidates the index path also returns. "
             "Client and database share the 2 cores with other work: compare columns within a row.", "",
             "| photos | library | case | exact p50 ms | exact p95 ms | index p50 ms | index p95 ms | index recall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        for case in ("unfiltered", "filtered_10pct"):
            if case in r:
                c = r[case]
                lines.append(f"| {r['n']:,} | {r['source'].split(' (')[0]} | {case.replace('_10pct', ' (10 %, iterative scan)')} | "
                             f"{c['exact']['p50_ms']} | {c['exact']['p95_ms']} | {c['index']['p50_ms']} | {c['index']['p95_ms']} | "
                             f"{c['index_recall']} |")
    lines += ["", f"Chosen: `WITHSENSE_HNSW_MIN_PHOTOS` = {payload['chosen_min_photos']:,} (see docs/scaling.md).", ""]
    (out_dir / "shortlist.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-real", action="store_true", help="skip the real library")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    parser.add_argument("--add-to", type=Path, help="a shortlist.json of an earlier run whose sizes are kept")
    args = parser.parse_args()
    settings = load_settings()
    results = json.loads(args.add_to.read_text())["results"] if args.add_to else []
    if not args.no_real:
        results.append(real_library(settings, args.queries))
        print(json.dumps(results[-1]), flush=True)
    rng = np.random.default_rng(0)
    for n in args.sizes:
        results.append(synthetic_library(settings, n, args.queries, rng))
        print(json.dumps(results[-1]), flush=True)
    results.sort(key=lambda r: r["n"])
    payload = {"k": K, "results": results, "chosen_min_photos": settings.hnsw_min_photos}
    write_report(payload, args.out)
    print(f"written: {args.out / 'shortlist.json'}, {args.out / 'shortlist.md'}")


if __name__ == "__main__":
    main()
