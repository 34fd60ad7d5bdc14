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
(the union of the three candidate searches) against the exact statement's (for synthetic sizes over
the first ``--exact-queries`` queries: an exact scan of a million vectors takes seconds). Also the
load and build times and the disk the tables and indexes take. Writes reports/bench/shortlist.{json,md}.

The index path is measured as a serving host sees it: warm (``--warm`` other queries through it
first, untimed) and before any exact scan, whose rows (4 GB at a million photos) would push the
indexes out of the server's buffers. Each figure carries the 1-minute load average before and after
it and the server's ``shared_buffers``. A million-photo library takes 12-15 minutes to load and
index: ``--keep`` keeps it (its name is printed) and ``--database`` measures it again.

    python scripts/bench_shortlist.py                                # 1,100 (real) + 10k + 100k
    python scripts/bench_shortlist.py --no-real --sizes 1000000 --keep   # build once, keep
    python scripts/bench_shortlist.py --no-real --sizes 1000000 --database withsense_bench_1000000_xxxxxx \
        --add-to reports/bench/shortlist.json
    python scripts/bench_shortlist.py --grow-library 1000000         # into WITHSENSE_DATA_DIR's library
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, Settings, load_settings  # noqa: E402
from service.search.shortlist import (  # noqa: E402
    ShortlistShape,
    Space,
    fetch_shortlist,
    search_ef,
    session_settings,
    shortlist_params,
)
from service.store import facet_indexes  # noqa: E402
from service.store.db import make_autocommit_engine, make_engine, resolve_url  # noqa: E402
from service.store.hnsw import build_index  # noqa: E402

K = 100
K_DESCRIPTIONS = Settings.model_fields["description_shortlist"].default  # the served default
TEXT_DIM, MULTILINGUAL_DIM = 384, 512
DESCRIBED = 0.3  # share of photos with a description
PLACES = 10  # photo i is at place-(i % 10): a filter on one keeps 10 %
FILTER_PLACE = "Place-3"  # matched case-insensitively, as a search's filter is
BUILD_MEMORY_MB = 2048  # the 1M graph (~1.2 GB) must fit, or pgvector builds it on disk, several times slower


@lru_cache(maxsize=8)
def _space(dim: int, seed: int, n_clusters: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    space = np.random.default_rng(seed + dim)
    basis, _ = np.linalg.qr(space.standard_normal((dim, dim)))
    spectrum = (1.0 + np.arange(dim)) ** -0.75
    return basis, spectrum, space.standard_normal((n_clusters, dim)) * spectrum * 2.0, space.standard_normal(dim) * 0.5


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, seed: int = 12345) -> np.ndarray:
    """Unit vectors shaped like real embeddings: clusters, a decaying variance spectrum, a shared mean
    (scripts/bench_scale.py's, for any dimension); ``seed`` fixes the space, ``rng`` the draw."""
    basis, spectrum, centres, mean = _space(dim, seed)
    z = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, dim)) * spectrum
    out = (z @ basis.T + mean).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


CHUNK = 50_000  # photos generated and written at a time: a million at once took 4-5 GB of client memory


