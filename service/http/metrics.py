"""Prometheus metrics with prometheus_client: request counts and latency, search stages.

Under gunicorn the workers share one registry on disk (prometheus_client's multiprocess mode):
service/server.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any worker
starts and marks a worker's files dead when it exits, so a scrape of /metrics answered by any
worker sums all of them. Without that variable (tests, `flask run`) the process's own default
registry is served.
"""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Search stages are a few milliseconds each: finer buckets at the bottom.
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)

REQUESTS = Counter("withsense_http_requests", "HTTP requests answered.", ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram("withsense_http_request_duration_seconds", "Time to answer an HTTP request.",
                            ["endpoint", "method", "status"], buckets=REQUEST_BUCKETS)
SEARCHES_BLOCKED = Counter("withsense_searches_blocked", "Searches refused by the content rule.")
SEARCH_STAGE_SECONDS = Histogram("withsense_search_stage_seconds",
                                 "Time per search stage: encode (query vector), shortlist (the SQL round trip), "
                                 "rerank (scoring), total.", ["stage"], buckets=STAGE_BUCKETS)

# Searcher stage names -> the metric's stage label.
_STAGES = {"text_encoding": "encode", "shortlist": "shortlist", "scoring": "rerank"}


def observe_search(stages_ms: dict[str, float], total_ms: float, *, blocked: bool) -> None:
    if blocked:
        SEARCHES_BLOCKED.inc()
        return
    for name, label in _STAGES.items():
        if name in stages_ms:
            SEARCH_STAGE_SECONDS.labels(label).observe(stages_ms[name] / 1000)
    SEARCH_STAGE_SECONDS.labels("total").observe(total_ms / 1000)


def _start() -> None:
    g.metrics_start = time.perf_counter()


def _finish(response):
    start = g.pop("metrics_start", None)
    if start is not None:
        # The route's endpoint name, not the path: photos.image is one series, not one per photo.
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "(unmatched)"
        labels = (endpoint, request.method, str(response.status_code))
        REQUESTS.labels(*labels).inc()
        REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - start)
    return response


def render() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
