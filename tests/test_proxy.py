"""deploy/nginx.conf, the compose stack's reverse proxy, run for real in front of the app.

The same file the compose `proxy` service mounts, with only the upstream address (the compose
service name `app`) and the listening port replaced, served by Debian's nginx.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests

from service.config import REPO_ROOT
from tests.helpers import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if shutil.which("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx not installed (apt-get install -y nginx-light)")


def _nginx(upstream_base: str, folder, listen: str = "127.0.0.1"):
    port = free_port()
    upstream = upstream_base.removeprefix("http://")
    site = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    assert "server app:8000;" in site and "listen 80;" in site
    site = site.replace("server app:8000;", f"server {upstream};").replace("listen 80;", f"listen {listen}:{port};")
    (folder / "site.conf").write_text(site)
    (folder / "nginx.conf").write_text(f"""
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    include {folder}/site.conf;
}}
""")
    process = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://{listen}:{port}"
    for _ in range(100):
        try:
            requests.get(f"{base}/healthz", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    return base, process


@pytest.fixture(scope="module")
def proxy(live_server, tmp_path_factory):
    base, process = _nginx(live_server, tmp_path_factory.mktemp("nginx"))
    yield base
    process.terminate()
    process.wait(timeout=10)


def test_searches_pass_through_the_proxy(proxy):
    reply = requests.post(f"{proxy}/api/search", json={"query": "a dog runs on the grass"}, timeout=60)
    assert reply.status_code == 200
    assert len(reply.json()["results"]) == 5
    assert requests.get(f"{proxy}/readyz", timeout=30).json()["status"] == "ready"


def test_a_body_over_the_proxy_limit_is_refused_by_the_proxy(proxy):
    reply = requests.post(f"{proxy}/api/photos", files={"file": ("big.jpg", b"\0" * (22 * 1024 * 1024))},
                          timeout=60)
    assert reply.status_code == 413
    assert "nginx" in reply.text  # refused at the edge: no gunicorn worker read 22 MB


# --- the client's real address through the proxy ------------------------------------------------

@pytest.fixture(scope="module")
def trusting(loaded, encoders, tmp_path_factory):
    """An app that trusts 127.0.0.1 (nginx's address towards it), behind the real nginx.conf
    listening on 127.0.0.2, so a client connecting from 127.0.0.3 has an address of its own."""
    from tests.helpers import app_for, serve

    app = app_for(loaded, encoders, rate_limit=1000, trusted_proxies="127.0.0.1")
    app_base, server = serve(app)
    base, process = _nginx(app_base, tmp_path_factory.mktemp("nginx-real"), listen="127.0.0.2")
    yield base, app_base, loaded["engine"]
    process.terminate()
    process.wait(timeout=10)
    server.shutdown()


def _search_from(source: str, url: str, headers: dict) -> int:
    """A search sent from the loopback address ``source`` (a raw HTTP/1.1 request)."""
    import json
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = json.dumps({"query": "a dog", "limit": 1}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": parts.netloc, "Content-Type": "application/json",
                                                  "Content-Length": str(len(body)), "Connection": "close",
                                                  **headers}.items())
    with socket.create_connection((parts.hostname, parts.port), timeout=60, source_address=(source, 0)) as sock:
        sock.sendall(f"POST /api/search HTTP/1.1\r\n{head}\r\n".encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def _counted(engine, client: str) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT coalesce(sum(n), 0) FROM rate_counters "
                                 "WHERE bucket = 'search' AND client = :c"), {"c": client}).scalar()


def test_the_limit_counts_the_clients_address_behind_the_proxy(trusting):
    base, app_base, engine = trusting
    before = {a: _counted(engine, a) for a in ("127.0.0.3", "127.0.0.1", "198.51.100.23")}
    # Through nginx, with a forged header: nginx appends what it saw connect (127.0.0.3).
    assert _search_from("127.0.0.3", f"{base}/api/search", {"X-Forwarded-For": "198.51.100.23"}) == 200
    assert _search_from("127.0.0.3", f"{base}/api/search", {}) == 200
    # Straight to the app from an address that is no proxy: its header is not believed.
    assert _search_from("127.0.0.3", f"{app_base}/api/search", {"X-Forwarded-For": "198.51.100.23"}) == 200
    after = {a: _counted(engine, a) for a in before}
    assert {a: after[a] - before[a] for a in before} == {"127.0.0.3": 3, "127.0.0.1": 0, "198.51.100.23": 0}