def write_library(conn, n: int, rng: np.random.Generator, ids: dict, *, first_photo: int = 1,
                  first_description: int = 1, near: np.ndarray | None = None) -> None:
    """N synthetic photos through the product's schema, in chunks: photos, their ranker rows (joint
    and bridge vectors, top labels, mapper norm), a description for 30 % of them with a vector of
    each text encoder. ``near``: real joint vectors the synthetic ones scatter around."""
    raw = conn.connection.driver_connection
    next_description = first_description
    for start in range(0, n, CHUNK):
        photo_ids = np.arange(first_photo + start, first_photo + min(n, start + CHUNK))
        k = len(photo_ids)
        if near is None:
            joint = clustered_vectors(k, TEXT_DIM, rng)
        else:
            joint = near[rng.integers(0, len(near), k)] + rng.standard_normal((k, near.shape[1])).astype(np.float32) * 0.02
            joint /= np.linalg.norm(joint, axis=1, keepdims=True)
        bridge = clustered_vectors(k, TEXT_DIM, rng, seed=777)
        described = photo_ids[rng.random(k) < DESCRIBED]
        description_ids = np.arange(next_description, next_description + len(described))
        next_description += len(described)
        label_ids = rng.integers(0, 1000, (k, 5)).astype(np.int32)
        label_probs = np.sort(rng.dirichlet(np.ones(6), k)[:, :5].astype(np.float32), axis=1)[:, ::-1]
        mapper_norm = rng.uniform(0.3, 1.0, k).astype(np.float32)
        with raw.cursor() as cur:
            with cur.copy("COPY photos (id, file_name, sha256, bytes, width, height, storage_key, split, place) "
                          "FROM STDIN") as copy:
                for i in photo_ids:
                    copy.write_row((int(i), f"synthetic-{i}.jpg", f"{i:064x}", 1, 1, 1, f"{i:064x}.jpg", "train",
                                    f"place-{i % PLACES}"))
            with cur.copy("COPY photo_embeddings (photo_id, model_id, embedding, bridge, label_ids, label_probs, "
                          "mapper_norm) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int4", "vector", "vector", "int4[]", "float4[]", "float4"])
                for r, i in enumerate(photo_ids):
                    copy.write_row((int(i), ids["model"], joint[r], bridge[r], label_ids[r].tolist(),
                                    label_probs[r].tolist(), float(mapper_norm[r])))
            with cur.copy("COPY descriptions (id, text, source, photo_id) FROM STDIN") as copy:
                for d, i in zip(description_ids, described, strict=True):
                    copy.write_row((int(d), f"synthetic description {d}", "dataset", int(i)))
            for model, dim, seed in ((ids["text"], TEXT_DIM, 99), (ids["multilingual"], MULTILINGUAL_DIM, 98)):
                vectors = clustered_vectors(len(described), dim, rng, seed=seed)
                with cur.copy("COPY description_embeddings (description_id, model_id, embedding) "
                              "FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "int4", "vector"])
                    for d, v in zip(description_ids, vectors, strict=True):
                        copy.write_row((int(d), model, v))


def params_for(q, t, m, ids: dict, place: str | None = None) -> dict:
    return shortlist_params(q, model_id=ids["model"], text_vector=t, text_model_id=ids["text"],
                            multilingual_vector=m, multilingual_model_id=ids["multilingual"],
                            shortlist_size=K, description_shortlist_size=K_DESCRIPTIONS, place=place)


def shape_for(ids: dict, *, indexed: bool, place: str | None, multilingual: bool = True,
              descriptions: bool = True) -> ShortlistShape:
    return ShortlistShape(Space(TEXT_DIM, indexed), Space(TEXT_DIM, indexed) if descriptions else None,
                          Space(MULTILINGUAL_DIM, indexed) if multilingual else None, ("place",) if place else ())


def measure(engine, queries, ids: dict, *, indexed: bool, place=None, ef_search=100, multilingual=True,
            descriptions: bool = True) -> dict:
    latencies, candidates = [], []
    shape = shape_for(ids, indexed=indexed, place=place, multilingual=multilingual, descriptions=descriptions)
    # One connection of the engine the app searches with (service/http/db_session.py): autocommit,
    # its session started with what an unfiltered index search needs, so no BEGIN and ROLLBACK and
    # no SET LOCAL go with the statement that they do not need in the product either.
    searching = make_autocommit_engine(engine.url.render_as_string(hide_password=False), pool_size=1,
                                       session_settings=session_settings(search_ef(ef_search, K)))
    with searching.connect() as conn:
        for warm in (True, False):
            for q, t, m in queries[:1] if warm else queries:
                start = time.perf_counter()
                rows = fetch_shortlist(conn, params_for(q, t, m, ids, place), shape, ef_search=ef_search)
                if not warm:
                    latencies.append((time.perf_counter() - start) * 1000)
                    candidates.append({r.photo_id for r in rows})
    searching.dispose()
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 3), "p95_ms": round(float(np.percentile(latencies, 95)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3), "queries": len(latencies), "candidates": candidates}


