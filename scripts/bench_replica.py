"""Read replicas of the embedded server, measured; written to reports/bench/replica.json and .md.

In a throwaway data directory: the fixture dataset loaded and a ranker trained (no CV), then
`withsense db replica start`'s code path (pg_basebackup -R, start on its own port), then

* replica creation: basebackup + start, in seconds;
* replication lag: a row committed on the primary until it is visible on the replica (N writes,
  polled every 1 ms), in ms;
* search through the router: `Searcher.search` with the replica configured vs. the primary alone,
  beside its floor measured in the same run (the text encoder alone);
* failover: the replica crash-stopped (pg_ctl -m immediate), the next searches (they must all
  answer, from the primary), then restarted and the time until it serves a search again.

    python scripts/bench_replica.py [--writes 100] [--searches 100]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import FIXTURE_DATASET, REPO_ROOT, load_settings  # noqa: E402

QUERIES = ["a dog runs on the grass", "two people walk on a beach", "a man rides a bike", "a football match on a field",
           "a black dog in the snow", "a woman in a red coat", "a boat on a lake", "a crowd at a concert"]


def _ms(values: list[float]) -> dict:
    values = sorted(values)
    return {"p50": round(statistics.median(values) * 1000, 2),
            "p95": round(values[int(0.95 * (len(values) - 1))] * 1000, 2),
            "max": round(values[-1] * 1000, 2), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()

    from alembic import command
    from sqlalchemy import text

    from service.cli import alembic_config
    from service.ingest import loader
    from service.ingest.dataset import read_dataset
    from service.runtime import encoders_for
    from service.search.searcher import Searcher
    from service.store import embedded, embedded_replica
    from service.store.db import make_engine, resolve_url
    from service.store.replicas import ReadReplicas
    from service.training.publish import train_and_publish

    load_average = [round(x, 1) for x in os.getloadavg()]  # the machine is shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="ws-rb-", dir="/tmp") as tmp:
        settings = load_settings(data_dir=tmp, database_url="", extra_dataset="", max_replica_lag_s=5.0)
        url = resolve_url(settings)
        command.upgrade(alembic_config(url), "head")
        primary = make_engine(url)
        encoders = encoders_for(settings)
        loader.load_dataset(primary, settings, read_dataset(FIXTURE_DATASET), progress=False)
        loader.embed_photos(primary, settings, encoders.image, progress=False)
        loader.embed_descriptions(primary, settings, encoders.text, progress=False)
        train_and_publish(primary, settings, encoders, run_cv=False, progress=False)

        port = 5433
        folder = embedded_replica.replica_dir(settings.data_dir, port)
        started = time.perf_counter()
        replica_url = embedded_replica.start(settings.pgdata_dir, folder, port)
        create_s = time.perf_counter() - started
        replica = make_engine(replica_url)

        lags = []
        for i in range(args.writes):
            with primary.begin() as conn:
                conn.execute(text("INSERT INTO search_log (query, blocked, n_results, took_ms) "
                                  "VALUES (:q, false, 0, 0)"), {"q": f"bench-{i}"})
            written = time.perf_counter()
            with replica.connect() as conn:
                while not conn.execute(text("SELECT 1 FROM search_log WHERE query = :q"), {"q": f"bench-{i}"}).first():
                    conn.rollback()  # a new snapshot for the next look
                    time.sleep(0.001)
            lags.append(time.perf_counter() - written)

        replicas = ReadReplicas([replica_url], max_lag_s=settings.max_replica_lag_s, engine_factory=make_engine)
        routed = Searcher(primary, settings, encoders.text, replicas=replicas)
        direct = Searcher(primary, settings, encoders.text)
        for searcher in (routed, direct):  # warm: models, caches, pools
            searcher.search(QUERIES[0], log=False)

        def timed(searcher, n):
            times = []
            for i in range(n):
                start = time.perf_counter()
                searcher.search(QUERIES[i % len(QUERIES)], log=False)
                times.append(time.perf_counter() - start)
            return times

        encode = []
        for i in range(args.searches):
            start = time.perf_counter()
            encoders.text.encode([QUERIES[i % len(QUERIES)]])
            encode.append(time.perf_counter() - start)
        before = replicas.served.copy()
        via_replica = timed(routed, args.searches)
        served_by_replica = replicas.served["replica"] - before["replica"]
        via_primary = timed(direct, args.searches)

        assert embedded_replica.stop(folder, mode="immediate")
        before = replicas.served.copy()
        after_kill = timed(routed, 20)
        failover = {"searches": 20, "answered_by_primary": replicas.served["primary"] - before["primary"],
                    "answered_by_replica": replicas.served["replica"] - before["replica"],
                    "first_ms": round(after_kill[0] * 1000, 2), "rest": _ms(after_kill[1:])}
        started = time.perf_counter()
        embedded_replica.start(settings.pgdata_dir, folder, port)
        count = replicas.served["replica"]
        while replicas.served["replica"] == count and time.perf_counter() - started < 120:
            routed.search(QUERIES[0], log=False)
            time.sleep(0.05)
        failover["back_on_replica_s"] = round(time.perf_counter() - started, 2)

        replica.dispose()
        replicas.dispose()
        primary.dispose()
        embedded_replica.remove(settings.pgdata_dir, folder, port)
        embedded.stop(settings.pgdata_dir)

    result = {
        "photos": 16, "load_average": load_average, "replica_create_s": round(create_s, 2), "replication_lag_ms": _ms(lags),
        "search_ms": {"via_replica": _ms(via_replica), "primary_only": _ms(via_primary),
                      "floor_text_encoding": _ms(encode)},
        "searches_served_by_replica": f"{served_by_replica} of {args.searches}",
        "failover": failover,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replica.json").write_text(json.dumps(result, indent=2) + "\n")
    s, lag = result["search_ms"], result["replication_lag_ms"]
    (args.out / "replica.md").write_text(f"""# Read replicas of the embedded server

`python scripts/bench_replica.py` on this 2-core machine: the fixture dataset (16 photos), a
streaming replica of the embedded PostgreSQL 18 on the same machine (`withsense db replica start`).

| what | figure |
|---|---|
| replica created and started (pg_basebackup -R + start) | {result['replica_create_s']} s |
| replication lag, commit on the primary until visible on the replica ({lag['n']} writes) | p50 {lag['p50']} ms, p95 {lag['p95']} ms, max {lag['max']} ms |
| search via the replica (`Searcher.search`, {s['via_replica']['n']} queries; {result['searches_served_by_replica']} answered by it) | p50 {s['via_replica']['p50']} ms, p95 {s['via_replica']['p95']} ms |
| search, primary only, same run | p50 {s['primary_only']['p50']} ms, p95 {s['primary_only']['p95']} ms |
| floor: text encoding alone, same run | p50 {s['floor_text_encoding']['p50']} ms |
| replica crash-stopped: next 20 searches | {failover['answered_by_primary']} of 20 answered by the primary; first {failover['first_ms']} ms, then p50 {failover['rest']['p50']} ms |
| replica restarted: until it serves searches again | {failover['back_on_replica_s']} s |

Both servers share the same two cores here, so a replica adds no capacity on this machine: what
this measures is what routing adds to a search (compare the rows above, each beside the encoder's
floor; the load average was {result['load_average']} when the run started), how fresh the replica is,
and how reads leave a dead replica and come back. Capacity from replicas needs replicas on other machines.
""")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
