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


def _mount(volume: str) -> tuple[str, str]:
    """(container path, source) of a short-syntax volume; the source may hold `${VAR:-default}`."""
    volume = volume.removesuffix(":ro").removesuffix(":rw")
    source, target = volume.rsplit(":", 1)
    return target, source


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


def test_init_migrates_then_ingests_the_mounted_dataset_then_trains_only_without_an_active_model(services):
    init = services["init"]
    command = _command(init)
    steps = [command.find("withsense migrate"), command.find("withsense ingest dataset /dataset"),
             command.find("withsense train")]
    assert all(i >= 0 for i in steps) and steps == sorted(steps)
    assert "--if-no-active" in command[steps[2]:]
    assert "set -e" in command  # a failed step fails the service, so the app never starts
    assert init["restart"] == "no"
    assert init["depends_on"]["db"]["condition"] == "service_healthy"
    mounts = dict(_mount(v) for v in init["volumes"])
    # The fixture dataset by default; WITHSENSE_DATASET_DIR points it at the full one (docs/deploy.md).
    assert mounts["/dataset"] == "${WITHSENSE_DATASET_DIR:-./tests/fixtures/dataset}"
    assert (ROOT / "tests/fixtures/dataset/train_dataset.csv").is_file()
    assert _environment(init)["WITHSENSE_DATASET"] == "/dataset"
    # init writes the photo store and the model artifacts that the app serves from.
    assert mounts["/data"] == "app-data" and any(v.startswith("app-data:/data") for v in services["app"]["volumes"])


def test_app_starts_after_init_succeeded_and_serves_with_gunicorn_conf(services):
    app = services["app"]
    assert app["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert app["command"] == ["gunicorn", "-c", "service/gunicorn_conf.py"]
    assert _environment(app)["WITHSENSE_BIND"] == "0.0.0.0:8000"
    assert "withsense migrate" not in _command(app)  # init's job


def test_a_worker_service_embeds_uploads_beside_the_app(services):
    worker, app = services["worker"], services["app"]
    assert worker["command"] == ["withsense", "worker"]
    assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["db"]["condition"] == "service_healthy"
    # the same database and photo store as the app: it reads the uploads the app stored
    assert _environment(worker)["DATABASE_URL"] == _environment(app)["DATABASE_URL"]
    assert "app-data:/data" in worker["volumes"]
    assert worker["restart"] == "unless-stopped"


def test_dockerfile_installs_the_lock_before_copying_code_and_runs_gunicorn_conf():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copy_lock = lines.index("COPY requirements.lock ./")
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install") and "-r requirements.lock" in line)
    first_code_copy = next(i for i, line in enumerate(lines) if line.startswith("COPY service"))
    assert copy_lock < install < first_code_copy
    assert "--no-deps" in next(line for line in lines[first_code_copy:] if "pip install" in line)
    assert 'CMD ["gunicorn", "-c", "service/gunicorn_conf.py"]' in lines


def test_app_health_check_is_readiness_and_readyz_is_red_without_an_active_model(services, make_database, settings_for):
    assert "/readyz" in " ".join(services["app"]["healthcheck"]["test"])
    from service import create_app

    app = create_app({"database_url": make_database(), "data_dir": settings_for("x").data_dir})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    reply = client.get("/readyz")
    assert reply.status_code == 503
    assert reply.get_json()["model"] is None
    app.extensions["withsense.engine"].dispose()


def test_proxy_buffers_requests_in_front_of_the_app_and_owns_the_public_port(services):
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert proxy["depends_on"]["app"]["condition"] == "service_healthy"
    assert any(str(p).startswith("8000:") for p in proxy["ports"])
    assert "ports" not in services["app"]  # only reachable through the proxy
    conf_mount = next(v for v in proxy["volumes"] if v.endswith("/etc/nginx/conf.d/default.conf:ro"))
    conf = (ROOT / conf_mount.split(":")[0]).read_text()
    assert "proxy_pass http://withsense_app;" in conf and "server app:8000;" in conf
    assert "proxy_request_buffering on;" in conf
    for directive in ("client_body_timeout", "client_header_timeout", "send_timeout", "proxy_read_timeout",
                      "client_max_body_size"):
        assert f"{directive} " in conf


def test_replica_streams_from_the_primary_and_the_app_reads_from_it(services):
    replica = services["replica"]
    command = _command(replica)
    assert "pg_basebackup -h db" in command and " -R " in command
    assert replica["depends_on"]["db"]["condition"] == "service_healthy"
    urls = _environment(services["app"])["WITHSENSE_REPLICA_URLS"]
    assert urlparse(urls).hostname == "replica"
    hba_script = next(v for v in services["db"]["volumes"] if "docker-entrypoint-initdb.d" in v).split(":")[0]
    assert "host replication" in (ROOT / hba_script).read_text()


def test_retrain_runs_train_if_better_after_init_on_the_apps_data(services):
    retrain = services["retrain"]
    assert "withsense train --quiet --if-better" in _command(retrain)
    assert "sleep" in _command(retrain) and retrain["restart"] == "unless-stopped"
    assert retrain["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert _environment(retrain)["DATABASE_URL"] == _environment(services["app"])["DATABASE_URL"]
    assert dict(_mount(v) for v in retrain["volumes"])["/data"] == "app-data"
