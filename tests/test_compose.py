"""docker-compose.yml is a real deployment: valid for docker-compose and wired in the right order.

There is no Docker engine here, so the file is checked with `docker-compose config` (which
validates and interpolates without a daemon) and by reading its structure.
"""

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose binary not installed (apt-get install -y docker-compose)",
)


def _compose_config(tmp_path, **env_vars):
    # An empty --env-file keeps a developer's own .env from changing the outcome.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WITHSENSE_")}
    env.update(env_vars)
    return subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def _environment(service):
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def _command(service):
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


@needs_docker_compose
def test_docker_compose_accepts_the_file(tmp_path):
    result = _compose_config(tmp_path, WITHSENSE_API_TOKEN="test-token")
    assert result.returncode == 0, result.stderr


@needs_docker_compose
def test_docker_compose_refuses_to_start_without_an_api_token(tmp_path):
    result = _compose_config(tmp_path)
    assert result.returncode != 0
    assert "WITHSENSE_API_TOKEN" in result.stderr


def test_db_is_pgvector_with_a_pg_isready_healthcheck_and_a_named_volume(services):
    db = services["db"]
    assert db["image"].startswith("pgvector/pgvector")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")[0]
    top_level = yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]
    assert volume in top_level


def test_app_waits_for_a_healthy_db(services):
    assert services["app"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_app_database_url_points_at_the_db_service(services):
    url = urlparse(_environment(services["app"])["DATABASE_URL"])
    assert url.scheme == "postgresql+psycopg"
    assert url.hostname == "db"
    assert url.port == 5432


def test_app_migrates_before_gunicorn_and_stops_if_migration_fails(services):
    command = _command(services["app"])
    migrate, gunicorn = command.find("withsense migrate"), command.find("gunicorn")
    assert 0 <= migrate < gunicorn
    assert "&&" in command[migrate:gunicorn]
    assert "service:create_app()" in command
    assert "0.0.0.0:8000" in command


def test_app_has_data_volume_port_and_healthz_check(services):
    app = services["app"]
    assert _environment(app)["WITHSENSE_DATA_DIR"] == "/data"
    assert any(v.split(":")[1] == "/data" for v in app["volumes"])
    assert any(str(p).endswith("8000") for p in app["ports"])
    assert "/healthz" in " ".join(app["healthcheck"]["test"])
