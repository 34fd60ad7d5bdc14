"""Access: bearer keys on writes, the read-only analyst role, size caps before the body, the search rate limit.

Writes need a person's key (users and api_keys, only hashes stored: tests/test_accounts.py) or the
bootstrap token WITHSENSE_API_TOKEN (service/config.py), which writes as the built-in admin and is
compared in constant time (service/http/auth.py).
"""
from __future__ import annotations

import http.client
import inspect
import io
import json
import socket
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.helpers import analyst_engine
from tests.test_bad_input import snapshot

# Every endpoint that writes, with a body that would succeed with the right token:
# (method, path, body). Edits and deletion are tried on a photo that does not exist (404 once the
# key is accepted), so this file deletes nothing that other tests use.
WRITES = {
    "upload": ("POST", "/api/photos", "multipart"),
    "describe": ("POST", "/api/photos/1/descriptions", {"text": "a dog on a beach", "author": "access-test"}),
    "rate": ("POST", "/api/ratings", {"photo_id": 1, "query": "a dog", "match": True}),
    "edit": ("PATCH", "/api/photos/987654321", {"place": "Oslo"}),
    "delete": ("DELETE", "/api/photos/987654321", None),
}
SUCCEEDS = {"upload": (200, 201), "describe": (201,), "rate": (200, 201), "edit": (404,), "delete": (404,)}

BAD_CREDENTIALS = [  # (headers, status)
    ({}, 401),
    ({"Authorization": ""}, 401),
    ({"Authorization": "Bearer"}, 401),
    ({"Authorization": "Bearer    "}, 401),
    ({"Authorization": "Basic dGVzdC10b2tlbjo="}, 401),
    ({"Authorization": "Token test-token"}, 401),
    ({"Authorization": "test-token"}, 401),
    ({"Authorization": "Bearer wrong"}, 403),
    ({"Authorization": "Bearer test-toke"}, 403),
    ({"Authorization": "Bearer test-token2"}, 403),
    ({"Authorization": "Bearer TEST-TOKEN"}, 403),
    ({"Authorization": "Bearer test-token test-token"}, 403),
    ({"Authorization": "Bearer тест-токен".encode()}, 403),  # UTF-8 bytes on the wire
    ({"X-Api-Token": "test-token"}, 401),
]


def _send(base: str, write: str, headers: dict):
    method, path, body = WRITES[write]
    if body == "multipart":
        from tests.test_faults import _jpeg

        return requests.post(f"{base}{path}", files={"file": ("a.jpg", _jpeg(31337))}, headers=headers, timeout=60)
    return requests.request(method, f"{base}{path}", json=body, headers=headers, timeout=60)


def _template(path: str) -> str:
    return path.replace("/1/", "/{photo_id}/").replace("/987654321", "/{photo_id}")


def test_the_write_list_matches_the_spec(writable_app):
    """The operations the spec marks as needing a key are exactly the app's writes, GET /api/me and the
    admins' GET /api/audit."""
    paths = writable_app.test_client().get("/api/openapi.json").get_json()["paths"]
    secured = {(method.upper(), path) for path, ops in paths.items() for method, op in ops.items() if op.get("security")}
    assert secured == {(m, _template(p)) for m, p, _ in WRITES.values()} | {("GET", "/api/me"), ("GET", "/api/audit")}
    changing = {rule.endpoint for rule in writable_app.url_map.iter_rules()
                if rule.methods & {"POST", "PATCH", "DELETE", "PUT"}}
    # the other POSTs only read (search writes its own log line, nothing a user can shape into data),
    # or sign the page in and out: the sign-in checks the key in its body (tests/test_security_web.py)
    assert changing - {"photos.upload", "photos.add_description", "ratings.rate", "photos.edit",
                       "photos.delete"} == {"search.search", "search.similar", "accounts.sign_in", "accounts.sign_out"}


@pytest.mark.parametrize("headers, status", BAD_CREDENTIALS)
@pytest.mark.parametrize("write", WRITES)
def test_writes_need_the_token(writable_server, writable, write, headers, status):
    before = snapshot(writable["engine"])
    r = _send(writable_server, write, headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] and r.json()["status"] == status
    if status == 401:
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert snapshot(writable["engine"]) == before


@pytest.mark.parametrize("write", WRITES)
def test_writes_with_the_token_succeed(writable_server, write):
    r = _send(writable_server, write, {"Authorization": "Bearer test-token"})
    assert r.status_code in SUCCEEDS[write], r.text