def recall(truth: list[set], found: list[set]) -> float:
    return round(float(np.mean([len(a & b) / max(1, len(a)) for a, b in zip(truth, found, strict=True)])), 4)


def disk(conn) -> dict:
    """MB per relation: the tables a photo and its description fill (with their TOAST and btree
    indexes), and the HNSW indexes, each counted once (a table's total holds its HNSW indexes too)."""
    rows = conn.execute(text(
        "SELECT c.relname, pg_total_relation_size(c.oid) - coalesce((SELECT sum(pg_relation_size(i.indexrelid)) "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid "
        "AND ic.relname LIKE '%\\_hnsw\\_m%'), 0)::bigint AS total, pg_relation_size(c.oid) AS main FROM pg_class c "
        "WHERE c.relname IN ('photos', 'photo_embeddings', 'descriptions', 'description_embeddings') "
        "OR c.relname LIKE '%\\_hnsw\\_m%' ORDER BY c.relname")).all()
    return {r.relname: round((r.main if "_hnsw_m" in r.relname else r.total) / 2**20, 1) for r in rows}


def real_library(settings: Settings, n_queries: int) -> dict:
    from service.policy import is_about_children
    from service.runtime import encoders_for
    from service.search.active_model import ActiveModelCache
    from service.store.library_precision import library_settings
    from service.store.model_rows import load_ranker

    engine = make_engine(resolve_url(settings))
    settings = library_settings(engine, settings)
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
    # the index path first: the exact scans' rows would evict the indexes from the buffers
    indexed = measure(engine, queries, ids, indexed=True, multilingual=bool(state.multilingual_model_id))
    exact = measure(engine, queries, ids, indexed=False, multilingual=bool(state.multilingual_model_id))
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


def warm_up(engine, queries, ids: dict, *, place=None, ef_search=100) -> None:
    """The index path over queries that are not timed: a serving host's indexes are in its buffers,
    not evicted by the exact scans this script also runs (4 GB of rows at a million photos)."""
    measure(engine, queries, ids, indexed=True, place=place, ef_search=ef_search)


