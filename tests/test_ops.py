"""Operations endpoints: readiness, Prometheus metrics, the OpenAPI description."""
import re

import requests

from tests.helpers import metric_value


def test_ready_names_the_active_model(live_server, loaded):
    r = requests.get(f"{live_server}/readyz", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "database": "ok", "model": loaded["model"]["version"]}


def test_not_ready_without_an_active_model(make_database, settings_for, encoders):
    from tests.helpers import app_for

    url = make_database()  # migrated, but nothing trained
    library = {"settings": settings_for(url)}
    r = app_for(library, encoders).test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["status"] == "unavailable" and r.json["database"] == "ok" and "withsense train" in r.json["error"]
    r = app_for(library, encoders).test_client().post("/api/search", json={"query": "dog"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "60"


def test_not_ready_without_a_database(settings_for, encoders):
    from tests.helpers import app_for

    library = {"settings": settings_for("postgresql+psycopg://nobody@127.0.0.1:1/none")}
    r = app_for(library, encoders).test_client().get("/readyz")
    assert r.status_code == 503 and r.json["status"] == "unavailable" and r.json["database"] == "OperationalError"


def test_metrics_count_requests_and_blocked_searches(live_server):
    before = requests.get(f"{live_server}/metrics", timeout=10).text
    requests.post(f"{live_server}/api/search", json={"query": "a dog runs"}, timeout=60)
    requests.post(f"{live_server}/api/search", json={"query": "kids at the beach"}, timeout=60)
    requests.post(f"{live_server}/api/search", json={}, timeout=60)
    requests.get(f"{live_server}/photos/999999/image", timeout=10)
    r = requests.get(f"{live_server}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    after = r.text
    ok = dict(endpoint="search.search", method="POST", status="200")
    assert metric_value(after, "withsense_http_requests_total", **ok) - metric_value(before, "withsense_http_requests_total", **ok) == 2
    bad = dict(endpoint="search.search", method="POST", status="400")
    assert metric_value(after, "withsense_http_requests_total", **bad) - metric_value(before, "withsense_http_requests_total", **bad) == 1
    missing = dict(endpoint="photos.image", status="404")
    assert metric_value(after, "withsense_http_requests_total", **missing) >= 1
    assert metric_value(after, "withsense_searches_blocked_total") - metric_value(before, "withsense_searches_blocked_total") == 1
    # The histogram is cumulative and its +Inf bucket equals the count.
    inf = metric_value(after, "withsense_http_request_duration_seconds_bucket", le="+Inf", **ok)
    assert inf == metric_value(after, "withsense_http_request_duration_seconds_count", **ok) > 0
    assert "# TYPE withsense_http_request_duration_seconds histogram" in after


def test_openapi_covers_every_route(live_server, app):
    spec = requests.get(f"{live_server}/api/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in spec["paths"], f"{rule.rule} is not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = spec["paths"][path].get(method.lower())
            assert operation is not None, f"{method} {path} is not described"
            assert operation["responses"], f"{method} {path} has no responses"
    for name, schema in spec["components"]["schemas"].items():
        assert schema["type"] == "object", name
