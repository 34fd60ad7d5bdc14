"""The photo index kept as halfvec against pgvector's binary quantisation with a re-rank.

On one table of synthetic 384-d vectors (scripts/bench_scale.py's, shaped like embeddings):
- halfvec: HNSW over ``embedding::halfvec(384)`` (what service/store/hnsw.py builds), top 100;
- binary: HNSW over ``binary_quantize(embedding)::bit(384)`` (Hamming), the nearest ``100 x
  oversample`` re-ranked by the full vector's cosine, top 100.
Each: build time, size, p50/p95 and recall@100 against exact numpy search. Writes
reports/bench/quantize.{json,md}.

    python scripts/bench_quantize.py --size 100000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_scale import (  # noqa: E402
    DIM,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    K,
    embedding_like_vectors,
    exact_top_k,
    measure,
    scratch_vector_database,
)

from service.config import REPO_ROOT  # noqa: E402

KINDS = {
    "halfvec": (f"(embedding::halfvec({DIM})) halfvec_cosine_ops",
                f"SELECT id FROM bench_vectors ORDER BY embedding::halfvec({DIM}) <=> %(q)s::halfvec({DIM}) LIMIT %(k)s"),
    "binary": (f"(binary_quantize(embedding)::bit({DIM})) bit_hamming_ops",
               "SELECT id FROM (SELECT id, embedding FROM bench_vectors "
               f"ORDER BY binary_quantize(embedding)::bit({DIM}) <~> binary_quantize(%(q)s::vector) "
               "LIMIT %(k)s * {oversample}) AS near ORDER BY embedding <=> %(q)s LIMIT %(k)s"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--oversample", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors, queries = embedding_like_vectors(args.size, rng), embedding_like_vectors(args.queries, rng)
    truth = exact_top_k(vectors, queries, K)
    rows = []
    with scratch_vector_database() as conn:
        conn.execute(f"CREATE TABLE bench_vectors (id bigint PRIMARY KEY, embedding vector({DIM}))")
        with conn.cursor().copy("COPY bench_vectors (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for i, v in enumerate(vectors):
                copy.write_row((i, v))
        conn.execute("VACUUM ANALYZE bench_vectors")
        for kind, (column, sql) in KINDS.items():
            conn.execute("SET maintenance_work_mem = '2GB'")
            start = time.perf_counter()
            conn.execute(f"CREATE INDEX bench_{kind} ON bench_vectors USING hnsw ({column}) "
                         f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
            build_s = round(time.perf_counter() - start, 1)
            size_mb = round(conn.execute("SELECT pg_relation_size(%s)", (f"bench_{kind}",)).fetchone()[0] / 2**20, 1)
            for oversample in (args.oversample if kind == "binary" else [1]):
                ef = max(100, K * oversample)  # the inner LIMIT must be within ef_search
                m = measure(conn, sql.format(oversample=oversample), queries, truth, {"hnsw.ef_search": str(ef)})
                rows.append({"kind": kind, "oversample": oversample, "ef_search": ef, "build_s": build_s,
                             "size_mb": size_mb, **m})
                print(json.dumps(rows[-1]), flush=True)
            conn.execute(f"DROP INDEX bench_{kind}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantize.json").write_text(json.dumps({"n": args.size, "k": K, "results": rows}, indent=2))
    lines = [f"# halfvec HNSW against binary quantisation + re-rank, {args.size:,} vectors (scripts/bench_quantize.py)", "",
             "| index | re-ranked | ef_search | build s | size MB | p50 ms | p95 ms | recall@100 |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['oversample'] * K if r['kind'] == 'binary' else '-'} | {r['ef_search']} | {r['build_s']} | "
              f"{r['size_mb']} | {r['p50_ms']} | {r['p95_ms']} | {r['recall_at_100']} |" for r in rows]
    (args.out / "quantize.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
