"""Bad input, over real HTTP: every case answers a 4xx JSON error that says what was wrong, never a 5xx.

Two parts. Schemathesis generates requests from the app's own /api/openapi.json for every
operation, schema-conforming and schema-violating, and checks: no 5xx, every 4xx is JSON with
an "error", and every answer conforms to the document (a listed status, its content type, its
body schema). Then hand-made cases: broken, hostile and oversized files, wrong content types,
malformed JSON, odd queries, out-of-range numbers, unknown ids and path traversal. After every
test /healthz must answer; for every case that must be refused, the row counts of all tables and
checksums of photos, descriptions and ratings are the same before and after.
"""
from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import zlib
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from sqlalchemy import text

from tests.helpers import wait_for_queued_jobs, wait_searchable

AUTH = {"Authorization": "Bearer test-token"}
TIMEOUT = 60

# Checksummed tables: what a refused request must never change. The rest are compared by row count.
CHECKSUMMED = ("photos", "descriptions", "expert_ratings", "crowd_ratings", "crowd_votes", "models")


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_app(writable, encoders):
    """The writable library's app with the rate limit off (this file sends hundreds of searches)."""
    from tests.helpers import app_for

    return app_for(writable, encoders, rate_limit=0)


@pytest.fixture(scope="module")
def server(bad_app):
    from tests.helpers import serve

    base, httpd = serve(bad_app)
    yield base
    httpd.shutdown()


def flush_search_log(app) -> None:
    """The search log is written in the background: wait for it, so row counts are settled."""
    from service.runtime import get_searcher

    get_searcher(app).log_writer.flush()


@pytest.fixture(autouse=True)
def still_answering(request):
    """After every test: the server still answers /healthz (and its queued search-log rows are written,
    so they cannot land inside the next test's before/after snapshots)."""
    yield
    if "server" in request.fixturenames:
        flush_search_log(request.getfixturevalue("bad_app"))
        base = request.getfixturevalue("server")
        r = requests.get(f"{base}/healthz", timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def snapshot(engine) -> dict:
    """Row count of every table and an md5 over the rows of the checksummed ones, once the server's
    embedding worker has finished the uploads earlier tests queued (it writes in the background)."""
    wait_for_queued_jobs(engine)
    with engine.connect() as conn:
        tables = conn.execute(text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name")).scalars().all()
        # rate_counters counts requests, refused ones included (the wrong-key throttle): not data.
        state = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables
                 if t != "rate_counters"}
        for t in CHECKSUMMED:
            state[f"md5({t})"] = conn.execute(text(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{t}\" t")).scalar()
    return state


@pytest.fixture()
def unchanged(writable):
    """Asserts the database is exactly as it was when the test started."""
    before = snapshot(writable["engine"])
    yield
    assert snapshot(writable["engine"]) == before


def assert_error(r, status: int | tuple, *fragments: str, field: str | None = None):
    """A 4xx JSON error whose message contains each fragment (case-insensitive)."""
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert body["status"] == r.status_code
    for fragment in fragments:
        assert fragment.lower() in body["error"].lower(), (fragment, body)
    if field is not None:
        assert body.get("field") == field, body


# --- schemathesis: every operation in /api/openapi.json -------------------------------------

OPERATIONS = [
    ("POST", "/api/search"), ("POST", "/api/search/similar"), ("POST", "/api/photos"),
    ("GET", "/api/photos/{photo_id}"), ("POST", "/api/photos/{photo_id}/descriptions"), ("POST", "/api/ratings"),
    ("PATCH", "/api/photos/{photo_id}"), ("DELETE", "/api/photos/{photo_id}"), ("GET", "/api/me"), ("GET", "/api/audit"),
    ("POST", "/api/session"), ("DELETE", "/api/session"),
    ("GET", "/photos/{photo_id}/image"), ("GET", "/photos/{photo_id}/thumbnail"), ("GET", "/"),
    ("GET", "/photos/{photo_id}"), ("GET", "/upload"), ("GET", "/healthz"), ("GET", "/readyz"),
    ("GET", "/metrics"), ("GET", "/api/openapi.json"),
]
# Examples per operation and mode (20 operations positive, 12 with input also negative): up to 32 x this.
EXAMPLES = 12
GENERATED = {}


def test_the_list_covers_the_spec(bad_app):
    """Every route of the app is in the generated document, and this file tests each one."""
    paths = bad_app.test_client().get("/api/openapi.json").get_json()["paths"]
    assert sorted((m.upper(), p) for p, ops in paths.items() for m in ops) == sorted(OPERATIONS)
    routes = {(m, r.rule) for r in bad_app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}
              if r.endpoint != "static"}
    assert len(routes) == len(OPERATIONS)


