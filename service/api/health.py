"""Operations: liveness, readiness, Prometheus metrics. (The OpenAPI document is served by
``service.http.contract`` at /api/openapi.json.)"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from service.http import metrics, schemas
from service.http.contract import endpoint, responses
from service.http.db_session import get_session, replicas_of
from service.store.model_rows import active_ranker

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint(resp=responses({200: schemas.Liveness}))
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@endpoint(resp=responses({200: schemas.Readiness, 503: schemas.Readiness}))
def readyz():
    """Ready = the database answers AND a ranker is active for the configured encoders."""
    settings = current_app.config["WITHSENSE"]
    try:
        session = get_session()
        session.execute(text("SELECT 1"))
        model = active_ranker(session.connection(), settings.encoder_key)
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return jsonify({"status": "unavailable", "database": f"{type(exc).__name__}", "model": None}), 503
    if model is None:
        return jsonify({"status": "unavailable", "database": "ok", "model": None,
                        "error": f"no active model for encoders {settings.encoder_key}: run `withsense train`"}), 503
    body = {"status": "ready", "database": "ok", "model": model["version"]}
    replicas = replicas_of()
    if replicas:
        # Informational: reads fall back to the primary, so a replica that is down or lagging
        # makes the service slower, never unready.
        body["replicas"] = replicas.status()
    return jsonify(body)


@bp.get("/metrics")
@endpoint(resp=responses({200: None}))
def prometheus_metrics():
    """Prometheus metrics, text exposition format."""
    return metrics.render()

