"""The search API over real HTTP, real models and the real database."""
import hashlib

import pytest
import requests
from sqlalchemy import text

from service.policy import NOTICE


def _search(base, body, **kwargs):
    return requests.post(f"{base}/api/search", json=body, timeout=60, **kwargs)


def test_search_returns_five_scored_photos(live_server, loaded):
    r = _search(live_server, {"query": "a dog runs through the snow"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"query", "blocked", "notice", "results", "offset", "limit", "message", "model_version", "took_ms",
                         "query_language", "text_encoder"}
    assert body["blocked"] is False and body["notice"] is None
    assert body["model_version"] == loaded["model"]["version"]
    results = body["results"]
    assert len(results) == 5
    assert len({x["photo_id"] for x in results}) == 5
    scores = [x["score"] for x in results]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(x["image_url"] == f"/photos/{x['photo_id']}/image" for x in results)


def test_a_training_caption_finds_its_photo(live_server, loaded):
    """The ridge map was fitted on these captions: each one's own photo should mostly rank in the top 5 of 16."""
    with loaded["engine"].connect() as conn:
        rows = conn.execute(text(
            """SELECT d.text, d.photo_id FROM descriptions d JOIN photos p ON p.id = d.photo_id
               WHERE p.split = 'train' AND d.source = 'dataset' ORDER BY d.id LIMIT 5""")).all()
    hits = sum(row.photo_id in [x["photo_id"] for x in _search(live_server, {"query": row.text}).json()["results"]]
               for row in rows)
    assert hits >= 3  # chance would give 5 x 5/16 = 1.6


def test_limit_is_respected(live_server):
    assert len(_search(live_server, {"query": "people", "limit": 3}).json()["results"]) == 3


@pytest.mark.parametrize("query", ["Two boys play football", "a toddler on the beach", "KIDS in a pool"])
def test_queries_about_children_are_blocked(live_server, query):
    body = _search(live_server, {"query": query}).json()
    assert body["blocked"] is True
    assert body["results"] == []
    assert body["notice"] == NOTICE == "This image is unavailable in your country in compliance with local laws"


def test_blocked_searches_are_logged(live_server, app, loaded):
    from service.runtime import get_searcher

    _search(live_server, {"query": "a baby sleeps"})
    get_searcher(app).log_writer.flush()  # written in the background, off the request path
    with loaded["engine"].connect() as conn:
        row = conn.execute(text("SELECT blocked, n_results FROM search_log WHERE query = 'a baby sleeps'")).first()
    assert tuple(row) == (True, 0)


@pytest.mark.parametrize("body, status, field", [
    ({}, 400, "query"),
    ({"query": ""}, 400, "query"),
    ({"query": "   "}, 400, "query"),
    ({"query": 42}, 400, "query"),
    ({"query": "x" * 501}, 400, "query"),
    ({"query": "dog", "limit": 0}, 400, "limit"),
    ({"query": "dog", "limit": 51}, 400, "limit"),
    ({"query": "dog", "limit": "5"}, 400, "limit"),
    ({"query": "dog", "limit": True}, 400, "limit"),
])
def test_bad_search_requests_get_json_4xx(live_server, body, status, field):
    r = _search(live_server, body)
    assert r.status_code == status
    assert r.json()["field"] == field
    assert r.json()["error"]


def test_non_json_body_is_refused(live_server):
    r = requests.post(f"{live_server}/api/search", data="query=dog", timeout=10,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "JSON" in r.json()["error"]
    r = requests.post(f"{live_server}/api/search", data="{not json", timeout=10,
                      headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]


def test_image_is_served_by_id(live_server, loaded):
    with loaded["engine"].connect() as conn:
        photo_id, sha = conn.execute(text("SELECT id, sha256 FROM photos WHERE NOT shows_child ORDER BY id LIMIT 1")).one()
    r = requests.get(f"{live_server}/photos/{photo_id}/image", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(r.content).hexdigest() == sha


@pytest.mark.parametrize("path, status", [
    ("/photos/999999/image", 404),
    ("/photos/abc/image", 404),
    ("/photos/..%2F..%2Fetc%2Fpasswd/image", 404),
    ("/no/such/route", 404),
])
def test_unknown_paths_get_json_404(live_server, path, status):
    r = requests.get(live_server + path, timeout=10)
    assert r.status_code == status
    assert r.json()["status"] == status


def test_health(live_server):
    assert requests.get(f"{live_server}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{live_server}/readyz", timeout=10).json()["database"] == "ok"


def test_server_timing_names_every_stage(live_server):
    r = _search(live_server, {"query": "a dog runs through the snow"})
    stages = dict(part.strip().split(";dur=") for part in r.headers["Server-Timing"].split(","))
    assert list(stages) == ["policy", "text_encoding", "shortlist", "scoring", "serialisation"]
    assert all(float(v) >= 0 for v in stages.values())
    assert sum(float(v) for k, v in stages.items() if k != "serialisation") <= r.json()["took_ms"] + 0.01
