"""The shortlist statement before and after issue 18, on the same library, in the same run.

The statement as it was at ``--before`` (a git commit: read with ``git show``, imported as a module)
against the one in the working tree, alternating query by query so both meet the same load: the
shortlist stage alone and with the reranker's scoring (the old rows carry two 384-d vectors per
candidate, the new ones their cosines). The library is WITHSENSE_DATA_DIR's, with its active ranker;
either side uses its HNSW indexes once the library has ``WITHSENSE_HNSW_MIN_PHOTOS`` photos, as a
search does. Prints one JSON line.

    python scripts/bench_shortlist_before_after.py --before b55b44e --queries 100
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, load_settings  # noqa: E402
from service.search.searcher import Searcher, cosines_of, evidence_of  # noqa: E402
from service.search.shortlist import fetch_shortlist, shortlist_params  # noqa: E402


def old_module(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:service/search/shortlist.py"], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "shortlist_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("shortlist_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    from service.runtime import encoders_for
    from service.store.db import make_engine, resolve_url

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="b55b44e")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--place", help="also a place filter (the synthetic photos of --grow-library are at place-0..9)")
    args = parser.parse_args()
    settings = load_settings()
    before = old_module(args.before)
    engine = make_engine(resolve_url(settings))
    encoders = encoders_for(settings)
    searcher = Searcher(engine, settings, encoders.text, multilingual=encoders.multilingual)
    state = searcher.active_state()
    with engine.connect() as conn:
        texts = conn.execute(text("SELECT text FROM descriptions WHERE source = 'test' ORDER BY id LIMIT :n"),
                             {"n": args.queries}).scalars().all()
    use_index = searcher.uses_index(state)
    times = {"before_shortlist": [], "after_shortlist": [], "before_scored": [], "after_scored": []}
    for query in texts:
        t = encoders.text.encode([query])[0]
        m = encoders.multilingual.encode([query])[0]
        q = state.ranker.transform_query(t)
        params = shortlist_params(q, model_id=state.model.id, text_vector=t, text_model_id=state.text_model_id,
                                  multilingual_vector=m, multilingual_model_id=state.multilingual_model_id,
                                  shortlist_size=settings.shortlist,
                                  description_shortlist_size=settings.description_shortlist, place=args.place)
        shape = searcher.shape(state, params)
        for side in ("before", "after"):
            with engine.connect() as conn:
                start = time.perf_counter()
                if side == "before":
                    rows = before.fetch_shortlist(conn, params, use_index=use_index, dims=state.model.dims,
                                                  ef_search=settings.hnsw_ef_search, filtered=args.place is not None)
                    listed = time.perf_counter()
                    state.ranker.score(q, evidence_of(rows))
                else:
                    rows = fetch_shortlist(conn, params, shape, ef_search=settings.hnsw_ef_search)
                    listed = time.perf_counter()
                    state.ranker.score(q, cosines_of(rows))
                done = time.perf_counter()
                conn.rollback()
            times[f"{side}_shortlist"].append((listed - start) * 1000)
            times[f"{side}_scored"].append((done - start) * 1000)
    print(json.dumps({"photos": state.n_photos, "index": use_index, "queries": len(texts), "place": args.place,
                      **{k: {"p50_ms": round(float(np.percentile(v, 50)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
                         for k, v in times.items()}}))
    searcher.close()


if __name__ == "__main__":
    main()
