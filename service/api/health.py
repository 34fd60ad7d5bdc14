"""Operations: liveness, readiness, Prometheus metrics. (The OpenAPI document is served by
``service.http.contract`` at /api/openapi.json.)"""
from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import text

from service.http import metrics, schemas
from service.http.contract import endpoint, reply, responses
from service.http.db_session import get_session, replicas_of
from service.store.model_rows import active_ranker

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint(resp=responses({200: schemas.Liveness}))
def healthz():
    """Liveness: the process answers."""
    return reply(schemas.Liveness(status="ok"))


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
        return reply(schemas.Readiness(status="unavailable", database=f"{type(exc).__name__}", model=None), 503)
    if model is None:
        return reply(schemas.Readiness(
            status="unavailable", database="ok", model=None,
            error=f"no active model for encoders {settings.encoder_key}: run `withsense train`"), 503)
    replicas = replicas_of()
    # Informational: reads fall back to the primary, so a replica that is down or lagging makes
    # the service slower, never unready.
    extra = {"replicas": replicas.status()} if replicas else {}
    return reply(schemas.Readiness(status="ready", database="ok", model=model.version, **extra))


@bp.get("/metrics")
@endpoint(resp=responses({200: None}))
def prometheus_metrics():
    """Prometheus metrics, text exposition format."""
    return metrics.render()