@pytest.fixture(scope="module")
def stranger(writable):
    """A photographer who owns no photo: edits and deletions generated with their key are refused
    (403, or 404 for no such photo), so the generated requests never delete the library's photos."""
    from tests.helpers import new_user

    return new_user(writable["engine"], "photographer")["auth"]


@pytest.fixture(scope="module")
def api_schema(server):
    import schemathesis

    return schemathesis.openapi.from_url(f"{server}/api/openapi.json")


def _check_response(case, response) -> None:
    where = f"{case.method} {case.formatted_path} body={str(case.body)[:200]!r} query={case.query}"
    assert response.status_code < 500, f"{response.status_code} for {where}: {response.content[:300]!r}"
    if 400 <= response.status_code < 500:
        content_type = (response.headers.get("content-type") or [""])[0]
        if content_type.startswith("text/html"):  # the web page for one photo renders its own 404 page
            assert case.path == "/photos/{photo_id}" and response.status_code == 404, where
            return
        assert content_type.startswith("application/json"), f"{content_type} for {where}"
        body = json.loads(response.content)
        assert isinstance(body.get("error"), str) and body["error"], f"{body} for {where}"


# Operations with input (a path parameter or a body) also get schema-violating requests.
WITH_INPUT = [(m, p) for m, p in OPERATIONS
              if p.startswith("/api/") and p not in ("/api/openapi.json", "/api/me") and (m, p) != ("DELETE", "/api/session")
              or "{" in p]


@pytest.mark.parametrize("method, path, mode", [(m, p, "positive") for m, p in OPERATIONS]
                         + [(m, p, "negative") for m, p in WITH_INPUT])
def test_generated_requests(api_schema, stranger, method, path, mode):
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    operation = api_schema[path][method]
    generation_mode = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    sent = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=generation_mode))
    def run(case):
        response = case.call(headers=stranger if method in ("PATCH", "DELETE") else AUTH, timeout=TIMEOUT)
        sent.append(response.status_code)
        _check_response(case, response)
        # The answer itself, against the document: a status it lists, its content type, its body schema.
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                 response_schema_conformance])

    run()
    GENERATED[(method, path, mode)] = len(sent)
    assert sent, "schemathesis generated no request"


# --- hand-made files ------------------------------------------------------------------------

