"""The product's shortlist statement (service/search/shortlist.py, run by ``fetch_shortlist`` in the
shape a search gives it) by exact scan and by the HNSW indexes, from 1,100 photos to a million.

- 1,100 photos: the real library in WITHSENSE_DATA_DIR (the `make demo` database), its active
  ranker, its text encoders and their indexes, the test queries encoded by the product's encoders.
- Larger sizes: a throwaway database migrated to head, N synthetic photos under one ranker through
  the product's schema (joint and bridge vectors shaped like embeddings as in scripts/bench_scale.py,
  top labels, mapper norm; 10 % of photos share a place for the filtered case), a description for
  30 % of them with a MiniLM-sized (384) and a USE-sized (512) vector, and the indexes built by
  ``service.store.hnsw.build_index`` as `withsense train` builds them.

Per size: p50/p95 of the shortlist stage (the statement and its binary transfer) by exact scan and
by the indexes, without and with a 10 % place filter, and the recall of the indexes' candidates
(the union of the three candidate searches) against the exact ones: computed in numpy over all
vectors for synthetic sizes (an exact SQL scan of a million vectors takes seconds, so its latency is
measured on ``--exact-queries`` of them), the exact statement's own for the real library. Also the
load and build times and the disk the tables and indexes take. Writes reports/bench/shortlist.{json,md}.

    python scripts/bench_shortlist.py                                # 1,100 (real) + 10k + 100k
    python scripts/bench_shortlist.py --no-real --sizes 1000000 --add-to reports/bench/shortlist.json
    python scripts/bench_shortlist.py --grow-library 1000000         # into WITHSENSE_DATA_DIR's library
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

from service.config import REPO_ROOT, Settings, load_settings  # noqa: E402
from service.search.shortlist import ShortlistShape, Space, fetch_shortlist  # noqa: E402
from service.store.db import make_engine, resolve_url  # noqa: E402
from service.store.hnsw import build_index  # noqa: E402

K = 100
TEXT_DIM, MULTILINGUAL_DIM = 384, 512
DESCRIBED = 0.3  # share of photos with a description
PLACES = 10  # photo i is at place-(i % 10): a filter on one keeps 10 %
FILTER_PLACE = "Place-3"  # matched case-insensitively, as a search's filter is
BUILD_MEMORY_MB = 3072  # the 1M graph (~1.5 GB) must fit, or pgvector builds it on disk, several times slower


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, n_clusters: int = 1000, seed: int = 12345) -> np.ndarray:
    """Unit vectors shaped like real embeddings: clusters, a decaying variance spectrum, a shared mean
    (scripts/bench_scale.py's, for any dimension); ``seed`` fixes the space, ``rng`` the draw."""
    space = np.random.default_rng(seed + dim)
    basis, _ = np.linalg.qr(space.standard_normal((dim, dim)))
    spectrum = (1.0 + np.arange(dim)) ** -0.75
    centres = space.standard_normal((n_clusters, dim)) * spectrum * 2.0
    mean = space.standard_normal(dim) * 0.5
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        z = centres[rng.integers(0, n_clusters, stop - start)] + rng.standard_normal((stop - start, dim)) * spectrum
        out[start:stop] = (z @ basis.T + mean).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


class Library:
    """A synthetic library's vectors, kept in memory for the exact answers."""

    def __init__(self, n: int, rng: np.random.Generator, first_id: int = 1, joint: np.ndarray | None = None):
        self.ids = np.arange(first_id, first_id + n)
        self.joint = clustered_vectors(n, TEXT_DIM, rng) if joint is None else joint
        self.bridge = clustered_vectors(n, TEXT_DIM, rng, seed=777)
        self.place = self.ids % PLACES
        self.described = np.flatnonzero(rng.random(n) < DESCRIBED)  # row numbers of the described photos
        self.text = clustered_vectors(len(self.described), TEXT_DIM, rng, seed=99)
        self.multilingual = clustered_vectors(len(self.described), MULTILINGUAL_DIM, rng, seed=98)
        self.label_ids = rng.integers(0, 1000, (n, 5)).astype(np.int32)
        self.label_probs = np.sort(rng.dirichlet(np.ones(6), n)[:, :5].astype(np.float32), axis=1)[:, ::-1]
        self.mapper_norm = rng.uniform(0.3, 1.0, n).astype(np.float32)

    def write(self, conn, model_id: int, text_model_id: int, multilingual_model_id: int, first_description: int) -> None:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy("COPY photos (id, file_name, sha256, bytes, width, height, storage_key, split, place) "
                          "FROM STDIN") as copy:
                for i in self.ids:
                    copy.write_row((int(i), f"synthetic-{i}.jpg", f"{i:064x}", 1, 1, 1, f"{i:064x}.jpg", "train",
                                    f"place-{i % PLACES}"))
            with cur.copy("COPY photo_embeddings (photo_id, model_id, embedding, bridge, label_ids, label_probs, "
                          "mapper_norm) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int4", "vector", "vector", "int4[]", "float4[]", "float4"])
                for r, i in enumerate(self.ids):
                    copy.write_row((int(i), model_id, self.joint[r], self.bridge[r], self.label_ids[r].tolist(),
                                    self.label_probs[r].tolist(), float(self.mapper_norm[r])))
            description_ids = first_description + np.arange(len(self.described))
            with cur.copy("COPY descriptions (id, text, source, photo_id) FROM STDIN") as copy:
                for d, r in zip(description_ids, self.described, strict=True):
                    copy.write_row((int(d), f"synthetic description {d}", "dataset", int(self.ids[r])))
            for model, vectors in ((text_model_id, self.text), (multilingual_model_id, self.multilingual)):
                with cur.copy("COPY description_embeddings (description_id, model_id, embedding) "
                              "FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "int4", "vector"])
                    for d, v in zip(description_ids, vectors, strict=True):
                        copy.write_row((int(d), model, v))

    def exact_candidates(self, q: np.ndarray, t: np.ndarray, m: np.ndarray, place: int | None) -> set[int]:
        """The exact statement's candidates: the union of the three nearest-100 searches."""
        keep = np.ones(len(self.ids), bool) if place is None else self.place == place
        out: set[int] = set()
        for rows, vectors, vector in ((np.arange(len(self.ids)), self.joint, q), (self.described, self.text, t),
                                      (self.described, self.multilingual, m)):
            rows_kept = keep[rows]
            sims = vectors[rows_kept] @ vector
            top = np.argpartition(-sims, min(K, len(sims) - 1))[:K]
            out |= set(self.ids[rows[rows_kept][top]].tolist())
        return out


def params_for(q, t, m, ids: dict, place: str | None = None) -> dict:
    return {"query_vector": q, "text_vector": t, "multilingual_vector": m, "model_id": ids["model"],
            "text_model_id": ids["text"], "multilingual_model_id": ids["multilingual"], "splits": None,
            "shortlist_size": K, "camera": None, "place": place, "uploader": None, "taken_after": None,
            "taken_before": None}


def shape_for(ids: dict, *, indexed: bool, place: str | None, multilingual: bool = True) -> ShortlistShape:
    return ShortlistShape(Space(TEXT_DIM, indexed), Space(TEXT_DIM, indexed),
                          Space(MULTILINGUAL_DIM, indexed) if multilingual else None, ("place",) if place else ())


def measure(engine, queries, ids: dict, *, indexed: bool, place=None, ef_search=100, multilingual=True) -> dict:
    latencies, candidates = [], []
    shape = shape_for(ids, indexed=indexed, place=place, multilingual=multilingual)
    with engine.connect() as conn:  # one pooled connection, as a worker thread holds one per search
        for warm in (True, False):
            for q, t, m in queries[:1] if warm else queries:
                start = time.perf_counter()
                rows = fetch_shortlist(conn, params_for(q, t, m, ids, place), shape, ef_search=ef_search)
                conn.rollback()  # as the pool does when a search hands its connection back
                if not warm:
                    latencies.append((time.perf_counter() - start) * 1000)
                    candidates.append({r.photo_id for r in rows})
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 3), "p95_ms": round(float(np.percentile(latencies, 95)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3), "queries": len(latencies), "candidates": candidates}


