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


@pytest.fixture(scope="module")
def proxy(live_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nginx")
    port = free_port()
    upstream = live_server.removeprefix("http://")
    site = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    assert "server app:8000;" in site and "listen 80;" in site
    site = site.replace("server app:8000;", f"server {upstream};").replace("listen 80;", f"listen 127.0.0.1:{port};")
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
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(f"{base}/healthz", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
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