def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _picture(seed: int, size=(96, 72), mode="RGB") -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(7000 + seed)
    return Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize(size, Image.NEAREST).convert(mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb(side: int = 20000) -> bytes:
    """A valid one-colour 1-bit PNG of side x side pixels: about 50 KB on disk, 400 megapixels."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _animated(fmt: str) -> bytes:
    frames = [_picture(i, size=(32, 32)) for i in range(3)]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _bad_file(kind: str) -> bytes:
    jpeg = _encode(_picture(1), "JPEG")
    return {
        "zero-byte": b"",
        "truncated-jpeg": jpeg[: len(jpeg) // 3],
        "jpeg-header-only": jpeg[:20],
        "decompression-bomb": decompression_bomb(),
        "decompression-bomb-8k": decompression_bomb(8000),
        "html-as-jpg": b"<!doctype html><html><body><script>alert(1)</script></body></html>",
        "script-as-jpg": b"#!/bin/sh\nrm -rf / --no-preserve-root\n",
        "php-with-jpeg-magic": b"\xff\xd8\xff\xe0<?php system($_GET['c']); ?>",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        "animated-gif": _animated("GIF"),
        "animated-png": _animated("PNG"),
        "animated-webp": _animated("WEBP"),
        "still-gif": _encode(_picture(2), "GIF"),
        "bmp": _encode(_picture(3), "BMP"),
        "tiff": _encode(_picture(4), "TIFF"),
        "pdf": b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n",
        "zip": b"PK\x03\x04" + b"\x00" * 100,
        "random-bytes": bytes(range(256)) * 8,
        "png-bad-crc": (lambda p: p[:-20] + b"\x00" * 4 + p[-16:])(_encode(_picture(5), "PNG")),
    }[kind]


BAD_FILES = {  # kind: (file name, words the error must contain)
    "zero-byte": ("empty.jpg", ["empty"]),
    "truncated-jpeg": ("cut.jpg", ["not a readable image"]),
    "jpeg-header-only": ("head.jpg", ["not a readable image"]),
    "decompression-bomb": ("bomb.png", ["more pixels than the limit of 50000000"]),
    "decompression-bomb-8k": ("bomb8k.png", ["8000x8000", "the limit is 50000000"]),
    "html-as-jpg": ("page.jpg", ["not a readable image"]),
    "script-as-jpg": ("run.jpg", ["not a readable image"]),
    "php-with-jpeg-magic": ("shell.jpg", ["not a readable image"]),
    "svg": ("drawing.svg", ["not a readable image"]),
    "animated-gif": ("anim.gif", ["GIF is not accepted"]),
    "animated-png": ("anim.png", ["animated"]),
    "animated-webp": ("anim.webp", ["animated"]),
    "still-gif": ("still.gif", ["GIF is not accepted"]),
    "bmp": ("photo.bmp", ["BMP is not accepted"]),
    "tiff": ("photo.tif", ["TIFF is not accepted"]),
    "pdf": ("doc.jpg", ["not a readable image"]),
    "zip": ("archive.jpg", ["not a readable image"]),
    "random-bytes": ("noise.jpg", ["not a readable image"]),
    "png-bad-crc": ("broken.png", ["not a readable image"]),
}


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("endpoint", ["/api/photos", "/api/search/similar"])
def test_bad_files_are_refused(server, unchanged, endpoint, kind):
    name, fragments = BAD_FILES[kind]
    r = requests.post(f"{server}{endpoint}", files={"file": (name, _bad_file(kind), "image/jpeg")},
                      headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 422, *fragments, field="file")


def test_the_bomb_is_small_and_huge():
    data = decompression_bomb()
    assert len(data) < 100_000
    assert struct.unpack(">II", data[16:24]) == (20000, 20000)  # IHDR width, height


def _sixteen_bit_png(seed: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    ramp = (np.linspace(0, 65535, 80 * 60).reshape(60, 80) * rng.uniform(0.5, 1)).astype(np.uint16)
    image = Image.fromarray(ramp)  # uint16: mode I;16
    return _encode(image, "PNG")


@pytest.mark.parametrize("kind", ["16-bit-png", "cmyk-jpeg"])
def test_unusual_but_valid_files_are_accepted_and_converted(server, writable, kind):
    import uuid

    seed = uuid.uuid4().int % 10_000
    data = _sixteen_bit_png(seed) if kind == "16-bit-png" else _encode(_picture(seed, mode="CMYK"), "JPEG")
    source = Image.open(io.BytesIO(data))
    assert source.mode == ("I;16" if kind == "16-bit-png" else "CMYK")
    r = requests.post(f"{server}/api/photos", files={"file": (f"{kind}.img", data)}, headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    thumb = requests.get(f"{server}/photos/{r.json()['photo_id']}/thumbnail", timeout=TIMEOUT)
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).mode == "RGB"
    wait_searchable(server, r.json()["photo_id"])
    similar = requests.post(f"{server}/api/search/similar", json={"photo_id": r.json()["photo_id"]}, timeout=TIMEOUT)
    assert similar.status_code == 200 and similar.json()["results"]


# --- size: refused before the body is read ----------------------------------------------------

def _raw_request(base: str, head: str, body: bytes = b"", *, wait: float = 10.0) -> tuple[int, dict, bytes]:
    """Send raw bytes (the request line and headers as written) and read one response."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with socket.create_connection((host, port), timeout=wait) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def test_30_mb_upload_is_413_before_the_body_is_read(server, unchanged):
    """Headers announcing 30 MB and no body at all: the answer comes at once, so nothing waited for the body."""
    import time

    size = 30 * 1024 * 1024
    start = time.monotonic()
    status, headers, body = _raw_request(server, (
        "POST /api/photos HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer test-token\n"
        f"Content-Type: multipart/form-data; boundary=xyz\nContent-Length: {size}\nConnection: close\n"))
    assert status == 413 and time.monotonic() - start < 5
    error = json.loads(body)
    assert error["status"] == 413 and "too large: the limit is 20 MB" in error["error"]


def test_30_mb_upload_sent_in_full_is_413(server, unchanged):
    """A plain client that sends its whole 30 MB body reads the 413 (the server drains the body after answering)."""
    blob = b"\xff\xd8\xff" + b"\x00" * (30 * 1024 * 1024)
    r = requests.post(f"{server}/api/photos", files={"file": ("big.jpg", blob)}, headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 413, "too large: the limit is 20 MB")


def test_oversized_json_body_is_413(server, unchanged):
    status, _headers, body = _raw_request(server, (
        "POST /api/search HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Content-Length: {200 * 1024 * 1024}\nConnection: close\n"))
    assert status == 413 and json.loads(body)["status"] == 413


def test_upload_without_a_token_is_refused_before_the_body_is_read(server, unchanged):
    status, _headers, body = _raw_request(server, (
        "POST /api/photos HTTP/1.1\nHost: 127.0.0.1\nContent-Type: multipart/form-data; boundary=xyz\n"
        f"Content-Length: {10 * 1024 * 1024}\nConnection: close\n"))
    assert status == 401 and "Bearer" in json.loads(body)["error"]


# --- content types and JSON -----------------------------------------------------------------

JSON_ENDPOINTS = ["/api/search", "/api/search/similar", "/api/photos/1/descriptions", "/api/ratings"]

WRONG_BODIES = {  # name: (content type or None, raw body, expected status, words in the error)
    "no-content-type": (None, b'{"query": "a dog"}', 415, ["Content-Type: application/json"]),
    "text-plain": ("text/plain", b'{"query": "a dog"}', 415, ["Content-Type: application/json"]),
    "form-urlencoded": ("application/x-www-form-urlencoded", b"query=a+dog", 415, ["application/json"]),
    "xml": ("application/xml", b"<query>a dog</query>", 415, ["application/json"]),
    "malformed-json": ("application/json", b'{"query": "a dog"', 400, ["not a JSON object"]),
    "trailing-garbage": ("application/json", b'{"query": "a dog"} xyz', 400, ["not a JSON object"]),
    "empty-body": ("application/json", b"", 400, ["not a JSON object"]),
    "json-array": ("application/json", b'["a dog"]', 400, ["not a JSON object"]),
    "json-string": ("application/json", b'"a dog"', 400, ["not a JSON object"]),
    "json-null": ("application/json", b"null", 400, ["not a JSON object"]),
    "json-number": ("application/json", b"42", 400, ["not a JSON object"]),
    "invalid-utf8": ("application/json", b'{"query": "\xff\xfe dog"}', 400, ["not a JSON object"]),
    "deeply-nested": ("application/json", b'{"query": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, ["JSON"]),
    "huge-integer-literal": ("application/json", b'{"limit": ' + b"9" * 5000 + b"}", 400, ["not a JSON object"]),
}


@pytest.mark.parametrize("name", WRONG_BODIES)
@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS)
def test_wrong_bodies(server, writable, unchanged, endpoint, name):
    content_type, body, status, fragments = WRONG_BODIES[name]
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    r = requests.post(f"{server}{endpoint}", data=body, headers=headers, timeout=TIMEOUT)
    assert_error(r, status, *fragments)


def test_multipart_upload_sent_as_json_is_415(server, unchanged):
    r = requests.post(f"{server}/api/photos", json={"file": "aGVsbG8="}, headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 415, "multipart/form-data")


def test_file_under_another_field_name_is_400(server, unchanged):
    r = requests.post(f"{server}/api/photos", files={"photo": ("a.jpg", _encode(_picture(9), "JPEG"))},
                      headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 400, "'file' is required", field="file")
    assert {"field": "photo", "error": "'photo' is not a field of this request; the fields are description, place, "
            "camera, uploader, taken_at, shows_child, file"} in r.json()["problems"]


# --- search text ----------------------------------------------------------------------------

REFUSED_QUERIES = {
    "missing": ({}, "'query' is required"),
    "null": ({"query": None}, "'query' is required"),
    "empty": ({"query": ""}, "'query' is empty"),
    "whitespace": ({"query": " \t\n\r  "}, "'query' is empty"),
    "control-characters-only": ({"query": "\x00\x01\x02\x1b\x7f\x9b"}, "'query' is empty"),
    "zero-width-only": ({"query": "\u200b\u200c\u200d\ufeff"}, "'query' is empty"),
    "huge": ({"query": "dog " * 100_000}, "at most 500"),
    "501-chars": ({"query": "a" * 501}, "at most 500"),
    "number": ({"query": 42}, "must be a string"),
    "list": ({"query": ["a", "dog"]}, "must be a string"),
    "object": ({"query": {"$ne": ""}}, "must be a string"),
    "boolean": ({"query": True}, "must be a string"),
}


@pytest.mark.parametrize("name", REFUSED_QUERIES)
def test_refused_queries(server, unchanged, name):
    body, fragment = REFUSED_QUERIES[name]
    r = requests.post(f"{server}/api/search", json=body, timeout=TIMEOUT)
    assert_error(r, 400, fragment, field="query")


ODD_BUT_VALID_QUERIES = {
    "sql-drop": "'; DROP TABLE photos; --",
    "sql-union": "dog' UNION SELECT sha256, storage_key FROM photos --",
    "sql-comment": "dog /* */ OR 1=1",
    "pg-cast": "dog'::text; SELECT pg_sleep(10); --",
    "mixed-script": "собака бежит по снегу dog 雪の中の犬 كلب 🐕‍🦺",
    "right-to-left-override": "\u202egod a\u202c runs",
    "control-characters-inside": "a\x00 dog\x07 runs\x1b in the snow",
    "emoji-only": "🐕🏔️❄️",
    "500-chars": "a dog runs " * 45 + "x" * 5,
    "html": "<script>alert('x')</script> a dog",
    "percent-and-underscore": "100% dog_ %% \\ _",
    "null-looking": "null",
    "format-string": "%s%s%s{0}{query}",
    "combining-marks": "d\u0301o\u0302g\u0303" * 20,
}


@pytest.mark.parametrize("name", ODD_BUT_VALID_QUERIES)
def test_odd_queries_are_searched_as_text(server, bad_app, writable, name):
    """Answered 200 like any query; the only row written is the search log entry, holding the text verbatim."""
    query = ODD_BUT_VALID_QUERIES[name]
    before = snapshot(writable["engine"])
    r = requests.post(f"{server}/api/search", json={"query": query}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["results"], list)
    flush_search_log(bad_app)
    after = snapshot(writable["engine"])
    assert after.pop("search_log") == before.pop("search_log") + 1
    assert after == before
    with writable["engine"].connect() as conn:
        logged = conn.execute(text("SELECT query FROM search_log ORDER BY id DESC LIMIT 1")).scalar()
    assert logged == r.json()["query"]
    assert "\x00" not in logged


# --- numbers --------------------------------------------------------------------------------

BAD_NUMBERS = [
    ("limit", -1, "between 1 and 50"), ("limit", 0, "between 1 and 50"), ("limit", 51, "between 1 and 50"),
    ("limit", 10**30, "between 1 and 50"), ("limit", -(10**30), "between 1 and 50"), ("limit", "5", "integer"),
    ("limit", 5.5, "integer"), ("limit", True, "integer"), ("limit", [5], "integer"),
    ("offset", -1, "between 0 and 1000"), ("offset", 1001, "between 0 and 1000"),
    ("offset", 2**63, "between 0 and 1000"), ("offset", "0", "integer"), ("offset", 1e308, "integer"),
    ("min_score", -0.1, "between 0.0 and 1.0"), ("min_score", 1.5, "between 0.0 and 1.0"),
    ("min_score", "high", "number"), ("min_score", True, "number"),
    ("explain", "yes", "true or false"), ("explain", 1, "true or false"),
    ("taken_after", "yesterday", "ISO 8601"), ("taken_after", 20240101, "ISO 8601"),
    ("taken_before", "2024-13-45", "ISO 8601"), ("camera", "x" * 201, "at most 200"), ("place", 7, "string"),
]


@pytest.mark.parametrize("field, value, fragment", BAD_NUMBERS)
def test_bad_search_fields(server, unchanged, field, value, fragment):
    r = requests.post(f"{server}/api/search", json={"query": "a dog", field: value}, timeout=TIMEOUT)
    assert_error(r, 400, fragment, field=field)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_scores_are_refused(server, unchanged, literal):
    r = requests.post(f"{server}/api/search", data=b'{"query": "a dog", "min_score": ' + literal + b"}",
                      headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert_error(r, 400, "min_score", field="min_score")


def test_dates_in_the_wrong_order_are_refused(server, unchanged):
    r = requests.post(f"{server}/api/search", json={"query": "a dog", "taken_after": "2024-01-01",
                                                     "taken_before": "2023-01-01"}, timeout=TIMEOUT)
    assert_error(r, 400, "earlier", field="taken_after")


@pytest.mark.parametrize("taken_after", ["0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00"])
def test_extreme_dates_are_answered(server, taken_after):
    r = requests.post(f"{server}/api/search", json={"query": "a dog", "taken_after": taken_after}, timeout=TIMEOUT)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert_error(r, 400, field="taken_after")


SIMILAR_BAD = [
    ({}, 400, "'photo_id' is required", "photo_id"), ({"photo_id": None}, 400, "'photo_id' is required", "photo_id"),
    ({"photo_id": 0}, 400, "between 1", "photo_id"), ({"photo_id": -5}, 400, "between 1", "photo_id"),
    ({"photo_id": 2**63}, 400, "between 1", "photo_id"), ({"photo_id": 10**40}, 400, "between 1", "photo_id"),
    ({"photo_id": "1"}, 400, "integer", "photo_id"), ({"photo_id": 1.0}, 400, "integer", "photo_id"),
    ({"photo_id": 987654321}, 404, "does not exist", "photo_id"), ({"photo_id": 2**63 - 1}, 404, "does not exist", "photo_id"),
    ({"photo_id": 1, "limit": 0}, 400, "between 1 and 50", "limit"),
    ({"photo_id": 1, "limit": 10**30}, 400, "between 1 and 50", "limit"),
]


@pytest.mark.parametrize("body, status, fragment, field", SIMILAR_BAD)
def test_bad_similar_requests(server, unchanged, body, status, fragment, field):
    r = requests.post(f"{server}/api/search/similar", json=body, timeout=TIMEOUT)
    assert_error(r, status, fragment, field=field)


@pytest.mark.parametrize("limit", ["abc", "-3", "0", "51", "1e3", "99999999999999999999999"])
def test_bad_similar_upload_limit(server, unchanged, limit):
    data = _encode(_picture(11), "JPEG")
    r = requests.post(f"{server}/api/search/similar", files={"file": ("a.jpg", data)}, data={"limit": limit},
                      timeout=TIMEOUT)
    assert_error(r, 400, "limit", field="limit")


def test_similar_multipart_without_file(server, unchanged):
    r = requests.post(f"{server}/api/search/similar", files={"other": ("a.txt", b"x")}, timeout=TIMEOUT)
    assert_error(r, 400, "'file' is required", field="file")


# --- write endpoints: bad fields ------------------------------------------------------------

DESCRIPTION_BAD = [
    ({}, 400, "'text' is required", "text"), ({"text": ""}, 400, "'text' is empty", "text"),
    ({"text": "   "}, 400, "'text' is empty", "text"), ({"text": "\x00\x01"}, 400, "'text' is empty", "text"),
    ({"text": "x" * 2001}, 400, "at most 2000", "text"), ({"text": 5}, 400, "must be a string", "text"),
    ({"text": "a dog", "author": "x" * 201}, 400, "at most 200", "author"),
    ({"text": "a dog", "author": ["me"]}, 400, "must be a string", "author"),
]


@pytest.mark.parametrize("body, status, fragment, field", DESCRIPTION_BAD)
def test_bad_descriptions(server, unchanged, body, status, fragment, field):
    r = requests.post(f"{server}/api/photos/1/descriptions", json=body, headers=AUTH, timeout=TIMEOUT)
    assert_error(r, status, fragment, field=field)


@pytest.mark.parametrize("photo_id", ["987654321", "9223372036854775807", "99999999999999999999999999"])
def test_description_of_unknown_photo_is_404(server, unchanged, photo_id):
    r = requests.post(f"{server}/api/photos/{photo_id}/descriptions", json={"text": "a dog"}, headers=AUTH,
                      timeout=TIMEOUT)
    assert_error(r, 404)
    assert "does not exist" in r.json()["error"] or "not found" in r.json()["error"]


RATING_BAD = [
    ({"match": True, "query": "a dog"}, 400, "'photo_id' is required", "photo_id"),
    ({"photo_id": 1, "query": "a dog"}, 400, "'match' is required", "match"),
    ({"photo_id": 1, "query": "a dog", "match": "yes"}, 400, "'match' must be true or false", "match"),
    ({"photo_id": 1, "match": True}, 400, "exactly one", "description_id"),
    ({"photo_id": 1, "match": True, "query": "a dog", "description_id": 1}, 400, "exactly one", "description_id"),
    ({"photo_id": 0, "match": True, "query": "a dog"}, 400, "between 1", "photo_id"),
    ({"photo_id": 10**30, "match": True, "query": "a dog"}, 400, "between 1", "photo_id"),
    ({"photo_id": "1", "match": True, "query": "a dog"}, 400, "integer", "photo_id"),
    ({"photo_id": 1, "match": True, "description_id": -1}, 400, "between 1", "description_id"),
    ({"photo_id": 1, "match": True, "query": "q" * 501}, 400, "at most 500", "query"),
    ({"photo_id": 1, "match": True, "query": "a dog", "client": "c" * 201}, 400, "at most 200", "client"),
    ({"photo_id": 987654321, "match": True, "query": "a dog"}, 404, "does not exist", None),
    ({"photo_id": 1, "match": True, "description_id": 987654321}, 404, "does not exist", "description_id"),
]


@pytest.mark.parametrize("body, status, fragment, field", RATING_BAD)
def test_bad_ratings(server, unchanged, body, status, fragment, field):
    r = requests.post(f"{server}/api/ratings", json=body, headers=AUTH, timeout=TIMEOUT)
    assert_error(r, status, fragment, field=field)


UPLOAD_FIELDS_BAD = [
    ({"taken_at": "last summer"}, "ISO 8601", "taken_at"), ({"place": "p" * 201}, "at most 200", "place"),
    ({"camera": "c" * 201}, "at most 200", "camera"), ({"description": "d" * 2001}, "at most 2000", "description"),
    ({"description": "\x00\x1b"}, "is empty", "description"), ({"uploader": " "}, "is empty", "uploader"),
]


@pytest.mark.parametrize("form, fragment, field", UPLOAD_FIELDS_BAD)
def test_bad_upload_fields(server, unchanged, form, fragment, field):
    r = requests.post(f"{server}/api/photos", files={"file": ("a.jpg", _encode(_picture(12), "JPEG"))}, data=form,
                      headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 400, fragment, field=field)


# --- unknown ids, routes, methods and path traversal ------------------------------------------

UNKNOWN = [
    ("GET", "/api/photos/0"), ("GET", "/api/photos/987654321"), ("GET", "/api/photos/9223372036854775807"),
    ("GET", "/api/photos/9223372036854775808"), ("GET", "/api/photos/99999999999999999999999999999"),
    ("GET", "/api/photos/-1"), ("GET", "/api/photos/abc"), ("GET", "/api/photos/1.5"), ("GET", "/api/photos/0x10"),
    ("GET", "/photos/987654321/image"), ("GET", "/photos/99999999999999999999999999999/image"),
    ("GET", "/photos/987654321/thumbnail"), ("GET", "/photos/0/thumbnail"), ("GET", "/api/nope"),
    ("GET", "/api/photos/1/image"), ("POST", "/api/photos/987654321/nothing"),
]


@pytest.mark.parametrize("method, path", UNKNOWN)
def test_unknown_ids_and_routes_are_404(server, unchanged, method, path):
    r = requests.request(method, f"{server}{path}", headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 404)


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/search"), ("PUT", "/api/search"), ("PUT", "/api/photos/1"), ("POST", "/api/photos/1"),
    ("GET", "/api/ratings"), ("DELETE", "/api/ratings"), ("POST", "/photos/1/image"), ("PUT", "/api/photos"),
])
def test_wrong_methods_are_405(server, unchanged, method, path):
    r = requests.request(method, f"{server}{path}", headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 405)
    assert r.headers.get("Allow")