def recall(truth: list[set], found: list[set]) -> float:
    return round(float(np.mean([len(a & b) / max(1, len(a)) for a, b in zip(truth, found, strict=True)])), 4)


def disk(conn) -> dict:
    """MB per relation: the tables a photo and its description fill, and the HNSW indexes."""
    rows = conn.execute(text(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS main FROM pg_class c "
        "WHERE c.relname IN ('photos', 'photo_embeddings', 'descriptions', 'description_embeddings') "
        "OR c.relname LIKE '%\\_hnsw\\_m%' ORDER BY c.relname")).all()
    return {r.relname: round((r.main if "_hnsw_m" in r.relname else r.total) / 2**20, 1) for r in rows}


def real_library(settings: Settings, n_queries: int) -> dict:
    from service.policy import is_about_children
    from service.runtime import encoders_for
    from service.search.active_model import ActiveModelCache
    from service.store.model_rows import load_ranker

    engine = make_engine(resolve_url(settings))
    encoders = encoders_for(settings)
    state = ActiveModelCache(engine, encoder_key=settings.encoder_key, text_encoder_name=encoders.text.name,
                             multilingual_name=encoders.multilingual.name if encoders.multilingual else None,
                             load=lambda model: load_ranker(model.artifact_path), refresh_seconds=0).get()
    if state.model is None or not state.has_index:
        raise SystemExit("the library needs an active ranker with its HNSW index: run `withsense train` (or migrate)")
    with engine.connect() as conn:
        texts = conn.execute(text("SELECT text FROM descriptions WHERE source = 'test' ORDER BY id")).scalars().all()
        sizes = disk(conn)
    texts = [t for t in texts if not is_about_children(t)][:n_queries]
    t = encoders.text.encode(texts)
    m = encoders.multilingual.encode(texts) if state.multilingual_model_id else [None] * len(texts)
    queries = list(zip(state.ranker.transform_query(t), t, m, strict=True))
    ids = {"model": state.model.id, "text": state.text_model_id, "multilingual": state.multilingual_model_id}
    exact = measure(engine, queries, ids, indexed=False, multilingual=bool(state.multilingual_model_id))
    indexed = measure(engine, queries, ids, indexed=True, multilingual=bool(state.multilingual_model_id))
    truth = exact.pop("candidates")
    result = {"n": state.n_photos, "source": f"library {settings.data_dir} (ranker {state.model.version})",
              "queries": len(texts), "disk_mb": sizes,
              "unfiltered": {"exact": exact, "index_recall": recall(truth, indexed.pop("candidates")), "index": indexed}}
    engine.dispose()
    return result


