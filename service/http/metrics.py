"""Prometheus metrics, hand-written in the text exposition format (no client library needed).

Counters live in this process. Under gunicorn each worker keeps its own, so a scrape sees the
worker that answered it; that is acceptable for this service's size (Prometheus sums restarts and
workers poorly, but rates per worker are still right). A shared multiprocess registry would need
prometheus_client and a shared directory.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import defaultdict

from flask import Flask, Response, g, request

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_lock = threading.Lock()


class Counter:
    def __init__(self, name: str, help_: str) -> None:
        self.name, self.help, self.value = name, help_, 0

    def inc(self, amount: int = 1) -> None:
        with _lock:
            self.value += amount

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter", f"{self.name} {self.value}"]


class RequestStats:
    """Request count and latency histogram, labelled by endpoint (the URL rule), method and status."""

    def __init__(self) -> None:
        self.counts: dict[tuple, int] = defaultdict(int)
        self.buckets: dict[tuple, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[tuple, float] = defaultdict(float)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, str(status))
        with _lock:
            self.counts[key] += 1
            self.buckets[key][bisect_left(BUCKETS, seconds)] += 1
            self.sums[key] += seconds

    def render(self) -> list[str]:
        lines = ["# HELP withsense_http_requests_total HTTP requests answered.",
                 "# TYPE withsense_http_requests_total counter"]
        with _lock:
            keys = sorted(self.counts)
            for key in keys:
                lines.append(f"withsense_http_requests_total{{{_labels(key)}}} {self.counts[key]}")
            lines += ["# HELP withsense_http_request_duration_seconds Time to answer an HTTP request.",
                      "# TYPE withsense_http_request_duration_seconds histogram"]
            for key in keys:
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), self.buckets[key]):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'withsense_http_request_duration_seconds_bucket{{{_labels(key)},le="{le}"}} {cumulative}')
                lines.append(f"withsense_http_request_duration_seconds_sum{{{_labels(key)}}} {self.sums[key]:.6f}")
                lines.append(f"withsense_http_request_duration_seconds_count{{{_labels(key)}}} {self.counts[key]}")
        return lines


def _labels(key: tuple) -> str:
    endpoint, method, status = key
    escape = lambda v: v.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
    return f'endpoint="{escape(endpoint)}",method="{method}",status="{status}"'


REQUESTS = RequestStats()
SEARCHES_BLOCKED = Counter("withsense_searches_blocked_total", "Searches refused by the content rule.")


def _start() -> None:
    g.metrics_start = time.perf_counter()


def _finish(response):
    start = g.pop("metrics_start", None)
    if start is not None:
        # The route's endpoint name, not the path: photos.image is one series, not one per photo.
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "(unmatched)"
        REQUESTS.observe(endpoint, request.method, response.status_code, time.perf_counter() - start)
    return response


def render() -> Response:
    body = "\n".join(REQUESTS.render() + SEARCHES_BLOCKED.render()) + "\n"
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