TRAVERSALS = [
    ("GET", "/photos/..%2f..%2fetc%2fpasswd/image"), ("GET", "/photos/%2e%2e/image"),
    ("GET", "/photos/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail"), ("GET", "/photos/1%2f..%2f..%2fetc%2fpasswd/image"),
    ("GET", "/photos/1/image/..%2f..%2f..%2fetc%2fpasswd"), ("GET", "/photos/1/..%2f..%2fetc%2fpasswd"),
    ("GET", "/photos/../../../etc/passwd"), ("GET", "/photos/%252e%252e%252fetc%252fpasswd/image"),
    ("GET", "/photos/..%5c..%5cetc%5cpasswd/image"), ("GET", "/photos/%00/image"), ("GET", "/photos/1%00/image"),
    ("GET", "/photos/1/thumbnail%00.jpg"), ("GET", "/photos/..%2f..%2fetc%2fpasswd"),
    ("GET", "/api/photos/..%2f..%2fetc%2fpasswd"), ("GET", "/api/photos/%2e%2e"),
    ("GET", "/api/photos/1%2f..%2f2"), ("POST", "/api/photos/%2e%2e/descriptions"),
    ("POST", "/api/photos/..%2f1/descriptions"), ("POST", "/api/photos/..%2f..%2fetc%2fpasswd/descriptions"),
    ("GET", "/static/..%2f..%2fconfig.py"), ("GET", "/static/../../service/config.py"),
    ("GET", "/static/%2e%2e/%2e%2e/pyproject.toml"), ("GET", "/static/..%5c..%5cservice%5cconfig.py"),
    ("GET", "/static//etc/passwd"), ("GET", "//etc/passwd"),
]