def synthetic_queries(n_queries: int, rng: np.random.Generator) -> list[tuple]:
    return list(zip(clustered_vectors(n_queries, TEXT_DIM, rng), clustered_vectors(n_queries, TEXT_DIM, rng, seed=99),
                    clustered_vectors(n_queries, MULTILINGUAL_DIM, rng, seed=98), strict=True))


def register_models(conn, dims_by_kind: dict) -> dict:
    ids = {}
    for key, (kind, name, dims) in dims_by_kind.items():
        ids[key] = conn.execute(text(
            "INSERT INTO models (kind, name, version, encoder_key, dims) VALUES (:k, :n, :v, 'bench', :d) RETURNING id"),
            {"k": kind, "n": name, "v": "bench-1" if kind == "ranker" else "1", "d": dims}).scalar_one()
    return ids


def synthetic_library(settings: Settings, n: int, n_queries: int, n_exact: int, rng: np.random.Generator) -> dict:
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
        library = Library(n, rng)
        queries = synthetic_queries(n_queries, rng)
        start = time.perf_counter()
        with engine.begin() as conn:
            ids = register_models(conn, {"model": ("ranker", "bench", TEXT_DIM),
                                         "text": ("encoder", "text:minilm-bench", TEXT_DIM),
                                         "multilingual": ("encoder", "text:use-bench", MULTILINGUAL_DIM)})
            library.write(conn, ids["model"], ids["text"], ids["multilingual"], 1)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        build_index(engine, ids["model"], TEXT_DIM, memory_mb=BUILD_MEMORY_MB)
        build_s = time.perf_counter() - start
        with engine.connect() as conn:
            sizes = disk(conn)
        print(f"  {n:,} photos loaded in {load_s:.1f} s, indexes built in {build_s:.1f} s; {sizes}", flush=True)
        result = {"n": n, "source": "synthetic", "queries": n_queries, "load_s": round(load_s, 1),
                  "index_build_s": round(build_s, 1), "disk_mb": sizes,
                  "disk_mb_per_million": round(sum(sizes.values()) * 1e6 / n, 0)}
        for case, place in (("unfiltered", None), ("filtered_10pct", FILTER_PLACE)):
            place_no = None if place is None else int(place.split("-")[1])
            truth = [library.exact_candidates(q, t, m, place_no) for q, t, m in queries]
            indexed = measure(engine, queries, ids, indexed=True, place=place)
            exact = measure(engine, queries[:n_exact], ids, indexed=False, place=place)
            exact_recall = recall(truth[:n_exact], exact.pop("candidates"))
            result[case] = {"exact": exact, "exact_recall": exact_recall, "index": indexed,
                            "index_recall": recall(truth, indexed.pop("candidates"))}
            print(f"  {case}: {json.dumps(result[case])}", flush=True)
        return result
    finally:
        if engine is not None:
            engine.dispose()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def grow_library(settings: Settings, n: int, rng: np.random.Generator) -> None:
    """N synthetic photos added to the library in WITHSENSE_DATA_DIR under its active ranker (joint
    vectors near its real photos' ones, so real queries find neighbours as they would), descriptions
    for 30 % with vectors of its text encoders, and its indexes rebuilt: for scripts/bench_search.py."""
    from service.store.hnsw import description_index_name, index_name

    engine = make_engine(resolve_url(settings))
    with engine.connect() as conn:
        model_id, dims = conn.execute(text(
            "SELECT id, dims FROM models WHERE kind = 'ranker' AND active AND encoder_key = :k"),
            {"k": settings.encoder_key}).one()
        encoders = dict(conn.execute(text(
            "SELECT name, id FROM models WHERE kind = 'encoder' AND name LIKE 'text:%'")).all())
        real = np.stack([np.asarray(v, np.float32) for v in conn.execute(text(
            "SELECT CAST(embedding AS real[]) FROM photo_embeddings WHERE model_id = :m"), {"m": model_id}).scalars()])
        first_photo = conn.execute(text("SELECT max(id) + 1 FROM photos")).scalar_one()
        first_description = conn.execute(text("SELECT max(id) + 1 FROM descriptions")).scalar_one()
    text_id = next(i for name, i in encoders.items() if "minilm" in name.lower())
    multilingual_id = next(i for name, i in encoders.items() if i != text_id)
    joint = real[rng.integers(0, len(real), n)] + rng.standard_normal((n, dims)).astype(np.float32) * 0.02
    joint /= np.linalg.norm(joint, axis=1, keepdims=True)
    library = Library(n, rng, first_id=first_photo, joint=joint)
    start = time.perf_counter()
    with engine.begin() as conn:
        library.write(conn, model_id, text_id, multilingual_id, first_description)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in (index_name(model_id), description_index_name(text_id), description_index_name(multilingual_id)):
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))  # a bulk build is far faster than 1M inserts
        conn.execute(text("VACUUM ANALYZE"))
    print(f"{n:,} photos added in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    build_index(engine, model_id, dims, memory_mb=BUILD_MEMORY_MB)
    print(f"indexes rebuilt in {time.perf_counter() - start:.1f} s", flush=True)
    engine.dispose()


def write_report(payload: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "shortlist.json").write_text(json.dumps(payload, indent=2))
    lines = ["# Shortlist: exact scan against the HNSW indexes (scripts/bench_shortlist.py)", "",
             "The product's own statement (`fetch_shortlist`) in a search's shape: photo search, MiniLM and USE "
             "description searches, K=100 each, `hnsw.ef_search` 100 with iterative scan, halfvec HNSW m=16 "
             "ef_construction=64. Only scalars travel (cosines, top labels). The recall is the share of the exact "
             "candidates (the union of the three searches) that the index path also returns. "
             "Client and database share the 2 cores with other work: compare columns within a row.", "",
             "| photos | library | case | exact p50 ms | exact p95 ms | index p50 ms | index p95 ms | index recall | "
             "index build s | disk MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        for case in ("unfiltered", "filtered_10pct"):
            if case in r:
                c = r[case]
                lines.append(f"| {r['n']:,} | {r['source'].split(' (')[0]} | {case.replace('_10pct', ' (10 % place)')} | "
                             f"{c['exact']['p50_ms']} | {c['exact']['p95_ms']} | {c['index']['p50_ms']} | "
                             f"{c['index']['p95_ms']} | {c['index_recall']} | {r.get('index_build_s', '')} | "
                             f"{round(sum(r['disk_mb'].values())) if 'disk_mb' in r else ''} |")
    lines += ["", "Exact latency of synthetic sizes over the first `exact.queries` queries; recall against exact "
              "numpy search over all vectors. Disk: the four tables with their TOAST and btree indexes, plus the HNSW "
              "indexes (per relation in shortlist.json).", "",
              f"Chosen: `WITHSENSE_HNSW_MIN_PHOTOS` = {payload['chosen_min_photos']:,} (see docs/scaling.md).", ""]
    (out_dir / "shortlist.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=20, help="queries timed on the exact scan (synthetic)")
    parser.add_argument("--no-real", action="store_true", help="skip the real library")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    parser.add_argument("--add-to", type=Path, help="a shortlist.json of an earlier run whose other sizes are kept")
    parser.add_argument("--grow-library", type=int, metavar="N", help="add N synthetic photos to the library instead")
    args = parser.parse_args()
    settings = load_settings()
    rng = np.random.default_rng(0)
    if args.grow_library:
        grow_library(settings, args.grow_library, rng)
        return
    results = []
    if not args.no_real:
        results.append(real_library(settings, args.queries))
        print(json.dumps(results[-1]), flush=True)
    for n in args.sizes:
        results.append(synthetic_library(settings, n, args.queries, args.exact_queries, rng))
        print(json.dumps(results[-1]), flush=True)
    if args.add_to:
        measured = {(r["n"], r["source"] == "synthetic") for r in results}
        results += [r for r in json.loads(args.add_to.read_text())["results"]
                    if (r["n"], r["source"] == "synthetic") not in measured]
    results.sort(key=lambda r: r["n"])
    payload = {"k": K, "results": results, "chosen_min_photos": settings.hnsw_min_photos}
    write_report(payload, args.out)
    print(f"written: {args.out / 'shortlist.json'}, {args.out / 'shortlist.md'}")


if __name__ == "__main__":
    main()