def measure_library(engine, n: int, queries: list[tuple], n_exact: int, ids: dict,
                    warm_queries: list[tuple] = ()) -> dict:
    """Index latency over every query, measured first and warm (each case after ``warm_queries``, a
    separate draw, through the index path in that case), beside its floor (the photo search alone);
    then the exact statement (the truth of the recall) over the first ``n_exact``: a scan of a
    million vectors takes seconds, and its rows evict the indexes."""
    cases = (("unfiltered", None), ("filtered_10pct", FILTER_PLACE))
    result = {}
    for case, place in cases:
        if warm_queries:  # each case right after its own: a filtered search reads ten times the rows
            warm_up(engine, warm_queries, ids, place=place)
        load = os.getloadavg()[0]
        result[case] = {"index": measure(engine, queries, ids, indexed=True, place=place)}
        result[case]["index"]["load_avg_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        # The floor of the same run: the photo search alone (one HNSW scan, its 100 rows' scalars).
        floor = measure(engine, queries, ids, indexed=True, place=place, descriptions=False, multilingual=False)
        result[case]["floor_photo_search_p50_ms"] = floor["p50_ms"]
        print(f"  {n:,} {case} index: {json.dumps({k: v for k, v in result[case]['index'].items() if k != 'candidates'})}"
              f", photo search alone p50 {floor['p50_ms']} ms", flush=True)
    for case, place in cases:
        if n_exact <= 0:
            result[case]["index"].pop("candidates")
            continue
        exact = measure(engine, queries[:n_exact], ids, indexed=False, place=place)
        truth, found = exact.pop("candidates"), result[case]["index"].pop("candidates")
        result[case] = {"exact": exact, **result[case], "index_recall": recall(truth, found[:n_exact])}
        print(f"  {n:,} {case}: {json.dumps(result[case])}", flush=True)
    return result


def server_settings(conn) -> dict:
    """The settings the figures depend on, recorded beside them."""
    return {name: conn.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("shared_buffers", "effective_cache_size", "work_mem", "max_parallel_workers_per_gather")}


def synthetic_library(settings: Settings, n: int, n_queries: int, n_exact: int, rng: np.random.Generator,
                      database: str | None = None, *, keep: bool = False, warm: int = 0) -> dict:
    """``database``: a bench database left by an earlier run (``keep``, its rows loaded): only the
    missing indexes are built and the statement measured; it is kept. A kept database carries its
    build's figures (load and index build times) as its comment, so a later run reports them."""
    from sqlalchemy.engine import make_url

    from service.cli import alembic_config

    base_url = resolve_url(settings)
    name = database or f"withsense_bench_{n}_{uuid.uuid4().hex[:6]}"
    admin_url = base_url.replace("postgresql+psycopg://", "postgresql://")
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    engine = None
    result = {"n": n, "source": "synthetic", "queries": n_queries}
    try:
        if database is None:
            from alembic import command

            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=1)
        built = {}
        if database is None:
            start = time.perf_counter()
            with engine.begin() as conn:
                ids = register_models(conn, {"model": ("ranker", "bench", TEXT_DIM),
                                             "text": ("encoder", "text:minilm-bench", TEXT_DIM),
                                             "multilingual": ("encoder", "text:use-bench", MULTILINGUAL_DIM)})
                write_library(conn, n, rng, ids)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            result["load_s"] = round(time.perf_counter() - start, 1)
        else:
            with engine.connect() as conn:
                ids = dict(zip(("model", "text", "multilingual"), conn.execute(text(
                    "SELECT id FROM models WHERE name IN ('bench', 'text:minilm-bench', 'text:use-bench') "
                    "ORDER BY array_position(ARRAY['bench', 'text:minilm-bench', 'text:use-bench'], name)")).scalars(),
                    strict=True))
                comment = conn.execute(text("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                            "WHERE datname = current_database()")).scalar_one()
            built = json.loads(comment) if comment and comment.startswith("{") else {}
            result |= {k: v for k, v in built.items() if k in ("load_s", "index_build_s", "built_at")}
            result["database"] = name
        start = time.perf_counter()
        build_index(engine, ids["model"], TEXT_DIM, memory_mb=BUILD_MEMORY_MB)
        if "index_build_s" not in built:
            result["index_build_s"] = round(time.perf_counter() - start, 1)
        # As `withsense train` does next: the common place gets indexes of its own.
        start = time.perf_counter()
        facets = facet_indexes.refresh(engine, ids["model"], TEXT_DIM, min_share=settings.facet_index_min_share,
                                       min_photos=settings.hnsw_min_photos)
        result["facet_indexes"] = {**facets, "build_s": round(time.perf_counter() - start, 1)}
        with engine.connect() as conn:
            result["disk_mb"] = disk(conn)
            result["server"] = server_settings(conn)
        result["disk_mb_per_million"] = round(sum(result["disk_mb"].values()) * 1e6 / n, 0)
        if keep and database is None:
            result |= {"database": name, "built_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            facts = json.dumps({k: result[k] for k in ("load_s", "index_build_s", "built_at")})
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{facts}'")  # our own numbers: no quotes
            print(f"  kept: --database {name}", flush=True)
        print(f"  {n:,} photos: {json.dumps(result)}", flush=True)
        queries = synthetic_queries(n_queries, rng)
        warm_queries = synthetic_queries(warm, np.random.default_rng(1)) if warm else []
        result |= measure_library(engine, n, queries, n_exact, ids, warm_queries)
        return result
    finally:
        if engine is not None:
            engine.dispose()
        if database is None and not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def grow_library(settings: Settings, n: int, rng: np.random.Generator) -> None:
    """N synthetic photos added to the library in WITHSENSE_DATA_DIR under its active ranker (joint
    vectors near its real photos' ones, so real queries find neighbours as they would), descriptions
    for 30 % with vectors of its text encoders, and its indexes rebuilt: for scripts/bench_search.py."""
    from service.store.hnsw import description_index_name, index_name
    from service.store.library_precision import library_settings

    engine = make_engine(resolve_url(settings))
    settings = library_settings(engine, settings)
    with engine.connect() as conn:
        model_id, dims = conn.execute(text(
            "SELECT id, dims FROM models WHERE kind = 'ranker' AND active AND encoder_key = :k"),
            {"k": settings.encoder_key}).one()
        encoders = dict(conn.execute(text(
            "SELECT name, id FROM models WHERE kind = 'encoder' AND name LIKE 'text:%'")).all())
        near = np.stack([np.asarray(v, np.float32) for v in conn.execute(text(
            "SELECT CAST(embedding AS real[]) FROM photo_embeddings WHERE model_id = :m"), {"m": model_id}).scalars()])
        first_photo = conn.execute(text("SELECT max(id) + 1 FROM photos")).scalar_one()
        first_description = conn.execute(text("SELECT max(id) + 1 FROM descriptions")).scalar_one()
    text_id = next(i for name, i in encoders.items() if "minilm" in name.lower())
    ids = {"model": model_id, "text": text_id, "multilingual": next(i for i in encoders.values() if i != text_id)}
    start = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in (index_name(model_id), *(description_index_name(i) for i in (ids["text"], ids["multilingual"]))):
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))  # a bulk build is far faster than 1M inserts
    with engine.begin() as conn:
        write_library(conn, n, rng, ids, first_photo=first_photo, first_description=first_description, near=near)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
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
             "index build s | disk MB | shared_buffers | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        for case in ("unfiltered", "filtered_10pct"):
            if case in r:
                c = r[case]
                lines.append(f"| {r['n']:,} | {r['source'].split(' (')[0]} | {case.replace('_10pct', ' (10 % place)')} | "
                             f"{c.get('exact', {}).get('p50_ms', '')} | {c.get('exact', {}).get('p95_ms', '')} | "
                             f"{c['index']['p50_ms']} | {c['index']['p95_ms']} | {c.get('index_recall', '')} | "
                             f"{r.get('index_build_s', '')} | "
                             f"{round(sum(r['disk_mb'].values())) if 'disk_mb' in r else ''} | "
                             f"{r.get('server', {}).get('shared_buffers', '')} | "
                             f"{'-'.join(map(str, c['index'].get('load_avg_1m', [])))} |")
    lines += ["", "Synthetic sizes: the exact statement (the recall's truth) over the first `exact.queries` queries, "
              "the index over all, measured first and warm (rows with a shared_buffers figure; earlier rows ran the "
              "exact scans first, so their indexes were partly evicted). Load avg: the 1-minute load average "
              "before and after the index figure, on 2 cores. Disk: the four tables with their TOAST and btree indexes, plus the HNSW "
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
    parser.add_argument("--database", help="measure a bench database an earlier run kept (one size)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic database (its name is printed) "
                        "for later runs with --database")
    parser.add_argument("--warm", type=int, default=200, metavar="N",
                        help="N further queries through the index path, not timed, before it is timed (0: none)")
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
        results.append(synthetic_library(settings, n, args.queries, args.exact_queries, rng, args.database,
                                          keep=args.keep, warm=args.warm))
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