@pytest.mark.parametrize("method, path", TRAVERSALS)
def test_path_traversal_finds_nothing(server, writable, unchanged, method, path):
    """Sent byte for byte (no client-side normalisation); the only files served are photos, by numeric id."""
    body = b'{"text": "x"}' if method == "POST" else b""
    status, headers, content = _raw_request(server, (
        f"{method} {path} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer test-token\n"
        f"Content-Type: application/json\nContent-Length: {len(body)}\nConnection: close\n"), body)
    if status == 308:  # werkzeug merges repeated slashes by redirecting; the target must stay harmless
        location = headers["Location"]
        assert urlsplit(location).path.startswith("/static/"), location
        status, headers, content = _raw_request(server, (
            f"GET {urlsplit(location).path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n"))
    assert status in (400, 404, 405), (status, content[:200])
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(content)["error"]
    assert b"root:" not in content and b"REPO_ROOT" not in content and b"[project]" not in content


def test_every_file_route_takes_a_numeric_id(bad_app):
    """Images are served only by id: apart from Flask's static folder, every route variable is an int."""
    from werkzeug.routing import IntegerConverter

    for rule in bad_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for name, converter in rule._converters.items():
            assert isinstance(converter, IntegerConverter) and converter.max == 2**63 - 1, (rule.rule, name)