@pytest.mark.parametrize("write", WRITES)
def test_without_a_configured_token_only_keys_write(writable, encoders, write):
    """With WITHSENSE_API_TOKEN unset, no token but a person's key is accepted."""
    from tests.helpers import app_for, new_user

    client = app_for(writable, encoders, api_token="").test_client()
    method, path, body = WRITES[write]
    before = snapshot(writable["engine"])
    for token in ("", "anything", "test-token"):
        if body == "multipart":
            r = client.post(path, data={"file": (io.BytesIO(b"x"), "a.jpg")}, headers={"Authorization": f"Bearer {token}"})
        else:
            r = client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == (401 if not token else 403)
        if token:
            assert "no bootstrap token is configured" in r.json["error"]
    assert snapshot(writable["engine"]) == before
    admin = new_user(writable["engine"], "admin")
    if body == "multipart":
        from tests.test_faults import _jpeg

        r = client.post(path, data={"file": (io.BytesIO(_jpeg(31338)), "a.jpg")}, headers=admin["auth"])
    else:
        r = client.open(path, method=method, json=body, headers=admin["auth"])
    assert r.status_code in SUCCEEDS[write], r.json


def test_tokens_are_compared_in_constant_time(writable_app, monkeypatch):
    """auth.py compares the bootstrap token with hmac.compare_digest (time independent of how much
    matched), never with ==; keys are checked by argon2's verify, also constant-time."""
    from service.http import auth

    source = inspect.getsource(auth._bootstrap)
    assert "hmac.compare_digest(" in source and "== expected" not in source and "expected ==" not in source
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    client = writable_app.test_client()
    r = client.post("/api/ratings", json={}, headers={"Authorization": "Bearer test-tokeX"})
    assert r.status_code == 403
    assert calls == [(b"test-tokeX", b"test-token")]


def test_no_table_holds_a_key_or_token_in_clear(loaded):
    """Keys are stored as argon2id hashes only (a check constraint), and no column is named like a secret."""
    with loaded["engine"].connect() as conn:
        columns = conn.execute(text(
            "SELECT table_name || '.' || column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'")).scalars().all()
        assert "api_keys.key_hash" in columns
        assert not [c for c in columns if any(w in c for w in ("token", "secret", "password"))]
        assert conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                 "WHERE conname = 'ck_api_keys_argon2id'")).scalar() == "CHECK ((key_hash ~~ '$argon2id$%'::text))"


# --- the analyst role -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def analyst(loaded):
    engine = analyst_engine(loaded["settings"].database_url)
    yield engine
    engine.dispose()


