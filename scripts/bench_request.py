"""What a search request costs around the search itself: Flask, the contract's checks, JSON.

In one process, as a web worker runs it (create_app, warm-up), over WITHSENSE_DATA_DIR's database,
the same few queries repeated so their vectors come from the cache (the search itself is then the
shortlist and the scoring, and every difference below is the web layer's):

- ``whole request``: POST /api/search through Flask's test client (no socket): routing, the
  request's validation, the rate-limit counter, the search, the response's build, its JSON and
  spectree's check of it;
- ``search alone``: ``Searcher.search`` with the same arguments;
- ``request validation``: ``SearchRequest.model_validate`` of the body;
- ``response build + JSON``: the view's ``SearchResponse`` from the outcome and ``model_dump_json``;
- ``response validation``: pydantic's parse of that JSON against ``SearchResponse`` (what spectree
  does to every answer of an endpoint that declares its response);
- ``rate limit off``: the whole request without the shared counter's statement;
- ``GET /healthz``: Flask, the app's before/after hooks (headers, metrics) and nothing else.

Medians over --requests requests each; writes reports/bench/request.json and .md.

    WITHSENSE_DATA_DIR=... python scripts/bench_request.py [--requests 500]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, load_settings  # noqa: E402

QUERIES = ["a dog runs on the beach", "two people ride bicycles", "a child in a red coat", "mountains at sunset"]


def median_ms(run, n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        run(i)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    from service import create_app
    from service.api.search import _search_response
    from service.http import schemas
    from service.runtime import get_searcher, warm_up
    from service.search.searcher import Filters

    settings = load_settings()
    app = create_app(settings=settings.with_overrides({"rate_limit": 1_000_000}))
    warm_up(app)
    client = app.test_client()
    searcher = get_searcher(app)
    n = args.requests

    def whole(i):
        r = client.post("/api/search", json={"query": QUERIES[i % len(QUERIES)]})
        assert r.status_code == 200, r.get_data(as_text=True)

    def alone(i):
        with app.app_context():
            searcher.search(QUERIES[i % len(QUERIES)], limit=5, offset=0, min_score=None, filters=Filters())

    for i in range(20):
        whole(i)
    outcome = searcher.search(QUERIES[0], limit=5, log=False)
    with app.test_request_context():
        payload = _search_response(outcome, explain=False).model_dump_json(exclude_unset=True)

        def build(_i):
            _search_response(outcome, explain=False).model_dump_json(exclude_unset=True)

        build_ms = median_ms(build, n)
    unlimited = create_app(settings=settings.with_overrides({"rate_limit": 0})).test_client()
    unlimited.application.extensions["withsense.searcher"] = searcher  # the same warm searcher

    def whole_unlimited(i):
        assert unlimited.post("/api/search", json={"query": QUERIES[i % len(QUERIES)]}).status_code == 200

    figures = {
        "whole request": median_ms(whole, n),
        "whole request, rate limit off": median_ms(whole_unlimited, n),
        "GET /healthz (Flask and the app's hooks alone)": median_ms(lambda _i: client.get("/healthz"), n),
        "search alone": median_ms(alone, n),
        "request validation": median_ms(lambda i: schemas.SearchRequest.model_validate({"query": QUERIES[i % 4]}), n),
        "response build + JSON": build_ms,
        "response validation": median_ms(lambda _i: schemas.SearchResponse.model_validate_json(payload), n),
    }
    figures["Flask, spectree and the rate limit (the rest)"] = round(
        figures["whole request"] - figures["search alone"] - figures["request validation"]
        - figures["response build + JSON"] - figures["response validation"], 3)
    searcher.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "request.json").write_text(json.dumps({"requests": n, "median_ms": figures}, indent=2))
    lines = ["# A search request around the search (scripts/bench_request.py)", "",
             f"Medians of {n} requests each, in one process built as a web worker is, cached query vectors; "
             "the shared 2-core machine.", "", "| part | median ms |", "|---|---|"]
    lines += [f"| {name} | {ms} |" for name, ms in figures.items()]
    (args.out / "request.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