# --- unknown fields: a typo is an error, never silently ignored ------------------------------

UNKNOWN_FIELDS = [
    ("/api/search", {"query": "a dog", "limt": 3}, "limt", "did you mean 'limit'"),
    ("/api/search", {"query": "a dog", "min_scor": 0.5}, "min_scor", "did you mean 'min_score'"),
    ("/api/search", {"query": "a dog", "filters": {"camera": "x"}}, "filters", "is not a field"),
    ("/api/search/similar", {"photo_id": 1, "limits": 3}, "limits", "did you mean 'limit'"),
    ("/api/photos/1/descriptions", {"text": "a dog", "athor": "me"}, "athor", "did you mean 'author'"),
    ("/api/ratings", {"photo_id": 1, "query": "a dog", "match": True, "matches": False}, "matches", "did you mean 'match'"),
]


@pytest.mark.parametrize("path, body, field, fragment", UNKNOWN_FIELDS)
def test_unknown_json_fields_are_400_naming_the_field(server, unchanged, path, body, field, fragment):
    r = requests.post(f"{server}{path}", json=body, headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 400, f"'{field}' is not a field of this request", fragment, field=field)


def test_unknown_upload_field_is_400_naming_the_field(server, unchanged):
    r = requests.post(f"{server}/api/photos", files={"file": ("a.jpg", _encode(_picture(12), "JPEG"))},
                      data={"descripton": "boats"}, headers=AUTH, timeout=TIMEOUT)
    assert_error(r, 400, "did you mean 'description'", field="descripton")


def test_several_bad_fields_are_all_named(server, unchanged):
    r = requests.post(f"{server}/api/search", json={"query": 5, "limit": "5", "explain": "yes"}, timeout=TIMEOUT)
    assert_error(r, 400, field="query")
    assert {p["field"] for p in r.json()["problems"]} == {"query", "limit", "explain"}