def _tables(engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name")).scalars().all()


def test_analyst_has_no_write_privilege_on_any_table(loaded):
    with loaded["engine"].connect() as conn:
        rows = conn.execute(text(
            """SELECT c.relname, p.privilege
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
                 AND has_table_privilege('analyst', c.oid, p.privilege)""")).all()
    assert rows == []


@pytest.mark.parametrize("verb", ["INSERT", "UPDATE", "DELETE"])
def test_analyst_cannot_insert_update_delete(analyst, loaded, verb):
    """Tried for real on every table: each statement is refused with 'permission denied'.

    The role's sessions are read-only by default too, but the analyst could switch that off
    (SET TRANSACTION READ WRITE, done here first), so the privileges are what really stop a write."""
    before = snapshot(loaded["engine"])
    tables = _tables(loaded["engine"])
    assert len(tables) >= 9
    for table in tables:
        statement = {"INSERT": f'INSERT INTO "{table}" DEFAULT VALUES',
                     "UPDATE": f'UPDATE "{table}" SET ctid = ctid WHERE false',
                     "DELETE": f'DELETE FROM "{table}"'}[verb]
        if verb == "UPDATE":  # any column: SET on a system column is invalid, so use the first real one
            with loaded["engine"].connect() as conn:
                column = conn.execute(text(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name = :t ORDER BY ordinal_position LIMIT 1"), {"t": table}).scalar()
            statement = f'UPDATE "{table}" SET "{column}" = "{column}"'
        with pytest.raises(DBAPIError) as info:
            with analyst.begin() as conn:
                conn.execute(text("SET TRANSACTION READ WRITE"))
                conn.execute(text(statement))
        assert "permission denied" in str(info.value), (table, str(info.value)[:200])
    assert snapshot(loaded["engine"]) == before


# --- request size: refused from the headers, before the body is read --------------------------

def _raw(base: str, head: str) -> tuple[int, dict]:
    with socket.create_connection((urlsplit(base).hostname, urlsplit(base).port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("path, content_type", [
    ("/api/photos", "multipart/form-data; boundary=x"), ("/api/photos/1/descriptions", "application/json"),
    ("/api/ratings", "application/json"), ("/api/search", "application/json"),
    ("/api/search/similar", "multipart/form-data; boundary=x"), ("/api/search/similar", "application/json"),
])
def test_request_size_is_capped_before_the_body_is_read(writable_server, path, content_type):
    """A Content-Length over the cap, and no body sent: the 413 comes back at once."""
    status, body = _raw(writable_server, (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer test-token\nContent-Type: {content_type}\n"
        f"Content-Length: {64 * 1024 * 1024}\nConnection: close\n"))
    assert status == 413 and "limit is 20 MB" in body["error"]


# --- search rate limit ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited_app(loaded, encoders):
    from tests.helpers import app_for

    return app_for(loaded, encoders, rate_limit=3)


def _window_with_time_left(engine, seconds: float = 20.0) -> None:
    """Wait, if need be, until the current fixed window (the database's clock, 60 s) has ``seconds``
    left: the counts of a test's requests must all fall into one window, and a boundary between
    them resets the count (as it would for a client; the module's docstring)."""
    import time

    from service.http.ratelimit import WINDOW_S

    with engine.connect() as conn:
        left = float(conn.execute(text("SELECT :w - mod(extract(epoch FROM now()), :w)"), {"w": WINDOW_S}).scalar())
    if left < seconds:
        time.sleep(left + 0.5)


def test_search_is_rate_limited_per_client(limited_app, loaded):
    client = limited_app.test_client()
    _window_with_time_left(loaded["engine"])
    # The counters are in the database the session shares: addresses of this test's own.
    me = {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.1"}
    for _ in range(2):
        assert client.post("/api/search", json={"query": "a dog"}, environ_base=me).status_code == 200
    assert client.post("/api/search/similar", json={"photo_id": 1}, environ_base=me).status_code == 200
    r = client.post("/api/search", json={"query": "a dog"}, environ_base=me)
    assert r.status_code == 429
    assert "at most 3 per minute" in r.json["error"] and r.json["status"] == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    r = client.post("/api/search/similar", json={"photo_id": 1}, environ_base=me)
    assert r.status_code == 429 and r.headers["Retry-After"]
    # another client is not affected, and neither are other endpoints
    assert client.post("/api/search", json={"query": "a dog"}, environ_base={"REMOTE_ADDR": me["REMOTE_ADDR"][:-1] + "2"}).status_code == 200
    assert client.get("/api/photos/1", environ_base=me).status_code == 200
    assert client.get("/healthz", environ_base=me).status_code == 200


def test_a_rejected_request_does_not_use_up_the_window(limited_app, loaded):
    from service.http.ratelimit import limits

    _window_with_time_left(loaded["engine"])
    with limited_app.app_context():
        shared, client = limits(), f"test-{uuid.uuid4().hex}"
        assert shared.hit("t", client, 2) == 0 and shared.hit("t", client, 2) == 0
        assert 0 < shared.hit("t", client, 2) <= 60
        assert shared.count("t", client)[0] == 2  # the refused hit was not counted
        assert shared.hit("t", f"other-{client}", 2) == 0


def test_old_windows_are_purged(limited_app, loaded):
    from service.http import ratelimit

    with loaded["engine"].begin() as conn:
        conn.execute(text("INSERT INTO rate_counters (bucket, client, window_start) "
                          "VALUES ('t', 'old', now() - interval '10 minutes')"))
    with limited_app.app_context():
        shared = ratelimit.limits()
        shared._purged_at -= ratelimit.PURGE_EVERY_S
        shared.hit("t", f"test-{uuid.uuid4().hex}", 5)
    with loaded["engine"].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rate_counters WHERE client = 'old'")).scalar() == 0


def test_zero_turns_the_limit_off(loaded, encoders):
    from tests.helpers import app_for

    app = app_for(loaded, encoders, rate_limit=0)
    assert "withsense.ratelimit" not in app.extensions
