"""Web security (issue 19, items 1, 2 and part of 5): the security headers on every kind of
response, the page's session (cookie flags, CSRF, sign-out, expiry, revocation), no key in the
browser's storage, and a key revoked while a request of its own is in flight.

The other half of issue 19's security tests (throttled guessing, shared limits, the audit trail,
hostile ids, strings and headers) is tests/test_security_limits.py.
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import uuid
from http.cookies import SimpleCookie

import pytest
import requests
from sqlalchemy import text

from service.config import REPO_ROOT
from service.http.auth import CSRF_HEADER, SESSION_COOKIE
from tests.helpers import app_for, new_user

# ---- headers ----------------------------------------------------------------------------------

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _csp_directives(value: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in value.split(";") if part.strip()}


def _responses(client, loaded_photo: int):
    """One response of each kind: HTML pages, JSON answers and errors, images, static files, probes."""
    yield "page /", client.get("/")
    yield "page /upload", client.get("/upload")
    yield "page /photos/<id>", client.get(f"/photos/{loaded_photo}")
    yield "page 404", client.get("/photos/999999999")
    yield "json search", client.post("/api/search", json={"query": "a dog", "limit": 1})
    yield "json photo", client.get(f"/api/photos/{loaded_photo}")
    yield "json 400", client.post("/api/search", json={"nope": 1})
    yield "json 401", client.post("/api/ratings", json={"photo_id": 1, "query": "a dog", "match": True})
    yield "json 404", client.get("/api/nothing-here")
    yield "openapi", client.get("/api/openapi.json")
    yield "image", client.get(f"/photos/{loaded_photo}/image")
    yield "thumbnail", client.get(f"/photos/{loaded_photo}/thumbnail")
    yield "static js", client.get("/static/app.js")
    yield "probe", client.get("/healthz")


@pytest.fixture(scope="module")
def shown_photo(loaded):
    with loaded["engine"].connect() as conn:
        return conn.scalar(text("SELECT id FROM photos WHERE NOT shows_child ORDER BY id LIMIT 1"))


def test_every_kind_of_response_carries_the_security_headers(client, shown_photo):
    seen = set()
    for name, response in _responses(client, shown_photo):
        response.close()
        seen.add(response.status_code)
        for header, value in EXPECTED.items():
            assert response.headers.get(header) == value, (name, header)
        csp = _csp_directives(response.headers["Content-Security-Policy"])
        assert csp["script-src"] == ["'self'"], name
        assert csp["img-src"] == ["'self'", "data:"], name
        assert csp["frame-ancestors"] == ["'none'"], name
        assert csp["style-src"] == ["'self'"], name
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"], name
        assert "unsafe-eval" not in response.headers["Content-Security-Policy"], name
        assert "Strict-Transport-Security" not in response.headers, name  # not behind TLS
    assert {200, 400, 401, 404} <= seen
    images = [r for n, r in _responses(client, shown_photo) if n in ("image", "thumbnail")]
    assert all(r.status_code == 200 and r.mimetype.startswith("image/") for r in images)


def test_behind_tls_adds_hsts_and_secure_cookies(writable, encoders):
    app = app_for(writable, encoders, behind_tls=True)
    client = app.test_client()
    for path in ["/", "/api/openapi.json", "/api/me"]:
        hsts = client.get(path).headers.get("Strict-Transport-Security", "")
        assert re.fullmatch(r"max-age=31536000; includeSubDomains", hsts), path
    response = client.post("/api/session", json={"key": new_user(writable["engine"], "rater")["key"]})
    assert response.status_code == 200
    assert "Secure" in _set_cookie(response)


def test_the_page_has_no_inline_script_or_style():
    """What the CSP forbids is not there to forbid: no inline script, handler or style attribute in
    the templates, and app.js never writes a style= attribute (it sets element.style instead)."""
    templates = "".join(p.read_text() for p in (REPO_ROOT / "service" / "templates").glob("*.html"))
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", templates, flags=re.S)
    for attrs, body in scripts:
        assert "src=" in attrs or 'type="application/json"' in attrs, attrs
        assert "src=" not in attrs or not body.strip()
    assert not re.search(r"\son[a-z]+\s*=", templates)
    assert not re.search(r"\sstyle\s*=", templates)
    script = (REPO_ROOT / "service" / "static" / "app.js").read_text()
    assert not re.search(r"""\{\s*style:|setAttribute\(\s*["']style|innerHTML|eval\(|new Function""", script)


def test_no_key_is_kept_in_the_browsers_storage():
    """service/static never touches localStorage or sessionStorage (or cookies: the session cookie is httpOnly)."""
    for path in (REPO_ROOT / "service" / "static").rglob("*"):
        if path.is_file():
            body = path.read_text(errors="replace")
            for word in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
                assert word not in body, (path.name, word)


# ---- sessions ---------------------------------------------------------------------------------

def _set_cookie(response) -> str:
    [header] = [v for v in response.headers.getlist("Set-Cookie") if v.startswith(SESSION_COOKIE + "=")]
    return header


def _sign_in(client, key: str) -> dict:
    response = client.post("/api/session", json={"key": key})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _rate(client, **headers):
    return client.post("/api/ratings", json={"photo_id": 1, "query": f"a dog {uuid.uuid4().hex[:6]}", "match": True},
                       headers=headers)


def _session_rows(engine, user_id: int) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM sessions WHERE user_id = :u"), {"u": user_id}).all()


def test_sign_in_sets_an_httponly_strict_cookie_and_stores_only_its_hash(writable_app, writable):
    user = new_user(writable["engine"], "photographer")
    client = writable_app.test_client()
    response = client.post("/api/session", json={"key": user["key"]})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["name"] == user["name"] and body["role"] == "photographer" and len(body["csrf"]) >= 40
    cookie = SimpleCookie(_set_cookie(response))[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # WITHSENSE_BEHIND_TLS is off here
    hours = writable_app.config["WITHSENSE"].session_hours
    assert int(cookie["max-age"]) == round(hours * 3600)
    assert user["key"] not in _set_cookie(response) and user["key"] not in response.get_data(as_text=True)
    [row] = _session_rows(writable["engine"], user["user_id"])
    assert row.id == hashlib.sha256(cookie.value.encode()).hexdigest() and row.csrf == body["csrf"]
    assert abs((row.expires_at - row.created_at).total_seconds() - hours * 3600) < 5
    me = client.get("/api/me")  # the cookie alone: no Authorization header
    assert me.get_json()["name"] == user["name"] and me.get_json()["csrf"] == body["csrf"]
    assert me.headers["Cache-Control"] == "no-store"
    assert "csrf" not in writable_app.test_client().get("/api/me", headers=user["auth"]).get_json()


@pytest.mark.parametrize("key", ["ws_" + "0" * 12 + "_" + "A" * 43, "wrong", "x" * 200])
def test_a_wrong_key_signs_nobody_in(writable_app, key):
    response = writable_app.test_client().post("/api/session", json={"key": key})
    assert response.status_code == 403 and "Set-Cookie" not in response.headers


def test_cookie_writes_need_the_sessions_csrf_token_and_bearer_writes_do_not(writable_app, writable):
    user = new_user(writable["engine"], "rater")
    client = writable_app.test_client()
    csrf = _sign_in(client, user["key"])["csrf"]
    assert _rate(client).status_code == 403
    assert CSRF_HEADER in _rate(client).get_json()["error"]
    assert _rate(client, **{CSRF_HEADER: "x" * len(csrf)}).status_code == 403
    other = writable_app.test_client()
    other_csrf = _sign_in(other, new_user(writable["engine"], "rater")["key"])["csrf"]
    assert _rate(client, **{CSRF_HEADER: other_csrf}).status_code == 403  # another session's token
    assert _rate(client, **{CSRF_HEADER: csrf}).status_code in (200, 201)
    assert _rate(writable_app.test_client(), **user["auth"]).status_code in (200, 201)  # a script
    with writable["engine"].connect() as conn:
        votes = conn.scalar(text("SELECT count(*) FROM crowd_votes WHERE voter_id = :u"), {"u": user["user_id"]})
    assert votes == 2


def test_signing_out_deletes_the_session(writable_app, writable):
    user = new_user(writable["engine"], "rater")
    client = writable_app.test_client()
    csrf = _sign_in(client, user["key"])["csrf"]
    assert client.delete("/api/session").status_code == 403  # without the CSRF token: stays signed in
    assert len(_session_rows(writable["engine"], user["user_id"])) == 1
    kept = client.get_cookie(SESSION_COOKIE).value
    response = client.delete("/api/session", headers={CSRF_HEADER: csrf})
    assert response.status_code == 204 and "Max-Age=0" in _set_cookie(response)
    assert _session_rows(writable["engine"], user["user_id"]) == []
    client.set_cookie(SESSION_COOKIE, kept)  # a copy of the old cookie is worth nothing now
    assert client.get("/api/me").status_code == 401
    assert _rate(client, **{CSRF_HEADER: csrf}).status_code == 401
    assert client.delete("/api/session").status_code == 204  # signing out twice is harmless


def test_revoking_the_key_ends_its_sessions(writable_app, writable):
    from service.accounts import users
    from service.store.db import session_scope

    user = new_user(writable["engine"], "photographer")
    client = writable_app.test_client()
    csrf = _sign_in(client, user["key"])["csrf"]
    assert client.get("/api/me").status_code == 200
    with session_scope(writable["engine"]) as session:
        assert users.revoke(session=session, name=user["name"]) == 1
    assert _session_rows(writable["engine"], user["user_id"]) == []
    assert client.get("/api/me").status_code == 401
    assert _rate(client, **{CSRF_HEADER: csrf}).status_code == 401
    assert client.post("/api/session", json={"key": user["key"]}).status_code == 403


def test_an_expired_session_is_refused(writable_app, writable):
    user = new_user(writable["engine"], "rater")
    client = writable_app.test_client()
    csrf = _sign_in(client, user["key"])["csrf"]
    with writable["engine"].begin() as conn:
        conn.execute(text("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = :u"),
                     {"u": user["user_id"]})
    me = client.get("/api/me")
    assert me.status_code == 401 and "sign in again" in me.get_json()["error"]
    assert _rate(client, **{CSRF_HEADER: csrf}).status_code == 401
    _sign_in(writable_app.test_client(), new_user(writable["engine"], "rater")["key"])  # clears expired rows
    assert _session_rows(writable["engine"], user["user_id"]) == []


def test_a_bootstrap_session_ends_with_the_bootstrap_token(writable, encoders):
    signed_in = app_for(writable, encoders).test_client()
    _sign_in(signed_in, writable["settings"].api_token)
    assert signed_in.get("/api/me").get_json()["name"] == "bootstrap"
    without_token = app_for(writable, encoders, api_token="").test_client()
    without_token.set_cookie(SESSION_COOKIE, signed_in.get_cookie(SESSION_COOKIE).value)
    assert without_token.get("/api/me").status_code == 401


# ---- a key revoked while its request is in flight ---------------------------------------------

def test_a_key_revoked_while_its_upload_is_in_flight(writable_server, writable):
    """The upload has passed its key check and is still sending its body when the key is revoked.
    The revocation waits for that request (its key row is share-locked until the request's
    transaction ends), the upload is stored under its author, and the next request is refused."""
    from service.accounts import users
    from service.store.db import session_scope
    from tests.test_faults import _jpeg

    user = new_user(writable["engine"], "photographer")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + _jpeg(int(time.time()) % 100_000 + 7_000_000) \
        + f"\r\n--{boundary}--\r\n".encode()
    host, port = writable_server.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall((f"POST /api/photos HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {user['key']}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n").encode() + body[:40])
    with writable["engine"].connect() as conn:  # wait until the request holds its key's row
        for _ in range(200):
            held = conn.scalar(text("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                    "WHERE c.relname = 'api_keys' AND l.granted AND l.pid <> pg_backend_pid()"))
            if held:
                break
            time.sleep(0.05)
        assert held, "the upload never reached its key check"

    revoked = {}

    def revoke():
        with session_scope(writable["engine"]) as session:
            revoked["count"] = users.revoke(session=session, name=user["name"])
        revoked["at"] = time.monotonic()

    worker = threading.Thread(target=revoke)
    worker.start()
    worker.join(1.0)
    assert worker.is_alive(), "the revocation did not wait for the request in flight"
    finished_at = time.monotonic()
    sock.sendall(body[40:])
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    worker.join(60)
    status = int(answer.split(b" ", 2)[1])
    assert status in (200, 201), answer[:400]
    assert revoked["count"] == 1 and revoked["at"] >= finished_at
    with writable["engine"].connect() as conn:
        owner = conn.scalar(text("SELECT owner_id FROM photos ORDER BY id DESC LIMIT 1"))
    assert owner == user["user_id"]
    after = requests.get(f"{writable_server}/api/me", headers=user["auth"], timeout=30)
    assert after.status_code == 403 and "revoked" in after.json()["error"]
